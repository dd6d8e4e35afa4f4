package session

import (
	"context"
	"time"
)

// Watch notices containers that died on their own or that an admin
// removed (docker rm -f), every interval until ctx ends, and retires them
// so their GPUs go back to the queue at once rather than at the next login.
func (m *Manager) Watch(ctx context.Context, interval time.Duration) {
	if interval <= 0 {
		return
	}
	t := time.NewTicker(interval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		m.holders.sweep(ctx, m.busyKeys())
		m.sweepDead(ctx)
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
		if sn := e.snap.Load(); sn != nil && sn.id == id {
			m.log.Warn("container gone", "user", sn.user.Name, "project", e.project, "container", short(sn.id))
			m.retireLocked(ctx, e, "stopped outside the gateway")
		}
		e.mu.Unlock()
	}
}
