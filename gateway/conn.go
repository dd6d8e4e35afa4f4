package gateway

import (
	"context"
	"fmt"
	"log/slog"
	"sync"
	"sync/atomic"

	gssh "github.com/gliderlabs/ssh"
	gossh "golang.org/x/crypto/ssh"
)

// Defaults for Options.MaxSessions and Options.MaxForwardChannels.
// OpenSSH's MaxSessions is 10. Forwarding channels get more room: VS Code
// and a browser on a forwarded Jupyter open many at once.
const (
	DefaultMaxSessions        = 10
	DefaultMaxForwardChannels = 256
)

// maxPendingGlobal bounds the global requests one connection may have
// waiting for an answer. A client needs a handful (its -R forwards, a
// keepalive); one that piles up more loses the connection.
const maxPendingGlobal = 64

// connState is what the gateway keeps per connection, in its context.
type connState struct {
	sessions atomic.Int32 // session channels open
	forwards atomic.Int32 // forwarding channels open

	// unauthenticated gives back the connection's startup slot; called
	// when authentication succeeds or the connection ends.
	unauthenticated func()

	// What authentication saw, for the observer: a key that belongs to
	// nobody, a registered key, the handshake timeout, success and when
	// (Unix nanoseconds); loginTimed is set once the login's latency has
	// been told.
	unknownKey, knownKey, timedOut, authenticated atomic.Bool
	authAt                                        atomic.Int64
	loginTimed                                    atomic.Bool

	globalOnce sync.Once
	global     chan globalRequest

	// early is the container started before the first session (early.go).
	early early
}

var connStateKey = &struct{ name string }{"ds01-conn"}

func stateOf(gctx gssh.Context) *connState {
	cs, _ := gctx.Value(connStateKey).(*connState)
	if cs == nil {
		// Only a connection that skipped onConnect has none: count it
		// against nothing rather than fail.
		cs = &connState{unauthenticated: func() {}}
	}
	return cs
}

type chanKind int

const (
	chanSession chanKind = iota
	chanForward
)

// limitChannel serves a channel type through h with two guards: at most
// max channels of the kind open at once on one connection (beyond it the
// channel is refused, as OpenSSH's MaxSessions does, with the reason), and
// a panic in h fails that channel only.
func (s *Server) limitChannel(kind chanKind, h gssh.ChannelHandler) gssh.ChannelHandler {
	max, what, option := s.opts.MaxSessions, "sessions", "max_sessions"
	if kind == chanForward {
		max, what, option = s.opts.MaxForwardChannels, "forwarding channels", "max_forward_channels"
	}
	return func(srv *gssh.Server, conn *gossh.ServerConn, nc gossh.NewChannel, gctx gssh.Context) {
		cs := stateOf(gctx)
		n := &cs.sessions
		if kind == chanForward {
			n = &cs.forwards
		}
		if int(n.Add(1)) > max {
			n.Add(-1)
			// Within the failure log's budget: a client may try thousands.
			s.failure(conn.RemoteAddr(), slog.LevelInfo, "channel refused", "login", logName(gctx.User()), "type", nc.ChannelType(), "open", max)
			nc.Reject(gossh.ResourceShortage, fmt.Sprintf("ds01: %d %s open on this connection, the most allowed (%s); close one or open another connection", max, what, option))
			return
		}
		defer n.Add(-1)
		defer recoverPanic(s.log, "channel "+nc.ChannelType(), func() {
			nc.Reject(gossh.ConnectionFailed, "ds01: internal error") // a no-op once accepted
		})
		h(srv, conn, nc, gctx)
	}
}

// globalRequest is a global request waiting for its turn.
type globalRequest struct {
	gctx   gssh.Context
	srv    *gssh.Server
	req    *gossh.Request
	handle gssh.RequestHandler
}

// ordered runs a global request handler off the connection's request loop.
//
// gliderlabs answers global requests one at a time on that loop. A
// tcpip-forward attaches to the project's container, which may build its
// image or wait for a GPU for many minutes; meanwhile the loop stalls, then
// x/crypto's delivery queue fills and the whole connection stops: its
// channels, and the replies to the gateway's keepalives, which then drop it.
// So every global request goes to a per-connection worker instead. The
// worker runs them one at a time in arrival order and answers each before
// the next, because SSH clients match replies to requests in order
// (RFC 4254 section 4; OpenSSH keeps a FIFO).
func (s *Server) ordered(h gssh.RequestHandler) gssh.RequestHandler {
	return func(gctx gssh.Context, srv *gssh.Server, req *gossh.Request) (bool, []byte) {
		cs := stateOf(gctx)
		cs.globalOnce.Do(func() {
			cs.global = make(chan globalRequest, maxPendingGlobal)
			go s.globalRequests(gctx, cs.global)
		})
		own := *req // the worker's copy answers the client
		// gliderlabs replies when this returns; with WantReply cleared that
		// reply is a no-op and the worker's is the only one.
		req.WantReply = false
		select {
		case cs.global <- globalRequest{gctx: gctx, srv: srv, req: &own, handle: h}:
		default:
			s.log.Warn("too many global requests waiting; closing the connection", "user", logName(gctx.User()), "remote", gctx.RemoteAddr().String())
			if conn, ok := gctx.Value(gssh.ContextKeyConn).(*gossh.ServerConn); ok {
				conn.Close()
			}
		}
		return false, nil
	}
}

// globalRequests is a connection's worker for global requests.
func (s *Server) globalRequests(ctx context.Context, q <-chan globalRequest) {
	for {
		select {
		case <-ctx.Done():
			return
		case r := <-q:
			s.answerGlobal(r)
		}
	}
}

func (s *Server) answerGlobal(r globalRequest) {
	ok, payload := false, []byte(nil)
	defer func() {
		r.req.Reply(ok, payload)
	}()
	defer recoverPanic(s.log, "global request "+r.req.Type, nil)
	ok, payload = r.handle(r.gctx, r.srv, r.req)
}

// refuseRequest answers global requests the gateway does not serve, such as
// a client's keepalive@openssh.com, with a failure, as sshd does.
func refuseRequest(gssh.Context, *gssh.Server, *gossh.Request) (bool, []byte) {
	return false, nil
}
