package gateway

import (
	"context"
	"io"
	"log/slog"
	"net"
	"strconv"
	"sync"

	gssh "github.com/gliderlabs/ssh"
	gossh "golang.org/x/crypto/ssh"
)

// `ssh -R port:host:hostport` asks the server to listen and send what
// arrives back to the client. The gateway listens inside the user's
// container's network namespace, so the port exists for the user's
// processes in the container and never on the gateway host's interfaces.
// The forward holds a lease on the container and ends with the connection
// or a cancel request.

type tcpipForward struct {
	BindAddr string
	BindPort uint32
}

type forwardedTCPIP struct {
	DestAddr   string
	DestPort   uint32
	OriginAddr string
	OriginPort uint32
}

// remoteForwards are one connection's -R listeners.
type remoteForwards struct {
	mu  sync.Mutex
	lns map[string]func() // "addr:port" → stop
}

// maxRemoteForwards bounds one connection's -R listeners; each holds a
// socket in the container and a lease.
const maxRemoteForwards = 64

func (f *remoteForwards) count() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return len(f.lns)
}

var remoteForwardsKey = &struct{ name string }{"ds01-remote-forwards"}

func forwardsOf(gctx gssh.Context) *remoteForwards {
	gctx.Lock()
	defer gctx.Unlock()
	if f, ok := gctx.Value(remoteForwardsKey).(*remoteForwards); ok {
		return f
	}
	f := &remoteForwards{lns: map[string]func(){}}
	gctx.SetValue(remoteForwardsKey, f)
	return f
}

func (s *Server) tcpipForward(gctx gssh.Context, _ *gssh.Server, req *gossh.Request) (bool, []byte) {
	var f tcpipForward
	if err := gossh.Unmarshal(req.Payload, &f); err != nil || f.BindPort > 65535 {
		return false, nil
	}
	if restrictionsOf(gctx).NoPortForwarding {
		s.log.Info("remote forward refused: no-port-forwarding for this key", "login", logName(gctx.User()))
		return false, nil
	}
	conn, _ := gctx.Value(gssh.ContextKeyConn).(*gossh.ServerConn)
	u, err := s.identity(gctx, gctx)
	if err != nil || conn == nil {
		return false, nil
	}
	t, err := s.route(gctx.User())
	if err != nil {
		return false, nil
	}
	project := t.project
	log := s.log.With("user", u.Name, "project", project, "bind", logName(net.JoinHostPort(f.BindAddr, strconv.Itoa(int(f.BindPort)))))
	fw := forwardsOf(gctx)
	if fw.count() >= maxRemoteForwards {
		log.Info("remote forward refused: too many on this connection", "max", maxRemoteForwards)
		return false, nil
	}
	bind := f.BindAddr
	if bind == "" || bind == "localhost" {
		bind = "127.0.0.1" // OpenSSH's default: the loopback, here the container's
	}
	ctx, cancel := context.WithCancel(gctx)
	lease, err := s.sessions.Attach(ctx, u, project, t.want, io.Discard)
	if err != nil {
		cancel()
		log.Error("remote forward: attach", "err", err)
		return false, nil
	}
	ln, err := lease.Listen(ctx, "tcp", net.JoinHostPort(bind, strconv.Itoa(int(f.BindPort))))
	if err != nil {
		lease.Release()
		cancel()
		log.Info("remote forward: listen", "err", err)
		return false, nil
	}
	port := uint32(ln.Addr().(*net.TCPAddr).Port) //nolint:gosec // a port, 0 to 65535
	key := net.JoinHostPort(f.BindAddr, strconv.Itoa(int(port)))
	stop := func() { cancel(); ln.Close() }
	fw.mu.Lock()
	fw.lns[key] = stop
	if f.BindPort != port { // the client asked for port 0 and refers to it so
		fw.lns[net.JoinHostPort(f.BindAddr, "0")] = stop
	}
	fw.mu.Unlock()
	go func() {
		defer lease.Release()
		// The listener lives in the container's network namespace: it
		// ends with the connection, or with the container.
		select {
		case <-ctx.Done():
		case <-lease.Retired():
			cancel()
		}
		ln.Close()
	}()
	go s.serveRemoteForward(ctx, log, conn, ln, f.BindAddr, port)
	log.Info("remote forward", "port", port)
	if f.BindPort == 0 {
		return true, gossh.Marshal(struct{ Port uint32 }{port})
	}
	return true, nil
}

func (s *Server) serveRemoteForward(ctx context.Context, log *slog.Logger, conn *gossh.ServerConn, ln net.Listener, addr string, port uint32) {
	defer recoverPanic(log, "remote forward", func() { ln.Close() })
	for {
		c, err := ln.Accept()
		if err != nil {
			return
		}
		go func() {
			defer recoverPanic(log, "remote forward connection", func() { c.Close() })
			origin, oport := "", 0
			if ta, ok := c.RemoteAddr().(*net.TCPAddr); ok {
				origin, oport = ta.IP.String(), ta.Port
			}
			ch, reqs, err := conn.OpenChannel("forwarded-tcpip", gossh.Marshal(forwardedTCPIP{
				DestAddr: addr, DestPort: port, OriginAddr: origin, OriginPort: uint32(oport),
			}))
			if err != nil {
				c.Close()
				return
			}
			go gossh.DiscardRequests(reqs)
			splice(ctx, ch, c)
		}()
	}
}

func (s *Server) cancelTCPIPForward(gctx gssh.Context, _ *gssh.Server, req *gossh.Request) (bool, []byte) {
	var f tcpipForward
	if err := gossh.Unmarshal(req.Payload, &f); err != nil {
		return false, nil
	}
	fw := forwardsOf(gctx)
	key := net.JoinHostPort(f.BindAddr, strconv.Itoa(int(f.BindPort)))
	fw.mu.Lock()
	stop, ok := fw.lns[key]
	delete(fw.lns, key)
	fw.mu.Unlock()
	if ok {
		stop()
	}
	return ok, nil
}
