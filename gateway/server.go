// Package gateway is the SSH front door: it listens, authenticates users by
// public key, routes the login name to one of the user's projects, and
// serves session channels by running processes in the project's container.
//
// Data flows one way: connection (server.go, conn.go) → auth (auth.go) →
// route (route.go) → session channel (channel.go) → Sessions (sessions.go,
// the session manager) → container.
package gateway

import (
	"context"
	"errors"
	"log/slog"
	"net"
	"sync"
	"time"

	gssh "github.com/gliderlabs/ssh"
	gossh "golang.org/x/crypto/ssh"

	"github.com/ds01/ds01-gateway/commands"
	"github.com/ds01/ds01-gateway/store"
)

// Options configures the SSH server.
type Options struct {
	// Self is the gateway's own binary, re-executed as the user to serve
	// file transfers.
	Self         string
	HostSigners  []gossh.Signer
	CommandLogin string
	// PublicName is the gateway's host name as users type it, for hints
	// such as "ssh ds01@<name> container-retire p".
	PublicName       string
	HandshakeTimeout time.Duration
	MaxAuthTries     int
	// Ciphers, MACs, KeyExchanges and HostKeyAlgorithms are the SSH
	// algorithms offered; empty means the defaults of crypto.go. Without
	// Ciphers, the ciphers depend on the client's software.
	Ciphers           []string
	MACs              []string
	KeyExchanges      []string
	HostKeyAlgorithms []string
	// KeepaliveInterval and KeepaliveCount: a client that answers none of
	// KeepaliveCount keepalives sent KeepaliveInterval apart is dropped, so
	// a vanished laptop does not keep its container (and GPUs) forever.
	// A zero interval turns keepalives off. How idle connections are
	// watched at almost no cost: keepalive.go.
	KeepaliveInterval time.Duration
	KeepaliveCount    int
	// ForwardAllow lists extra destinations local forwards may reach,
	// dialled from inside the user's container: "host" or "host:port".
	ForwardAllow []string
	// MaxSessions caps the session channels open at once on one
	// connection, as OpenSSH's MaxSessions does; MaxForwardChannels caps
	// the forwarding channels (direct-tcpip, direct-streamlocal). Zero
	// means the default.
	MaxSessions        int
	MaxForwardChannels int
	// MaxStartups caps the connections that have not authenticated yet,
	// MaxStartupsPerSource those from one address (an IPv6 /64), like
	// sshd's MaxStartups and PerSourceMaxStartups. Zero means the default.
	MaxStartups          int
	MaxStartupsPerSource int
	// IsAdmin says whether u is one of the lab's admins, who may use the
	// admin commands (commands.Env.Admin); nil makes nobody one. It runs
	// once per command session, never on a project login.
	IsAdmin func(ctx context.Context, u store.User) bool
	// Events records auth.denied events (authlog.go); nil records none.
	Events EventRecorder
	// Observer hears failed logins, sessions, login latency and transfer
	// volume (observe.go); nil means nobody does.
	Observer Observer
}

// Users finds the account a public key belongs to.
type Users interface {
	UserByKey(ctx context.Context, fingerprint string) (store.User, store.Key, error)
}

// Server is the gateway's SSH server.
type Server struct {
	opts     Options
	users    Users
	sessions Sessions
	commands commands.Service
	log      *slog.Logger
	srv      *gssh.Server

	startups *startups
	failures *failureLog
	denied   *authDenials // nil without Options.Events
	open     openSessions // for the shutdown notice (shutdown.go)
	// keepalives watches connections for a vanished client; nil when
	// Options.KeepaliveInterval is zero.
	keepalives *keepalives
	obs        Observer
	// earlyTimeout is how long an early start waits for a session.
	earlyTimeout time.Duration
	// handshakes maps a connection's remote address to its state until
	// the connection ends: the handshake's failure callback is given the
	// connection only, and needs what authentication saw.
	handshakes sync.Map
}

// New builds a server; call Serve to accept connections. Sessions serve
// projects (gateway.NewSessions adapts the session layer), cmds the
// built-in commands.
func New(opts Options, users Users, sessions Sessions, cmds commands.Service, log *slog.Logger) (*Server, error) {
	if len(opts.HostSigners) == 0 {
		return nil, errors.New("gateway: no host keys")
	}
	if opts.HandshakeTimeout <= 0 {
		opts.HandshakeTimeout = 30 * time.Second
	}
	if opts.MaxAuthTries <= 0 {
		opts.MaxAuthTries = 6
	}
	algos, err := newAlgorithms(opts)
	if err != nil {
		return nil, err
	}
	if opts.PublicName == "" {
		opts.PublicName = "ds01"
	}
	opts.MaxSessions = orDefault(opts.MaxSessions, DefaultMaxSessions)
	opts.MaxForwardChannels = orDefault(opts.MaxForwardChannels, DefaultMaxForwardChannels)
	opts.MaxStartups = orDefault(opts.MaxStartups, DefaultMaxStartups)
	opts.MaxStartupsPerSource = orDefault(opts.MaxStartupsPerSource, DefaultMaxStartupsPerSource)
	obs := opts.Observer
	if obs == nil {
		obs = nopObserver{}
	}
	s := &Server{opts: opts, users: users, sessions: sessions, commands: cmds, log: log, obs: obs,
		startups: newStartups(opts.MaxStartups, opts.MaxStartupsPerSource),
		failures: newFailureLog(failureLinesPerSource, failureLinesTotal, failureWindow, func(src string, n int) {
			log.Info("connection failures not logged", "source", src, "suppressed", n, "window", failureWindow)
		}),
		denied:       newAuthDenials(opts.Events, log, deniedWindow),
		earlyTimeout: DefaultEarlyHoldTimeout,
	}
	if opts.KeepaliveInterval > 0 {
		s.keepalives = newKeepalives(opts.KeepaliveInterval, opts.KeepaliveCount)
	}
	s.srv = &gssh.Server{
		Version:          serverVersion,
		HostSigners:      toGliderSigners(algos.hostKeys),
		PublicKeyHandler: s.authorize,
		ConnCallback:     algos.connCallback(s.onConnect),
		ServerConfigCallback: func(ctx gssh.Context) *gossh.ServerConfig {
			cfg := &gossh.ServerConfig{Config: algos.config(ctx), MaxAuthTries: opts.MaxAuthTries}
			return cfg
		},
		ConnectionFailedCallback: func(conn net.Conn, err error) {
			s.failure(conn.RemoteAddr(), slog.LevelDebug, "handshake failed", "err", err)
			cs, _ := s.handshakes.LoadAndDelete(conn.RemoteAddr().String())
			st, _ := cs.(*connState)
			if st == nil || !st.authenticated.Load() {
				s.obs.AuthFailed(authFailure(err, st))
			}
		},
		// Local forwards connect inside the user's own container only;
		// other channel types are refused.
		// Remote forwards listen inside the user's container. Every
		// global request is answered in order off the connection's loop.
		RequestHandlers: map[string]gssh.RequestHandler{
			"tcpip-forward":        s.ordered(s.tcpipForward),
			"cancel-tcpip-forward": s.ordered(s.cancelTCPIPForward),
			"default":              s.ordered(refuseRequest),
		},
		ChannelHandlers: map[string]gssh.ChannelHandler{
			"session":                        s.limitChannel(chanSession, s.sessionChannel),
			"direct-tcpip":                   s.limitChannel(chanForward, s.directTCPIP),
			"direct-streamlocal@openssh.com": s.limitChannel(chanForward, s.directStreamlocal),
		},
	}
	s.srv.ServerConfigCallback = s.countAuthenticated(s.srv.ServerConfigCallback)
	return s, nil
}

func orDefault(v, def int) int {
	if v <= 0 {
		return def
	}
	return v
}

func toGliderSigners(in []gossh.Signer) []gssh.Signer {
	out := make([]gssh.Signer, len(in))
	for i, s := range in {
		out[i] = s
	}
	return out
}

// Serve accepts connections on ln until Shutdown.
func (s *Server) Serve(ln net.Listener) error {
	err := s.srv.Serve(ln)
	if errors.Is(err, gssh.ErrServerClosed) {
		return nil
	}
	return err
}

// onConnect bounds unauthenticated connections: beyond MaxStartups in all
// or MaxStartupsPerSource from one source a new one is closed at once, and
// a client that has not authenticated within HandshakeTimeout is dropped,
// so idle half-open connections cannot pile up.
func (s *Server) onConnect(ctx gssh.Context, conn net.Conn) net.Conn {
	release, refused := s.startups.acquire(sourceOf(conn.RemoteAddr()))
	if release == nil {
		s.failure(conn.RemoteAddr(), slog.LevelInfo, "connection refused", "reason", refused)
		s.obs.AuthFailed(refusedReason(refused))
		return nil // gliderlabs closes it
	}
	cs := &connState{unauthenticated: release}
	ctx.SetValue(connStateKey, cs)
	remote := conn.RemoteAddr().String()
	s.handshakes.Store(remote, cs)
	var ka *keepaliveConn
	if s.keepalives != nil {
		ka = s.watchKeepalives(ctx, conn)
		conn = ka
	}
	t := time.AfterFunc(s.opts.HandshakeTimeout, func() {
		if ctx.Value(gssh.ContextKeyConn) == nil {
			s.failure(conn.RemoteAddr(), slog.LevelInfo, "handshake timeout")
			cs.timedOut.Store(true)
			conn.Close()
		}
	})
	go func() {
		<-ctx.Done()
		t.Stop()
		release()
		if ka != nil {
			s.keepalives.remove(ka)
		}
		cs.early.abandon()
		if cs.authenticated.Load() {
			s.handshakes.CompareAndDelete(remote, cs)
			return
		}
		// x/crypto closes a failed connection, which ends ctx, before
		// the failure callback runs: leave that callback the state.
		time.AfterFunc(time.Second, func() { s.handshakes.CompareAndDelete(remote, cs) })
	}()
	return conn
}
