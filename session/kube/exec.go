package kube

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/util/exec"

	"github.com/ds01/ds01-gateway/session/ptymodes"
	"github.com/ds01/ds01-gateway/session/runtime"
)

// Kubernetes' exec has no user, working directory or environment of its
// own, and no way to signal the process. So every exec runs through a
// small sh wrapper that takes all of them as arguments (never pasted into
// the script: nothing a user controls is parsed by the shell):
//
//	$1 token: exported as DS01_EXEC, which marks the process for Signal
//	$2 dir ("" to stay), $3 and $4 the stty words that set a terminal's
//	size and the client's terminal modes, and the size alone (see
//	ptymodes.SttyShell: made from numbers only), $5 the number of
//	NAME=VALUE words that follow, then the command.
//
// The wrapper execs the command, so it keeps the wrapper's PID and its exit
// status (a death by signal N is 128+N, as with Docker) is the exec's.
const execScript = `export DS01_EXEC="$1"; d=$2; w=$3; f=$4; n=$5; shift 5
` + ptymodes.SttyShell + `
while [ "$n" -gt 0 ]; do export "$1"; shift; n=$((n-1)); done
if [ -n "$d" ]; then cd "$d" || exit 1; fi
exec "$@"`

// signalScript finds the process an exec started (the one marked with the
// token whose parent is not) and signals it, or with $3 = 1 its process
// group. Exit 3: no such process any more.
const signalScript = `t=$1; s=$2; g=$3
for d in /proc/[0-9]*; do
  grep -qs "DS01_EXEC=$t" "$d/environ" || continue
  read -r st < "$d/stat" || continue
  st=${st##*) }; set -- $st
  if [ "$2" != 0 ] && grep -qs "DS01_EXEC=$t" "/proc/$2/environ"; then continue; fi
  p=${d#/proc/}
  if [ "$g" = 1 ]; then kill -s "$s" -- "-$p" 2>/dev/null && exit 0; fi
  exec kill -s "$s" "$p"
done
exit 3`

// execArgv is the wrapped command line of spec, marked with token.
func execArgv(spec runtime.ExecSpec, token string) []string {
	env := validEnv(spec.Env)
	var words, size string
	if spec.Tty {
		words, size = ptymodes.SttyWords(spec.Rows, spec.Cols, spec.Modes)
	}
	argv := make([]string, 0, 9+len(env)+len(spec.Cmd))
	argv = append(argv, "/bin/sh", "-c", execScript, "ds01-exec", token, spec.Dir, words, size, strconv.Itoa(len(env)))
	argv = append(argv, env...)
	return append(argv, spec.Cmd...)
}

// validEnv drops entries whose name a shell cannot export (Docker would
// pass them on; no program the gateway starts needs one).
func validEnv(env []string) []string {
	out := make([]string, 0, len(env))
	for _, e := range env {
		name, _, ok := strings.Cut(e, "=")
		if ok && validName(name) {
			out = append(out, e)
		}
	}
	return out
}

func validName(s string) bool {
	for i, r := range s {
		if !(r == '_' || r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || i > 0 && r >= '0' && r <= '9') {
			return false
		}
	}
	return s != ""
}

// Exec starts spec.Cmd in the pod's main container. The process runs as
// the pod's user; asking for another is an error. Errors of the exec
// itself (a pod that is gone) come from Wait.
func (k *Kube) Exec(ctx context.Context, id string, spec runtime.ExecSpec) (runtime.Process, error) {
	if len(spec.Cmd) == 0 {
		return nil, errors.New("exec: empty command")
	}
	if spec.Dir != "" && !strings.HasPrefix(spec.Dir, "/") {
		return nil, fmt.Errorf("exec: working directory %q is not absolute", spec.Dir)
	}
	if spec.User != "" {
		if err := k.checkUser(ctx, id, spec.User); err != nil {
			return nil, err
		}
	}
	var b [16]byte
	rand.Read(b[:])
	token := hex.EncodeToString(b[:])
	// The stream outlives Exec's context, as Docker's attach connection
	// does: Close ends it.
	sctx, cancel := context.WithCancel(context.WithoutCancel(ctx))
	p := &process{k: k, pod: id, token: token, tty: spec.Tty, cancel: cancel, done: make(chan struct{})}
	inR, inW := io.Pipe()
	outR, outW := io.Pipe()
	p.in, p.out = inW, outR
	s := Stream{Stdin: inR, Stdout: outW, Tty: spec.Tty}
	var errW *io.PipeWriter
	if !spec.Tty {
		p.errOut, errW = io.Pipe()
		s.Stderr = errW
	} else {
		p.sizes = newSizeQueue()
		if spec.Rows > 0 && spec.Cols > 0 {
			p.sizes.push(spec.Rows, spec.Cols)
		}
		s.Sizes = p.sizes
	}
	go func() {
		p.err = k.stream(sctx, id, mainContainer, execArgv(spec, token), s)
		outW.Close()
		if errW != nil {
			errW.Close()
		}
		// End the stream's stdin copy (EOF: an error there is only
		// logged) and fail later writes.
		inW.Close()
		if p.sizes != nil {
			p.sizes.close()
		}
		close(p.done)
	}()
	return p, nil
}

// checkUser refuses an exec as anyone but the pod's user: a pod has one.
func (k *Kube) checkUser(ctx context.Context, id, user string) error {
	v, ok := k.st.users.Load(id)
	if !ok {
		pod, err := k.pods().Get(ctx, id, metav1.GetOptions{})
		if apierrors.IsNotFound(err) {
			return fmt.Errorf("exec: %w", runtime.ErrNotRunning)
		}
		if err != nil {
			return fmt.Errorf("exec: get pod: %w", err)
		}
		sc := pod.Spec.SecurityContext
		if sc == nil || sc.RunAsUser == nil || sc.RunAsGroup == nil {
			return fmt.Errorf("exec: pod %s has no user", id)
		}
		v = podUser{uid: *sc.RunAsUser, gid: *sc.RunAsGroup}
		k.st.users.Store(id, v)
	}
	pu := v.(podUser)
	uid, gid, hasGID := strings.Cut(user, ":")
	if uid != strconv.FormatInt(pu.uid, 10) || hasGID && gid != strconv.FormatInt(pu.gid, 10) {
		return fmt.Errorf("exec: user %s: the pod runs as %d:%d, and kubernetes execs as the pod's user", user, pu.uid, pu.gid)
	}
	return nil
}

// process is one exec: its streams cross io.Pipes to the stream's
// goroutine, so Exec returns at once and output waits for Stream.
type process struct {
	k     *Kube
	pod   string
	token string
	tty   bool

	in          *io.PipeWriter
	out, errOut *io.PipeReader
	sizes       *sizeQueue
	cancel      context.CancelFunc

	done chan struct{}
	err  error // the stream's end; read after done
}

func (p *process) Stdin() io.WriteCloser { return p.in }

// streamBuf is large so bulk output crosses in few, big channel writes.
const streamBuf = 256 << 10

// Stream copies stdout and stderr at once, from two goroutines; their
// writes are serialised, as Docker's single demultiplexer does, so one
// writer may serve as both (a bytes.Buffer given twice lost output).
func (p *process) Stream(stdout, stderr io.Writer) error {
	var wg sync.WaitGroup
	var errErr error
	var mu sync.Mutex
	if p.errOut != nil {
		wg.Add(1)
		go func() {
			defer wg.Done()
			_, errErr = io.Copy(&lockedWriter{mu: &mu, w: stderr}, p.errOut)
			p.errOut.CloseWithError(io.ErrClosedPipe)
		}()
	}
	_, err := io.CopyBuffer(&lockedWriter{mu: &mu, w: stdout}, p.out, make([]byte, streamBuf))
	// A writer that failed must not block the stream's goroutine.
	p.out.CloseWithError(io.ErrClosedPipe)
	wg.Wait()
	return errors.Join(err, errErr)
}

func (p *process) Wait(ctx context.Context) (runtime.ExitStatus, error) {
	select {
	case <-p.done:
	case <-ctx.Done():
		return runtime.ExitStatus{}, ctx.Err()
	}
	return exitStatus(p.err)
}

// exitStatus reads the stream's end. The kubelet reports a death by
// signal N as exit code 128+N, like a shell, and gives nothing else: such
// codes are reported as signals, as session/docker does.
func exitStatus(err error) (runtime.ExitStatus, error) {
	if err == nil {
		return runtime.ExitStatus{}, nil
	}
	var ee exec.ExitError
	if errors.As(err, &ee) {
		code := ee.ExitStatus()
		if code > 128 && code < 128+32 {
			return runtime.ExitStatus{Code: code, Signal: syscall.Signal(code - 128)}, nil
		}
		return runtime.ExitStatus{Code: code}, nil
	}
	if apierrors.IsNotFound(err) || apierrors.IsBadRequest(err) || strings.Contains(err.Error(), "not found") {
		return runtime.ExitStatus{}, fmt.Errorf("exec: %w (%v)", runtime.ErrNotRunning, err)
	}
	return runtime.ExitStatus{}, fmt.Errorf("exec: %w", err)
}

func (p *process) running() bool {
	select {
	case <-p.done:
		return false
	default:
		return true
	}
}

// Signal delivers sig through a second exec that finds the process by its
// token. A process whose stream has ended is not signalled: its PID may
// belong to another process by then.
func (p *process) Signal(sig syscall.Signal) error { return p.kill(sig, false) }

// Hangup sends SIGHUP to the process group; with a TTY the exec is a
// session leader, so that is its whole job tree on the terminal.
func (p *process) Hangup() error { return p.kill(syscall.SIGHUP, true) }

func (p *process) kill(sig syscall.Signal, group bool) error {
	if !p.running() {
		return nil
	}
	name, ok := signalNames[sig]
	if !ok {
		return fmt.Errorf("signal %d: not supported", int(sig))
	}
	g := "0"
	if group {
		g = "1"
	}
	ctx, cancel := context.WithTimeout(context.Background(), signalTimeout)
	defer cancel()
	for try := 0; ; try++ {
		var out strings.Builder
		err := p.k.stream(ctx, p.pod, mainContainer, []string{"/bin/sh", "-c", signalScript, "ds01-signal", p.token, name, g}, Stream{Stderr: &out})
		var ee exec.ExitError
		if errors.As(err, &ee) && ee.ExitStatus() == 3 {
			// Not found: it ended, or the wrapper has not exec'd the
			// command yet (the mark is in the environment from then).
			if try < 2 && p.running() {
				time.Sleep(20 * time.Millisecond)
				continue
			}
			return nil
		}
		if err != nil {
			return fmt.Errorf("signal %s: %w %s", name, err, strings.TrimSpace(out.String()))
		}
		return nil
	}
}

func (p *process) Resize(ctx context.Context, rows, cols uint32) error {
	if p.sizes != nil {
		p.sizes.push(rows, cols)
	}
	return nil
}

func (p *process) Close() error {
	p.cancel()
	p.in.CloseWithError(io.ErrClosedPipe)
	return nil
}

// lockedWriter serialises writes to w with the other writers of mu.
type lockedWriter struct {
	mu *sync.Mutex
	w  io.Writer
}

func (l *lockedWriter) Write(b []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.w.Write(b)
}
