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
		m.sweepDead(ctx)
	}
}

func (m *Manager) sweepDead(ctx context.Context) {
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
	m.mu.Lock()
	var dead []*entry
	for _, e := range m.entries {
		if sn := e.snap.Load(); sn != nil && !running[sn.id] {
			dead = append(dead, e)
		}
	}
	m.mu.Unlock()
	for _, e := range dead {
		if !e.mu.TryLock() {
			continue // a retire is under way; next round
		}
		if sn := e.snap.Load(); sn != nil && !running[sn.id] {
			m.log.Warn("container gone", "user", sn.user.Name, "project", e.project, "container", short(sn.id))
			m.retireLocked(ctx, e, "stopped outside the gateway")
		}
		e.mu.Unlock()
	}
}
