package session

import (
	"context"
	"time"

	"github.com/ds01/ds01-gateway/session/gpu"
	"github.com/ds01/ds01-gateway/session/lifecycle"
	"github.com/ds01/ds01-gateway/store"
)

// After a GPU container stops, its owner keeps its slots for
// gpu_hold_after_stop (DS01), so a reconnect gets the same GPU back and
// finds its state where CUDA left it. The allocator gives a held slot to
// anyone else who would otherwise wait, at once.

// hold reserves the slots of e's retiring container for its owner. It is
// called before the slots are released, so nobody can take them between
// the two.
func (g *GPUs) hold(ctx context.Context, u store.User, project, id string, slots []gpu.Slot) {
	if g.cfg.Alloc == nil || len(slots) == 0 {
		return
	}
	l, _ := g.limits.of(u)
	d := lifecycle.RulesFrom(g.lifecycleRules(), l).GPUHoldAfterStop
	if d <= 0 {
		return
	}
	uuids := make([]string, len(slots))
	for i, s := range slots {
		uuids[i] = s.UUID
	}
	g.cfg.Alloc.Hold(u.UID, project, uuids, time.Now().Add(d))
	g.event(ctx, store.Event{Type: "gpu.hold", User: u.Name, Project: project, Container: id, Duration: d, Details: slotList(slots)})
}

// recordHoldDrops records each hold the allocator ends for a waiter.
func (g *GPUs) recordHoldDrops() {
	if g.cfg.Alloc == nil {
		return
	}
	g.cfg.Alloc.SetHoldDropped(func(h gpu.HoldState) {
		g.event(context.Background(), store.Event{Type: "gpu.hold_dropped", User: h.User, Project: h.Project, Details: h.Slot.UUID + " (someone else waits)"})
	})
}

// Holds lists the slots held for their owners after a stop, for gpu-status.
func (g *GPUs) Holds() []gpu.HoldState {
	if g.cfg.Alloc == nil {
		return nil
	}
	return g.cfg.Alloc.Holds()
}
