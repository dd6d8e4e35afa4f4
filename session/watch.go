package session

import (
	"context"
	"time"

	"github.com/ds01/ds01-gateway/session/runtime"
)

// safetySweep is how often the engine is listed when its event stream
// tells of every stop: the sweep is only for events the stream lost. A
// listing of every container costs the engine more than anything else the
// gateway asks of it while idle.
const safetySweep = 5 * time.Minute

// Watch notices containers that died on their own or that an admin
// removed (docker rm -f), and retires them so their GPUs go back to the
// queue at once rather than at the next login. A runtime with an event
// stream (runtime.StopWatcher) tells of each stop as it happens, with a
// sweep every safetySweep (or interval, if longer) and at each reconnect;
// any other is swept every interval. It runs until ctx ends; an interval of
// 0 turns it off.
func (m *Manager) Watch(ctx context.Context, interval time.Duration) {
	if interval <= 0 {
		return
	}
	sw, ok := m.rt.(runtime.StopWatcher)
	if !ok {
		m.every(ctx, interval, func() {
			m.holders.sweep(ctx, m.busyKeys())
			m.sweepDead(ctx)
		})
		return
	}
	if m.holders.on() {
		// A holder's linger runs on the gateway's clock, not on an engine
		// event, so it keeps the interval; the look is in memory, the
		// engine is asked only to remove one.
		go m.every(ctx, interval, func() { m.holders.sweep(ctx, m.busyKeys()) })
	}
	go m.every(ctx, max(interval, safetySweep), func() { m.sweepDead(ctx) })
	m.followStops(ctx, sw)
}

// every calls f every interval until ctx ends.
func (m *Manager) every(ctx context.Context, interval time.Duration, f func()) {
	t := time.NewTicker(interval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		f()
	}
}

func (m *Manager) sweepDead(ctx context.Context) {
	// The containers to check are taken before the engine's list: one
	// launched between the two would otherwise be missing from a list
	// made before it existed, and be taken for dead.
	m.mu.Lock()
	before := map[*entry]string{}
	for _, e := range m.entries {
		if sn := e.snap.Load(); sn != nil {
			before[e] = sn.id
		}
	}
	m.mu.Unlock()
	if len(before) == 0 {
		return
	}
	live, err := m.rt.List(ctx, map[string]string{LabelInstance: m.cfg.Instance})
	if err != nil {
		m.log.Warn("watch: list containers", "err", err)
		return
	}
	running := map[string]bool{}
	for _, c := range live {
		if c.Running {
			running[c.ID] = true
		}
	}
	for e, id := range before {
		if running[id] || !e.mu.TryLock() {
			continue // alive, or a retire is under way: next round
		}
		m.retireGone(ctx, e, id)
		e.mu.Unlock()
	}
}

// retireGone retires e's container if it is still id, which the engine
// says stopped; e.mu is held.
func (m *Manager) retireGone(ctx context.Context, e *entry, id string) {
	if sn := e.snap.Load(); sn != nil && sn.id == id {
		m.log.Warn("container gone", "user", sn.user.Name, "project", e.project, "container", short(sn.id))
		m.retireLocked(ctx, e, "stopped outside the gateway")
	}
}
