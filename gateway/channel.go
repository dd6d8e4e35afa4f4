package gateway

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"strings"
	"sync"
	"syscall"
	"time"

	gssh "github.com/gliderlabs/ssh"
	gossh "golang.org/x/crypto/ssh"

	"github.com/ds01/ds01-gateway/session"
	"github.com/ds01/ds01-gateway/session/ptymodes"
	"github.com/ds01/ds01-gateway/session/runtime"
)

// errChannelClosed is the cancel cause when the client closes the channel
// or the connection drops.
var errChannelClosed = errors.New("channel closed by client")

// sessionChan serves one "session" channel. It replaces gliderlabs' own
// session handler, which rewrites "\n" to "\r\n" on pty output (Docker's
// pty already does that) and blocks its request loop on window-change
// until the handler reads it.
type sessionChan struct {
	s    *Server
	ch   gossh.Channel
	conn *gossh.ServerConn
	gctx gssh.Context
	log  *slog.Logger

	// eofMu orders the shutdown notice (tell) before our EOF: x/crypto's
	// channel reads its sent-EOF flag on every write without a lock, so a
	// write racing CloseWrite is a data race. eof is set once EOF is sent.
	eofMu sync.Mutex
	eof   bool

	// mu guards the fields below. It is never held across I/O (Docker
	// calls, file system, the network): the channel's request loop takes
	// it for every request and must not wait on the engine.
	mu      sync.Mutex
	env     []string
	pty     *ptyRequest
	win     window
	started bool
	agent   bool // the client asked for agent forwarding
	resize  chan struct{}
	// sigs queues the client's signals in order, before and after the
	// process starts; deliverSignals passes them on. Delivery asks the
	// engine for the exec's PID, so it never runs on the request loop.
	sigs chan syscall.Signal
}

// maxQueuedSignals bounds the signals waiting for delivery; more are
// dropped, as a flood of them would be by a terminal.
const maxQueuedSignals = 16

func (s *Server) sessionChannel(_ *gssh.Server, conn *gossh.ServerConn, newChan gossh.NewChannel, gctx gssh.Context) {
	ch, reqs, err := newChan.Accept()
	if err != nil {
		return
	}
	ctx, cancel := context.WithCancelCause(gctx)
	sc := &sessionChan{
		s: s, ch: ch, conn: conn, gctx: gctx,
		resize: make(chan struct{}, 1), sigs: make(chan syscall.Signal, maxQueuedSignals),
		log: s.log.With("login", logName(gctx.User()), "remote", conn.RemoteAddr().String()),
	}
	defer s.open.track(sc)()
	for req := range reqs {
		sc.handleSafely(ctx, req)
	}
	// The client closed the channel or the connection dropped.
	cancel(errChannelClosed)
}

// handleSafely answers one channel request; a panic in it fails that
// request and is logged, and the channel and connection go on.
func (sc *sessionChan) handleSafely(ctx context.Context, req *gossh.Request) {
	replied := false
	defer recoverPanic(sc.log, "session request "+req.Type, func() {
		if req.WantReply && !replied {
			req.Reply(false, nil)
		}
	})
	ok, start := sc.handle(req)
	replied = true
	if req.WantReply {
		req.Reply(ok, nil)
	}
	// Only after the reply: the session may end, and close the channel,
	// before the client has heard that it started.
	if start != nil {
		go sc.runSafely(ctx, *start)
	}
}

// handle applies one channel request and says whether it was accepted, and
// what to run if it starts the session.
func (sc *sessionChan) handle(req *gossh.Request) (ok bool, start *request) {
	sc.mu.Lock()
	defer sc.mu.Unlock()
	switch req.Type {
	case "env":
		var kv struct{ Name, Value string }
		if gossh.Unmarshal(req.Payload, &kv) == nil && !sc.started && envAllowed(kv.Name) {
			sc.env = append(sc.env, kv.Name+"="+kv.Value)
			ok = true
		}
	case "pty-req":
		var p ptyRequest
		if restrictionsOf(sc.gctx).NoPty {
			// The client goes on without a terminal, as with sshd.
			sc.log.Info("pty refused: no-pty for this key")
			break
		}
		if gossh.Unmarshal(req.Payload, &p) == nil && !sc.started && sc.pty == nil {
			sc.pty = &p
			sc.win = window{Cols: p.Cols, Rows: p.Rows}
			ok = true
		}
	case "window-change":
		var w window
		if gossh.Unmarshal(req.Payload, &w) == nil {
			sc.win = w
			select { // coalesce: the resizer reads the latest size
			case sc.resize <- struct{}{}:
			default:
			}
			ok = true
		}
	case "shell", "exec":
		if sc.started {
			break
		}
		var cmd struct{ Command string }
		if req.Type == "exec" && gossh.Unmarshal(req.Payload, &cmd) != nil {
			break
		}
		sc.started, ok = true, true
		start = &request{shell: req.Type == "shell", command: cmd.Command}
	case "subsystem":
		var sub struct{ Name string }
		if sc.started || gossh.Unmarshal(req.Payload, &sub) != nil || sub.Name != "sftp" {
			break
		}
		sc.started, ok = true, true
		start = &request{subsystem: sub.Name}
	case "auth-agent-req@openssh.com":
		if restrictionsOf(sc.gctx).NoAgentForwarding {
			sc.log.Info("agent forwarding refused: no-agent-forwarding for this key")
			break
		}
		if !sc.started {
			sc.agent, ok = true, true
		}
	case "signal":
		var sig struct{ Signal string }
		if gossh.Unmarshal(req.Payload, &sig) == nil {
			if n, known := signalByName[sig.Signal]; known {
				select {
				case sc.sigs <- n:
				default: // too many waiting: dropped
				}
			}
			ok = true
		}
	}
	return ok, start
}

// request is what the client asked the session to run.
type request struct {
	shell     bool   // a login shell
	command   string // exec
	subsystem string // "sftp"
}

// runSafely runs the session; a panic in it ends this channel only, with
// a line on stderr, and is logged with its stack.
func (sc *sessionChan) runSafely(ctx context.Context, r request) {
	defer sc.ch.Close()
	defer recoverPanic(sc.log, "session", func() {
		sc.fail("internal error in the gateway; this session ends", 1)
	})
	sc.run(ctx, r)
}

// run starts the session's process in the project's container and relays
// it until it ends or the client goes away; the caller closes the channel.
// File transfers go elsewhere.
func (sc *sessionChan) run(ctx context.Context, r request) {
	// The connection's first session takes over its early start: an
	// Attach hands it over, anything else gives it up at once.
	hold := earlyHoldFor(sc.gctx)
	defer abandon(&hold)
	u, key, err := sc.s.identityKey(ctx, sc.gctx)
	if err != nil {
		sc.log.Error("session without identity", "err", err)
		sc.fail("access denied", 1)
		return
	}
	log := sc.log.With("user", u.Name)
	if key.Notice != "" {
		sc.s.tellNewKey(ctx, log, key, sc.notices())
	}
	if sc.gctx.User() == sc.s.opts.CommandLogin {
		sc.runCommands(ctx, log, u, key.Fingerprint, r)
		return
	}
	t, err := sc.s.route(sc.gctx.User())
	project := t.project
	if err != nil {
		log.Info("login refused", "err", err)
		code := uint32(1)
		if errors.Is(err, errCommandLogin) {
			code = 2
		}
		sc.fail(err.Error(), code)
		return
	}
	log = log.With("project", project)
	// File transfers never use the container: they give up the early
	// start at once, before serving.
	if r.subsystem == "sftp" {
		abandon(&hold)
		sc.serveFiles(ctx, log, u, project, "sftp", nil)
		return
	}
	if !r.shell {
		switch kind, args := transferKind(r.command); kind {
		case "scp":
			abandon(&hold)
			sc.serveFiles(ctx, log, u, project, "scp", args)
			return
		case "rsync":
			abandon(&hold)
			sc.serveRsync(ctx, log, u, project, r.command)
			return
		}
	}
	lease, err := sc.s.sessions.Attach(ctx, u, project, t.want, sc.notices())
	if hold != nil {
		hold.Handover() // after Attach: it follows the early launch now
		hold = nil
	}
	if err != nil {
		if errors.Is(err, session.ErrLimit) || errors.Is(err, context.Canceled) {
			log.Info("attach refused", "err", err)
		} else {
			log.Error("attach", "err", err)
		}
		sc.fail(userMessage(err), 1)
		return
	}
	defer lease.Release()

	// The request loop no longer changes these once the session started;
	// copy them, and do the I/O below without the lock.
	sc.mu.Lock()
	spec := runtime.ExecSpec{Env: append([]string{"SSH_CONNECTION=" + sshConnection(sc.gctx)}, sc.env...)}
	var modes string
	if sc.pty != nil {
		spec.Tty, spec.Rows, spec.Cols = true, sc.win.Rows, sc.win.Cols
		spec.Env = append(spec.Env, "TERM="+sc.pty.Term)
		modes = sc.pty.Modes
	}
	wantAgent := sc.agent
	sc.mu.Unlock()
	if spec.Tty {
		// Modes sshd would not apply are ignored, as sshd ignores them;
		// the session still gets its terminal.
		if spec.Modes, err = ptymodes.Parse([]byte(modes)); err != nil {
			log.Debug("pty modes ignored", "err", err)
		}
	}
	if wantAgent {
		sock, closeAgent, err := agentSocket(ctx, sc.conn, lease, log)
		if err != nil {
			log.Error("agent forwarding", "err", err)
		} else {
			defer closeAgent()
			spec.Env = append(spec.Env, "SSH_AUTH_SOCK="+sock)
		}
	}
	spec.Cmd = sessionArgv(lease.Shell(), r.shell, r.command)

	proc, err := lease.Exec(ctx, spec)
	if err != nil {
		log.Error("exec", "err", err)
		sc.fail(userMessage(err), 1)
		return
	}
	defer proc.Close()
	sc.observeStart(u.Name, lease)
	defer sc.s.obs.SessionEnded(u.Name)
	sigDone := make(chan struct{})
	defer close(sigDone)
	go sc.deliverSignals(sigDone, proc)
	if spec.Tty {
		go sc.followWindow(ctx, func(w window) {
			if err := proc.Resize(ctx, w.Rows, w.Cols); err != nil {
				sc.log.Debug("resize", "err", err)
			}
		})
	}
	var stdin io.Reader = sc.ch
	if spec.Tty {
		// Typing into a terminal is activity; a pipe into an exec is not
		// (a script feeding a process is not someone at the keyboard).
		stdin = &touchReader{r: sc.ch, touch: lease.Touch}
	}
	go func() {
		io.Copy(proc.Stdin(), stdin)
		// EOF from the client: the process must read EOF too. A terminal
		// has no half-close; there EOF is a ^D the user types.
		if !spec.Tty {
			proc.Stdin().Close()
		}
	}()
	// When the client goes away first: hang up a terminal session's
	// process group like sshd does; without a terminal, hang up the
	// session's own process only, so what it started in the background
	// (VS Code's server) lives on as under sshd. Then drop our end of the
	// streams.
	stop := context.AfterFunc(ctx, func() {
		var err error
		if spec.Tty {
			err = proc.Hangup()
		} else {
			err = proc.Signal(syscall.SIGHUP)
		}
		if err != nil {
			log.Warn("hangup", "err", err)
		}
		proc.Close()
	})
	defer stop()

	if err := proc.Stream(sc.ch, sc.ch.Stderr()); err != nil && ctx.Err() == nil {
		log.Debug("stream", "err", err)
	}
	if ctx.Err() != nil {
		return // nobody left to tell the exit status to
	}
	select {
	case <-lease.Retired():
		// container-retire took the container away: its processes had no
		// say, so the user hears why rather than a bare SIGKILL.
		sc.fail(fmt.Sprintf("container %s %s; connect again for a fresh one", project, lease.RetiredWhy()), 1)
		return
	default:
	}
	wctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 10*time.Second)
	defer cancel()
	status, err := proc.Wait(wctx)
	if err != nil {
		log.Error("exit status", "err", err)
		sc.fail("lost the exit status of the process", 1)
		return
	}
	sc.exit(status)
}

// observeStart tells the observer that a session's process started and,
// for the connection's first such session, the login's latency since
// authentication (see Observer.Login).
func (sc *sessionChan) observeStart(user string, lease Lease) {
	sc.s.obs.SessionStarted(user)
	cs := stateOf(sc.gctx)
	at := cs.authAt.Load()
	if at == 0 || !cs.loginTimed.CompareAndSwap(false, true) {
		return
	}
	kind := LoginWarm
	if l, ok := lease.(interface{ Launched() bool }); ok && l.Launched() {
		kind = LoginCold
	}
	sc.s.obs.Login(kind, time.Since(time.Unix(0, at)))
}

// sessionArgv is the argv for a session: the user's login shell for
// "shell", or `shell -c command` for "exec", as sshd does.
func sessionArgv(shell string, interactive bool, command string) []string {
	if shell == "" {
		shell = "/bin/sh"
	}
	if interactive {
		return []string{shell, "-l"}
	}
	return []string{shell, "-c", command}
}

// followWindow applies the client's window size each time it changes.
func (sc *sessionChan) followWindow(ctx context.Context, apply func(window)) {
	for {
		select {
		case <-ctx.Done():
			return
		case <-sc.resize:
		}
		sc.mu.Lock()
		w := sc.win
		sc.mu.Unlock()
		apply(w)
	}
}

// deliverSignals passes the client's signals to the process in the order
// they came, those sent before it started first, until done.
func (sc *sessionChan) deliverSignals(done <-chan struct{}, proc runtime.Process) {
	defer recoverPanic(sc.log, "signal delivery", nil)
	for {
		select {
		case <-done:
			return
		case sig := <-sc.sigs:
			if err := proc.Signal(sig); err != nil {
				sc.log.Debug("signal", "signal", signalName[sig], "err", err)
			}
		}
	}
}

// exit reports how the process ended, after all of its output, then
// sends EOF; the caller closes the channel. The status goes before the EOF
// (as sshd sends it when the process ends before its output does): PuTTY,
// once it has sent its own EOF, answers ours with a close, after which
// x/crypto drops a status still to be sent, and plink exits 0.
func (sc *sessionChan) exit(st runtime.ExitStatus) {
	defer sc.closeWrite()
	if name, ok := signalName[st.Signal]; ok && st.Signal != 0 {
		sc.ch.SendRequest("exit-signal", false, gossh.Marshal(struct {
			Signal     string
			CoreDumped bool
			Message    string
			Lang       string
		}{Signal: name}))
		return
	}
	sc.ch.SendRequest("exit-status", false, gossh.Marshal(struct{ Status uint32 }{uint32(st.Code)})) //nolint:gosec // an exit code, 0 to 255
}

// fail tells the user in one line on stderr and ends with an exit status.
func (sc *sessionChan) fail(msg string, code uint32) {
	fmt.Fprintf(sc.notices(), "ds01: %s\n", msg)
	sc.ch.SendRequest("exit-status", false, gossh.Marshal(struct{ Status uint32 }{code}))
	sc.closeWrite()
}

// notices is where the gateway's own messages go: stderr, with "\r\n"
// line ends when the client's terminal is in raw mode (a pty session), or
// each line would start where the last one ended.
// closeWrite sends EOF; nothing is written to the channel after it.
func (sc *sessionChan) closeWrite() {
	sc.eofMu.Lock()
	defer sc.eofMu.Unlock()
	sc.eof = true
	sc.ch.CloseWrite()
}

func (sc *sessionChan) notices() io.Writer {
	sc.mu.Lock()
	pty := sc.pty != nil
	sc.mu.Unlock()
	if pty {
		return crlfWriter{sc.ch.Stderr()}
	}
	return sc.ch.Stderr()
}

type crlfWriter struct{ w io.Writer }

func (c crlfWriter) Write(p []byte) (int, error) {
	if _, err := c.w.Write(bytes.ReplaceAll(p, []byte("\n"), []byte("\r\n"))); err != nil {
		return 0, err
	}
	return len(p), nil
}

// userMessage is the one line a user sees for an error; logs keep detail.
func userMessage(err error) string {
	switch {
	case errors.Is(err, session.ErrInvalidName):
		return err.Error()
	case errors.Is(err, session.ErrLimit):
		return strings.TrimPrefix(err.Error(), session.ErrLimit.Error()+": ")
	case errors.Is(err, runtime.ErrNotRunning):
		return "the project container stopped; connect again"
	}
	msg := err.Error()
	if i := strings.IndexByte(msg, '\n'); i >= 0 {
		msg = msg[:i]
	}
	return msg
}

func sshConnection(gctx gssh.Context) string {
	return strings.Join([]string{hostPort(gctx.RemoteAddr().String()), hostPort(gctx.LocalAddr().String())}, " ")
}

// hostPort writes "host:port" as sshd's "host port".
func hostPort(addr string) string {
	i := strings.LastIndexByte(addr, ':')
	if i < 0 {
		return addr
	}
	return strings.Trim(addr[:i], "[]") + " " + addr[i+1:]
}
