package session

import (
	"context"
	"sync"
	"time"

	"github.com/ds01/ds01-gateway/session/runtime"
)

// Following the runtime's event stream (Watch). A container that dies is
// retired the moment the engine says so; nothing runs while none does.

// Reconnecting to a broken event stream: the wait doubles from
// stopsRetryMin to stopsRetryMax, and starts again from the minimum once a
// stream lasted stopsStable.
const (
	stopsRetryMin = time.Second
	stopsRetryMax = 30 * time.Second
	stopsStable   = time.Minute
)

// followStops follows sw's stops until ctx ends, reconnecting when the
// stream breaks (the engine restarted). Each connection starts with a
// sweep, for what stopped while no stream was open.
func (m *Manager) followStops(ctx context.Context, sw runtime.StopWatcher) {
	f := &stopFollower{m: m, pending: map[string]bool{}}
	labels := map[string]string{LabelInstance: m.cfg.Instance}
	wait := stopsRetryMin
	for {
		began := time.Now()
		err := sw.WatchStops(ctx, labels, func() { m.sweepDead(ctx) }, func(id string) { f.stopped(ctx, id) })
		if ctx.Err() != nil {
			return
		}
		if time.Since(began) >= stopsStable {
			wait = stopsRetryMin
		}
		m.log.Warn("watch: container events ended; reconnecting", "err", err, "in", wait)
		select {
		case <-ctx.Done():
			return
		case <-time.After(wait):
		}
		wait = min(2*wait, stopsRetryMax)
	}
}

// stopFollower handles the stream's stops; pending holds the containers
// being handled, as one end brings several events (oom, die, destroy).
type stopFollower struct {
	m       *Manager
	mu      sync.Mutex
	pending map[string]bool
}

// stopped is one event: a container of ours is handled on its own
// goroutine, as it waits for the entry's lock (a launch, a retire under
// way), and the stream must not wait with it.
func (f *stopFollower) stopped(ctx context.Context, id string) {
	e := f.m.entryOf(id)
	if e == nil {
		return // retired by the gateway itself, or never ours
	}
	f.mu.Lock()
	busy := f.pending[id]
	f.pending[id] = true
	f.mu.Unlock()
	if busy {
		return
	}
	go func() {
		defer func() {
			f.mu.Lock()
			delete(f.pending, id)
			f.mu.Unlock()
		}()
		f.m.retireStopped(ctx, e, id)
	}()
}

// entryOf is the entry whose container is id, or nil.
func (m *Manager) entryOf(id string) *entry {
	m.mu.Lock()
	defer m.mu.Unlock()
	for _, e := range m.entries {
		if sn := e.snap.Load(); sn != nil && sn.id == id {
			return e
		}
	}
	return nil
}

// retireStopped retires e's container id, which the engine said stopped,
// unless it still runs: an OOM kill of a child leaves the container up.
// An engine that cannot say leaves it to the next sweep.
func (m *Manager) retireStopped(ctx context.Context, e *entry, id string) {
	running, err := m.rt.Running(ctx, id)
	if err != nil {
		m.log.Warn("watch: inspect a stopped container", "container", short(id), "err", err)
		return
	}
	if running {
		return
	}
	if e.mu.LockContext(ctx) != nil {
		return
	}
	defer e.mu.Unlock()
	m.retireGone(ctx, e, id)
}
