package gateway

import (
	"context"
	"encoding/json"
	"log/slog"
	"sync"
	"time"

	gssh "github.com/gliderlabs/ssh"

	"github.com/ds01/ds01-gateway/store"
)

// EventRecorder stores an event; *store.Store implements it.
type EventRecorder interface {
	AddEvent(ctx context.Context, e store.Event) error
}

var _ EventRecorder = (*store.Store)(nil)

// Refused authentications become auth.denied events, for the events file
// and the admins. Anyone on the network can cause them, so they are
// aggregated per source (an IPv4 address, an IPv6 /64): the first denial
// from a source is recorded when its connection ends, later ones are
// counted and recorded as one event per source and deniedWindow. Sources
// beyond maxDeniedSources share one count. Recording happens off the
// connection's goroutines.
const (
	deniedWindow     = time.Minute
	maxDeniedSources = 256
	eventAuthDenied  = "auth.denied"
)

// authDenials aggregates denials per source.
type authDenials struct {
	rec    EventRecorder
	log    *slog.Logger
	window time.Duration

	mu      sync.Mutex
	sources map[string]*denials
}

// denials are one source's denials since its last event.
type denials struct {
	count              int
	login, reason, key string // the latest
	timer              *time.Timer
}

func newAuthDenials(rec EventRecorder, log *slog.Logger, window time.Duration) *authDenials {
	if rec == nil {
		return nil
	}
	return &authDenials{rec: rec, log: log, window: window, sources: map[string]*denials{}}
}

var deniedKey = &struct{ name string }{"ds01-denied"}

// noteDenied notes that the connection offered a key it may not use. If
// the connection ends without authenticating (the client had no other
// key that works), that is one denial for its source. Cheap: one context
// value and, for the first refused key of a connection, one AfterFunc.
func (s *Server) noteDenied(ctx gssh.Context, reason, key string) {
	if s.denied == nil {
		return
	}
	if ctx.Value(deniedKey) != nil {
		return // counted once per connection, with its first refused key
	}
	ctx.SetValue(deniedKey, true)
	src, login := sourceOf(ctx.RemoteAddr()), logName(ctx.User())
	context.AfterFunc(ctx, func() {
		if ctx.Value(gssh.ContextKeyConn) != nil {
			return // it authenticated after all, with another key
		}
		s.denied.add(src, login, reason, key)
	})
}

// add counts one denial from src: recorded at once if src has none
// pending, else at the end of its window.
func (a *authDenials) add(src, login, reason, key string) {
	a.mu.Lock()
	d := a.sources[src]
	if d == nil && len(a.sources) >= maxDeniedSources {
		src = otherSources
		d = a.sources[src]
	}
	if d != nil {
		d.count++
		d.login, d.reason, d.key = login, reason, key
		a.mu.Unlock()
		return
	}
	d = &denials{}
	a.sources[src] = d
	d.timer = time.AfterFunc(a.window, func() { a.flush(src) })
	a.mu.Unlock()
	a.record(src, 1, login, reason, key)
}

// flush ends src's window: its count since the last event becomes one
// event, and a new window starts; a source with none is forgotten.
func (a *authDenials) flush(src string) {
	a.mu.Lock()
	d := a.sources[src]
	if d == nil {
		a.mu.Unlock()
		return
	}
	if d.count == 0 {
		delete(a.sources, src)
		a.mu.Unlock()
		return
	}
	n, login, reason, key := d.count, d.login, d.reason, d.key
	d.count = 0
	d.timer = time.AfterFunc(a.window, func() { a.flush(src) })
	a.mu.Unlock()
	a.record(src, n, login, reason, key)
}

// flushAll records every pending count now (at shutdown).
func (a *authDenials) flushAll() {
	if a == nil {
		return
	}
	a.mu.Lock()
	srcs := make([]string, 0, len(a.sources))
	for src, d := range a.sources {
		d.timer.Stop()
		srcs = append(srcs, src)
	}
	a.mu.Unlock()
	for _, src := range srcs {
		a.flush(src)
	}
	a.mu.Lock()
	for _, d := range a.sources {
		d.timer.Stop()
	}
	a.mu.Unlock()
}

// record stores one auth.denied event: count denials from src, the
// latest with login, reason and key.
func (a *authDenials) record(src string, count int, login, reason, key string) {
	details, err := json.Marshal(map[string]any{"source": src, "count": count, "login": login, "reason": reason, "key": key})
	if err != nil {
		return // strings and an int: cannot fail
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := a.rec.AddEvent(ctx, store.Event{Type: eventAuthDenied, Details: string(details)}); err != nil {
		a.log.Error("record event", "type", eventAuthDenied, "err", err)
	}
}
