package gateway

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"net"
	"strconv"
	"strings"
	"sync"

	gssh "github.com/gliderlabs/ssh"
	gossh "golang.org/x/crypto/ssh"

	"github.com/ds01/ds01-gateway/session/runtime"
	"github.com/ds01/ds01-gateway/store"
)

// directTCPIP is RFC 4254 section 7.2's "direct-tcpip" payload: what
// `ssh -L`, `ssh -D` (SOCKS) and `ssh -W` open.
type directTCPIP struct {
	DestAddr   string
	DestPort   uint32
	OriginAddr string
	OriginPort uint32
}

// errForwardRefused is the user's explanation of a refused forward.
const errForwardRefused = "ds01: forwarding goes only to 127.0.0.1, localhost, ::1 or the project's name, inside your container"

// forwardTarget maps a client's destination to an address dialled from
// inside the user's container, or refuses it. The loopback names mean the
// container's loopback (VS Code hard-codes 127.0.0.1); everything else,
// the gateway host, other containers, other networks, is refused unless
// the admin allowed it ("host" for any port, "host:port" for one).
func forwardTarget(host string, port uint32, project string, allow []string) (string, bool) {
	if port == 0 || port > 65535 {
		return "", false
	}
	p := strconv.Itoa(int(port))
	switch host {
	case "127.0.0.1", "localhost", project:
		return net.JoinHostPort("127.0.0.1", p), true
	case "::1":
		return net.JoinHostPort("::1", p), true
	}
	for _, a := range allow {
		if a == host || a == net.JoinHostPort(host, p) {
			return net.JoinHostPort(host, p), true
		}
	}
	return "", false
}

// forwardOwner resolves who asks for a forward and which project it is
// for; it rejects the channel and returns false when either fails.
func (s *Server) forwardOwner(gctx gssh.Context, newChan gossh.NewChannel) (store.User, target, bool) {
	if restrictionsOf(gctx).NoPortForwarding {
		s.log.Info("forward refused: no-port-forwarding for this key", "login", logName(gctx.User()), "type", newChan.ChannelType())
		newChan.Reject(gossh.Prohibited, errNoPortForwarding)
		return store.User{}, target{}, false
	}
	u, err := s.identity(gctx, gctx)
	if err != nil {
		newChan.Reject(gossh.Prohibited, "ds01: access denied")
		return store.User{}, target{}, false
	}
	t, err := s.route(gctx.User())
	if err != nil {
		newChan.Reject(gossh.Prohibited, "ds01: "+err.Error())
		return store.User{}, target{}, false
	}
	return u, t, true
}

// forwardLease launches or joins the project's container for a forward,
// as a shell would; it rejects the channel and returns nil on failure.
func (s *Server) forwardLease(ctx context.Context, log *slog.Logger, newChan gossh.NewChannel, u store.User, t target) Lease {
	lease, err := s.sessions.Attach(ctx, u, t.project, t.want, io.Discard)
	if err != nil {
		log.Error("forward: attach", "err", err)
		newChan.Reject(gossh.ConnectionFailed, "ds01: "+userMessage(err))
		return nil
	}
	return lease
}

// directTCPIP serves a local forward by connecting inside the project's
// container, launching or joining it as a shell would.
func (s *Server) directTCPIP(_ *gssh.Server, conn *gossh.ServerConn, newChan gossh.NewChannel, gctx gssh.Context) {
	var d directTCPIP
	if err := gossh.Unmarshal(newChan.ExtraData(), &d); err != nil {
		newChan.Reject(gossh.ConnectionFailed, "ds01: malformed forwarding request")
		return
	}
	log := s.log.With("login", logName(gctx.User()), "remote", conn.RemoteAddr().String(), "dest", logName(net.JoinHostPort(d.DestAddr, strconv.Itoa(int(d.DestPort)))))
	u, t, ok := s.forwardOwner(gctx, newChan)
	if !ok {
		return
	}
	log = log.With("user", u.Name)
	addr, ok := forwardTarget(d.DestAddr, d.DestPort, t.project, s.opts.ForwardAllow)
	if !ok {
		log.Warn("forward refused")
		newChan.Reject(gossh.Prohibited, errForwardRefused)
		return
	}
	ctx, cancel := context.WithCancel(gctx)
	defer cancel()
	lease := s.forwardLease(ctx, log, newChan, u, t)
	if lease == nil {
		return
	}
	defer lease.Release()
	nc, err := lease.Dial(ctx, "tcp", addr)
	if err != nil {
		log.Info("forward: connect", "err", err)
		newChan.Reject(gossh.ConnectionFailed, fmt.Sprintf("ds01: connect to %s in the container: connection refused", addr))
		return
	}
	ch, reqs, err := newChan.Accept()
	if err != nil {
		nc.Close()
		return
	}
	go gossh.DiscardRequests(reqs)
	splice(ctx, ch, nc)
}

// splice copies both ways until both directions are done or ctx ends,
// passing half-closes on.
func splice(ctx context.Context, ch gossh.Channel, nc net.Conn) {
	stop := context.AfterFunc(ctx, func() { ch.Close(); nc.Close() })
	defer stop()
	var wg sync.WaitGroup
	wg.Add(2)
	go func() {
		defer wg.Done()
		io.Copy(nc, ch)
		if tc, ok := nc.(interface{ CloseWrite() error }); ok {
			_ = tc.CloseWrite() // the peer may be gone already; splice ends either way
		}
	}()
	go func() {
		defer wg.Done()
		io.Copy(ch, nc)
		ch.CloseWrite()
	}()
	wg.Wait()
	ch.Close()
	nc.Close()
}

// directStreamlocal is OpenSSH's direct-streamlocal@openssh.com payload:
// `ssh -L /local.sock:/path/in/container.sock`.
type directStreamlocal struct {
	SocketPath string
	Reserved0  string
	Reserved1  uint32
}

// directStreamlocal connects to a unix socket inside the project's
// container. The path is resolved by a relay running in the container as
// the user (netcat's -U), never by the gateway on the host: a path or a
// symlink the user controls must not lead the gateway, root, to a host
// socket such as Docker's.
func (s *Server) directStreamlocal(_ *gssh.Server, conn *gossh.ServerConn, newChan gossh.NewChannel, gctx gssh.Context) {
	var d directStreamlocal
	if err := gossh.Unmarshal(newChan.ExtraData(), &d); err != nil || d.SocketPath == "" || strings.ContainsRune(d.SocketPath, 0) {
		newChan.Reject(gossh.ConnectionFailed, "ds01: malformed forwarding request")
		return
	}
	log := s.log.With("login", logName(gctx.User()), "remote", conn.RemoteAddr().String(), "socket", logName(d.SocketPath))
	u, t, ok := s.forwardOwner(gctx, newChan)
	if !ok {
		return
	}
	ctx, cancel := context.WithCancel(gctx)
	defer cancel()
	lease := s.forwardLease(ctx, log, newChan, u, t)
	if lease == nil {
		return
	}
	defer lease.Release()
	proc, err := lease.Exec(ctx, runtime.ExecSpec{Cmd: []string{"nc", "-U", d.SocketPath}})
	if err != nil {
		log.Error("forward: relay", "err", err)
		newChan.Reject(gossh.ConnectionFailed, "ds01: cannot reach the socket in the container")
		return
	}
	defer proc.Close()
	ch, reqs, err := newChan.Accept()
	if err != nil {
		return
	}
	go gossh.DiscardRequests(reqs)
	stop := context.AfterFunc(ctx, func() { ch.Close(); proc.Close() })
	defer stop()
	go func() {
		io.Copy(proc.Stdin(), ch)
		proc.Stdin().Close()
	}()
	if err := proc.Stream(ch, io.Discard); err != nil && ctx.Err() == nil {
		log.Debug("forward: relay stream", "err", err)
	}
	ch.CloseWrite()
	ch.Close()
}
