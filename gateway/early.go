package gateway

import (
	"context"
	"sync"
	"time"

	gssh "github.com/gliderlabs/ssh"
	gossh "golang.org/x/crypto/ssh"

	"github.com/ds01/ds01-gateway/session"
	"github.com/ds01/ds01-gateway/store"
)

// A cold login's container starts as soon as the connection has proved
// its key, while the client still opens its session channel and sends its
// requests (several round trips on a real network). Nothing happens for a
// key that is only offered: x/crypto calls PublicKeyCallback (authorize)
// for offered keys too, before any signature, so the start hangs off
// VerifiedPublicKeyCallback, which runs only after the signature over the
// session identifier verified, and AuthLogCallback's success, which comes
// after it once authentication as a whole has succeeded.

// Preparer is implemented by a Sessions that can start a project's
// container before a session asks (the session layer's Prepare).
type Preparer interface {
	Prepare(u store.User, project string, want session.Want) EarlyHold
}

// EarlyHold is one connection's early claim on its project's container:
// Handover once its first session has attached, Abandon when it will not
// use it. Only the first call counts.
type EarlyHold interface {
	Handover()
	Abandon()
}

// DefaultEarlyHoldTimeout is how long an early start waits for the
// connection's first session before it is abandoned.
const DefaultEarlyHoldTimeout = 10 * time.Second

// early is a connection's early start: at most one hold, claimed by the
// first session (or the end of the connection) exactly once.
type early struct {
	mu      sync.Mutex
	claimed bool
	hold    EarlyHold
	timer   *time.Timer
	// key is the fingerprint of the key whose signature verified.
	key string
}

// verified records the key whose signature verified, before
// authentication's success is logged.
func (e *early) verified(key gossh.PublicKey) {
	e.mu.Lock()
	defer e.mu.Unlock()
	e.key = gossh.FingerprintSHA256(key)
}

// claim takes the hold for the connection's first session (nil if there
// is none); later claims and a start still under way get nothing.
func (e *early) claim() EarlyHold {
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.claimed {
		return nil
	}
	e.claimed = true
	if e.timer != nil {
		e.timer.Stop()
	}
	return e.hold
}

// abandon gives up the hold unless a session has claimed it.
func (e *early) abandon() {
	if h := e.claim(); h != nil {
		h.Abandon()
	}
}

// startEarly starts the early work for an authenticated connection to a
// project, off the handshake's path. ctx is the connection's.
func (s *Server) startEarly(ctx gssh.Context, cs *connState, login string) {
	p, ok := s.sessions.(Preparer)
	if !ok || login == s.opts.CommandLogin {
		return
	}
	t, err := s.route(login)
	if err != nil {
		return // the session says why
	}
	e := &cs.early
	e.mu.Lock()
	fp := e.key
	e.mu.Unlock()
	if fp == "" {
		return
	}
	go func() {
		u, _, err := s.users.UserByKey(ctx, fp)
		if err != nil || ctx.Err() != nil {
			return
		}
		e.mu.Lock()
		defer e.mu.Unlock()
		if e.claimed {
			return // a session came first, or the connection ended
		}
		e.hold = p.Prepare(u, t.project, t.want)
		e.timer = time.AfterFunc(s.earlyTimeout, e.abandon)
		s.log.Debug("early start", "user", u.Name, "project", t.project, "remote", ctx.RemoteAddr().String())
	}()
}

// earlyHoldFor is the hold of the connection the session belongs to.
func earlyHoldFor(gctx context.Context) EarlyHold {
	cs, _ := gctx.Value(connStateKey).(*connState)
	if cs == nil {
		return nil
	}
	return cs.early.claim()
}

var _ Preparer = managerSessions{}

// Prepare starts the session layer's early work.
func (m managerSessions) Prepare(u store.User, project string, want session.Want) EarlyHold {
	return m.m.Prepare(u, project, want)
}

// abandon gives up *h, if any, and forgets it.
func abandon(h *EarlyHold) {
	if *h != nil {
		(*h).Abandon()
		*h = nil
	}
}
