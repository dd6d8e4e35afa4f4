package gpu

import (
	"sync"
	"testing"
	"time"
)

// fakeClock is the allocator's clock in tests: it moves only when told.
type fakeClock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *fakeClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *fakeClock) Add(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.t = c.t.Add(d)
}

// holdAlloc is an allocator of n full GPUs on a fake clock, recording the
// holds it drops.
func holdAlloc(t *testing.T, n int) (*Allocator, []Slot, *fakeClock, *drops) {
	t.Helper()
	a, slots := fullAlloc(t, n)
	clock := &fakeClock{t: time.Date(2027, 1, 15, 16, 0, 0, 0, time.UTC)}
	a.now = clock.Now
	d := &drops{}
	a.SetHoldDropped(d.add)
	return a, slots, clock, d
}

type drops struct {
	mu sync.Mutex
	hs []HoldState
}

func (d *drops) add(h HoldState) {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.hs = append(d.hs, h)
}

func (d *drops) get() []HoldState {
	d.mu.Lock()
	defer d.mu.Unlock()
	return append([]HoldState(nil), d.hs...)
}

// stopWithHold is a GPU container stopping: its slots are held for its
// owner for d.
func stopWithHold(a *Allocator, clock *fakeClock, uid int, project string, d time.Duration) []Slot {
	held := a.Held(uid, project)
	var ids []string
	for _, s := range held {
		ids = append(ids, s.UUID)
	}
	a.Hold(uid, project, ids, clock.Now().Add(d))
	a.Release(uid, project)
	return held
}

func TestHoldGivesTheSameGPUBack(t *testing.T) {
	a, slots, clock, d := holdAlloc(t, 3)
	mustAcquire(t, a, req(9, "other", 1))
	mine := mustAcquire(t, a, req(1, "p", 1))
	if mine[0].UUID != slots[1].UUID {
		t.Fatalf("got %s, want GPU 1", mine[0].Index)
	}
	a.Release(9, "other") // GPU 0, the first choice of anyone, is free now
	stopWithHold(a, clock, 1, "p", 15*time.Minute)

	hs := a.Holds()
	want := HoldState{Slot: slots[1], User: "u1", UID: 1, Project: "p", Until: clock.Now().Add(15 * time.Minute)}
	if len(hs) != 1 || hs[0] != want {
		t.Fatalf("Holds = %+v, want %+v", hs, want)
	}
	if a.Pressure(0.3) {
		t.Error("a held slot counts as allocated")
	}

	clock.Add(5 * time.Minute)
	again := mustAcquire(t, a, req(1, "p", 1))
	if again[0].UUID != slots[1].UUID {
		t.Errorf("reconnect got GPU %s, want the held GPU 1", again[0].Index)
	}
	if hs := a.Holds(); len(hs) != 0 {
		t.Errorf("Holds after the owner took it back = %+v", hs)
	}
	if got := d.get(); len(got) != 0 {
		t.Errorf("taking a hold back told of a drop: %+v", got)
	}
}

func TestHoldKeptFromOthersWhileOthersAreFree(t *testing.T) {
	a, slots, clock, d := holdAlloc(t, 2)
	mustAcquire(t, a, req(1, "p", 1)) // GPU 0
	stopWithHold(a, clock, 1, "p", 15*time.Minute)

	got := mustAcquire(t, a, req(2, "q", 1))
	if got[0].UUID != slots[1].UUID {
		t.Errorf("another user got GPU %s while GPU 1 was free and 0 held", got[0].Index)
	}
	if hs := a.Holds(); len(hs) != 1 || hs[0].Slot.UUID != slots[0].UUID {
		t.Errorf("Holds = %+v", hs)
	}

	// The next would wait: it takes the held GPU at once, and the owner
	// is told its hold ended.
	got = mustAcquire(t, a, req(3, "r", 1))
	if got[0].UUID != slots[0].UUID {
		t.Errorf("got GPU %s, want the held GPU 0", got[0].Index)
	}
	if dr := d.get(); len(dr) != 1 || dr[0].UID != 1 || dr[0].Project != "p" || dr[0].Slot.UUID != slots[0].UUID {
		t.Fatalf("drops = %+v", dr)
	}
	if hs := a.Holds(); len(hs) != 0 {
		t.Errorf("Holds = %+v", hs)
	}

	// The owner, back too late, queues like anyone.
	w := startAcquire(a, req(1, "p", 1), 0)
	w.at(t, 1)
	w.stop()
	if r := w.result(t); r.err == nil {
		t.Fatalf("owner got %v after its hold was dropped", r.slots)
	}
}

func TestHoldDroppedWhenSomeoneWaits(t *testing.T) {
	a, slots, clock, d := holdAlloc(t, 2)
	mustAcquire(t, a, req(1, "p", 1))
	mustAcquire(t, a, req(2, "q", 1))
	stopWithHold(a, clock, 1, "p", 15*time.Minute)

	// Two GPUs are more than the held one: the request waits, and the
	// hold ends at once rather than when the request reaches it.
	w := startAcquire(a, req(3, "r", 2), 0)
	w.at(t, 1)
	if dr := d.get(); len(dr) != 1 || dr[0].UID != 1 || dr[0].Slot.UUID != slots[0].UUID {
		t.Fatalf("drops = %+v", dr)
	}
	if hs := a.Holds(); len(hs) != 0 {
		t.Errorf("Holds while someone waits = %+v", hs)
	}
	// Holding while someone waits ends at once too.
	a.Hold(2, "q", []string{slots[1].UUID}, clock.Now().Add(time.Hour))
	a.Release(2, "q")
	if r := w.result(t); r.err != nil || len(r.slots) != 2 {
		t.Fatalf("waiter: %v, %v", r.slots, r.err)
	}
	if dr := d.get(); len(dr) != 2 || dr[1].UID != 2 {
		t.Errorf("drops = %+v", dr)
	}
}

func TestHoldHandedToTheWaiterOnRelease(t *testing.T) {
	a, slots, clock, d := holdAlloc(t, 1)
	mustAcquire(t, a, req(1, "p", 1))
	w := startAcquire(a, req(2, "q", 1), 0)
	w.at(t, 1)
	// Hold before Release (the race-free order) while someone waits: the
	// waiter gets the GPU, the hold ends.
	stopWithHold(a, clock, 1, "p", 15*time.Minute)
	if r := w.result(t); r.err != nil || r.slots[0].UUID != slots[0].UUID {
		t.Fatalf("waiter: %v, %v", r.slots, r.err)
	}
	if dr := d.get(); len(dr) != 1 || dr[0].UID != 1 {
		t.Errorf("drops = %+v", dr)
	}
}

func TestHoldExpires(t *testing.T) {
	a, slots, clock, d := holdAlloc(t, 1)
	mustAcquire(t, a, req(1, "p", 1))
	stopWithHold(a, clock, 1, "p", 15*time.Minute)

	clock.Add(15*time.Minute - time.Second)
	if hs := a.Holds(); len(hs) != 1 {
		t.Fatalf("Holds a second before the end = %+v", hs)
	}
	clock.Add(time.Second)
	if hs := a.Holds(); len(hs) != 0 {
		t.Fatalf("Holds at the end = %+v", hs)
	}
	if got := mustAcquire(t, a, req(2, "q", 1)); got[0].UUID != slots[0].UUID {
		t.Fatalf("got %v", got)
	}
	if dr := d.get(); len(dr) != 0 {
		t.Errorf("an expired hold was told as dropped: %+v", dr)
	}
	a.Release(2, "q")

	// A hold that ends before it starts is none.
	a.Hold(2, "q", []string{slots[0].UUID}, clock.Now())
	if hs := a.Holds(); len(hs) != 0 {
		t.Errorf("Holds = %+v", hs)
	}
}

func TestHoldSkipsOthersSlots(t *testing.T) {
	a, slots, clock, d := holdAlloc(t, 3)
	mustAcquire(t, a, req(1, "p", 1)) // GPU 0
	until := clock.Now().Add(time.Hour)
	// GPU 0 is another container's; "nope" is no slot; GPU 1 is free.
	a.Hold(2, "q", []string{slots[0].UUID, "nope", " " + slots[1].UUID}, until)
	// The first reservation of GPU 1 stands.
	a.Hold(3, "r", []string{slots[1].UUID, slots[2].UUID}, until)
	hs := a.Holds()
	if len(hs) != 2 || hs[0].Slot.UUID != slots[1].UUID || hs[0].UID != 2 || hs[0].User != "uid 2" ||
		hs[1].Slot.UUID != slots[2].UUID || hs[1].UID != 3 {
		t.Fatalf("Holds = %+v", hs)
	}

	if got := a.DropHolds(2, "q"); len(got) != 1 || got[0].Slot.UUID != slots[1].UUID {
		t.Errorf("DropHolds = %+v", got)
	}
	if hs := a.Holds(); len(hs) != 1 || hs[0].UID != 3 {
		t.Errorf("Holds after DropHolds = %+v", hs)
	}

	// A container that survived a restart gets its GPU whatever holds it.
	a.Release(1, "p")
	if err := a.Restore(Holder{User: "u4", UID: 4, Project: "s"}, []string{slots[2].UUID}); err != nil {
		t.Fatal(err)
	}
	if dr := d.get(); len(dr) != 1 || dr[0].UID != 3 {
		t.Errorf("drops = %+v", dr)
	}
}

func TestHoldOwnerQuotaTakesCheapest(t *testing.T) {
	// The owner held a full GPU, but its quota now allows a MIG slice
	// only: it gets the slice rather than waiting for nothing.
	slots := fakeSlots(t, []FakeGPU{{}, {MIG: []int{3}}})
	a := NewAllocator(slots)
	mustAcquire(t, a, req(1, "p", 2))
	a.Hold(1, "p", []string{slots[0].UUID}, time.Now().Add(time.Hour))
	a.Release(1, "p")
	got := mustAcquire(t, a, withEq(req(1, "p", 1), 0.5))
	if got[0].Slices != 3 {
		t.Errorf("got %s", got[0].Name)
	}
}

func TestPressure(t *testing.T) {
	// Four GPUs, the last split 3g+2g+2g: 28 sevenths; 80 % is 22.4.
	slots := fakeSlots(t, []FakeGPU{{}, {}, {}, {MIG: []int{3, 2, 2}}})
	a := NewAllocator(slots)
	var full, mig []Slot
	for _, s := range slots {
		if s.Slices == 0 {
			full = append(full, s)
		} else {
			mig = append(mig, s)
		}
	}
	restore := func(uid int, s Slot) {
		t.Helper()
		if err := a.Restore(Holder{User: "u", UID: uid, Project: "p"}, []string{s.UUID}); err != nil {
			t.Fatal(err)
		}
	}
	if a.Pressure(0.8) {
		t.Error("pressure with nothing allocated")
	}
	for i, s := range full {
		restore(i+1, s)
	}
	// 21 of 28 sevenths: 75 %.
	if a.Pressure(0.8) {
		t.Error("pressure at 3.0 of 4 GPUs")
	}
	if !a.Pressure(0.75) {
		t.Error("no pressure at exactly 75 %")
	}
	restore(10, mig[1]) // a 2g: 23 of 28
	if !a.Pressure(0.8) {
		t.Error("no pressure at 3.29 of 4 GPUs")
	}
	a.Release(10, "p")
	// A held slot is not allocated.
	a.Hold(11, "p", []string{mig[0].UUID}, time.Now().Add(time.Hour))
	if a.Pressure(0.8) {
		t.Error("a held slot made pressure")
	}

	// Anyone waiting is pressure, whatever the share.
	w := startAcquire(a, req(20, "q", 4), 0)
	w.at(t, 1)
	if !a.Pressure(2) {
		t.Error("no pressure while someone waits")
	}
	w.stop()
	w.result(t)
	if a.Pressure(2) {
		t.Error("pressure after the waiter left")
	}

	if NewAllocator(nil).Pressure(0) {
		t.Error("pressure without GPUs")
	}
}

func TestQueueBound(t *testing.T) {
	a, _ := fullAlloc(t, 1)
	a.boundEvery = 5 * time.Millisecond
	var mu sync.Mutex
	bound, ok := time.Date(2027, 1, 15, 16, 39, 30, 0, time.FixedZone("CET", 3600)), true
	a.SetQueueBound(func() (time.Time, bool) {
		mu.Lock()
		defer mu.Unlock()
		// Calling back into the allocator must not deadlock.
		a.Pressure(0.8)
		return bound, ok
	})
	mustAcquire(t, a, req(1, "p", 1))
	w := startAcquire(a, req(2, "q", 1), 0)
	st := w.at(t, 1)
	if want := time.Date(2027, 1, 15, 15, 40, 0, 0, time.UTC); !st.Bound.Equal(want) || st.Bound.Location() != time.UTC {
		t.Errorf("Bound = %v, want %v (rounded up, UTC)", st.Bound, want)
	}

	// The bound moves without the queue changing: the waiter is told.
	mu.Lock()
	bound = bound.Add(10 * time.Minute)
	mu.Unlock()
	w.until(t, "the new bound", func(st QueueStatus) bool { return st.Bound.Minute() == 50 })
	mu.Lock()
	ok = false
	mu.Unlock()
	w.until(t, "no bound", func(st QueueStatus) bool { return st.Bound.IsZero() })

	a.Release(1, "p")
	if r := w.result(t); r.err != nil {
		t.Fatal(r.err)
	}
}
