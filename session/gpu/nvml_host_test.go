package gpu

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"
)

// On a GPU host (make gpu-check's machine): the real inventory feeds the
// allocator, every slot is handed out once, and all come back.
func TestNVMLOnGPUHost(t *testing.T) {
	inv, err := NewNVML()
	if errors.Is(err, ErrNoNVML) || (err != nil && strings.Contains(err.Error(), "cgo")) {
		t.Skip("no NVML here")
	}
	if err != nil {
		t.Fatalf("NewNVML: %v", err)
	}
	defer inv.Close()
	if !inv.Real() {
		t.Error("NVML inventory says it is not real")
	}
	slots, err := inv.Slots(context.Background())
	if err != nil || len(slots) == 0 {
		t.Fatalf("Slots = %v, %v", slots, err)
	}
	for _, s := range slots {
		t.Logf("slot %s %s %s %d MiB gpueq %.2f", s.Index, s.UUID, s.Name, s.MemoryMiB, s.GPUEq())
		if !strings.HasPrefix(s.UUID, "GPU-") && !strings.HasPrefix(s.UUID, "MIG-") || s.MemoryMiB == 0 || s.Name == "" {
			t.Errorf("slot %+v", s)
		}
		if u, ok := inv.Utilization(s.UUID); ok {
			t.Logf("utilisation of %s: %d%%", s.Index, u)
		}
	}
	a := NewAllocator(slots)
	got := map[string]bool{}
	for i := range slots {
		held, err := a.Acquire(context.Background(), Request{User: "t", UID: 1, Project: string(rune('a' + i)), Slots: 1}, time.Second, nil)
		if err != nil || len(held) != 1 || got[held[0].UUID] {
			t.Fatalf("acquire %d: %v %v", i, held, err)
		}
		got[held[0].UUID] = true
	}
	ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
	defer cancel()
	if _, err := a.Acquire(ctx, Request{User: "u", UID: 2, Project: "x", Slots: 1}, 0, nil); err == nil {
		t.Error("a slot was handed out twice")
	}
	for i := range slots {
		a.Release(1, string(rune('a'+i)))
	}
	if eq, n := a.UserEq(1); n != 0 || eq != 0 {
		t.Errorf("after release: %v %d", eq, n)
	}
}
