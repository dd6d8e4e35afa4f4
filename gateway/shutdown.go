package gateway

import (
	"context"
	"errors"
	"fmt"
	"net"
	"sync"
)

// ShutdownNotice is what every open session hears when the gateway stops.
// Containers are not part of a shutdown: they keep running, and the next
// start adopts them.
const ShutdownNotice = "the gateway is restarting; your container and what runs in it keep running; connect again in a minute"

// openSessions are the session channels open now, so a shutdown can tell
// each of them.
type openSessions struct {
	mu       sync.Mutex
	chans    map[*sessionChan]struct{}
	draining bool
}

// track adds sc until the returned function is called. A session opened
// while the gateway drains hears the notice at once.
func (o *openSessions) track(sc *sessionChan) (untrack func()) {
	o.mu.Lock()
	if o.chans == nil {
		o.chans = map[*sessionChan]struct{}{}
	}
	o.chans[sc] = struct{}{}
	draining := o.draining
	o.mu.Unlock()
	if draining {
		go sc.tell(ShutdownNotice)
	}
	return func() {
		o.mu.Lock()
		delete(o.chans, sc)
		o.mu.Unlock()
	}
}

// drain marks the gateway as stopping and returns the sessions open now.
func (o *openSessions) drain() []*sessionChan {
	o.mu.Lock()
	defer o.mu.Unlock()
	o.draining = true
	out := make([]*sessionChan, 0, len(o.chans))
	for sc := range o.chans {
		out = append(out, sc)
	}
	return out
}

// openCount is how many sessions are open.
func (s *Server) openCount() int {
	s.open.mu.Lock()
	defer s.open.mu.Unlock()
	return len(s.open.chans)
}

// tell writes one "ds01: " line on the session's stderr. It may block on
// a client that reads nothing (SSH flow control): callers run it on its
// own goroutine.
// It holds eofMu, so it never writes after (or while) the session sends
// its EOF; an exit waits for it, at worst until Close ends the connection.
func (sc *sessionChan) tell(msg string) {
	sc.eofMu.Lock()
	defer sc.eofMu.Unlock()
	if sc.eof {
		return
	}
	fmt.Fprintf(sc.notices(), "ds01: %s\n", msg)
}

// Shutdown stops accepting connections, tells every open session
// ShutdownNotice, and waits until they have all ended or ctx is done;
// then it closes what is left. Containers are the session layer's and
// stay up. Pending auth.denied counts are recorded.
func (s *Server) Shutdown(ctx context.Context) error {
	// Listeners first, so nobody connects after the notice went out.
	shut := make(chan error, 1)
	go func() { shut <- s.srv.Shutdown(ctx) }()
	open := s.open.drain()
	for _, sc := range open {
		go sc.tell(ShutdownNotice)
	}
	s.log.Info("shutdown: waiting for sessions to end", "sessions", len(open))
	err := <-shut
	if errors.Is(err, context.DeadlineExceeded) || errors.Is(err, context.Canceled) {
		s.log.Info("shutdown: closing the connections left", "sessions", s.openCount())
		err = nil
	}
	s.denied.flushAll()
	if cerr := s.srv.Close(); err == nil && !errors.Is(cerr, net.ErrClosed) {
		err = cerr
	}
	if err != nil {
		return fmt.Errorf("shutdown: %w", err)
	}
	return nil
}
