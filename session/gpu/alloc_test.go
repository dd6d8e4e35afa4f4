package gpu

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"strings"
	"sync"
	"testing"
	"time"
)

func fptr(f float64) *float64 { return &f }
func iptr(n int) *int         { return &n }

// migAlloc is one GPU split 3g + 2g + 2g.
func migAlloc(t *testing.T) (*Allocator, []Slot) {
	t.Helper()
	slots := fakeSlots(t, []FakeGPU{{MIG: []int{3, 2, 2}}})
	return NewAllocator(slots), slots
}

func fullAlloc(t *testing.T, n int) (*Allocator, []Slot) {
	t.Helper()
	slots, err := FakeN(n).Slots(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	return NewAllocator(slots), slots
}

func req(uid int, project string, n int) Request {
	return Request{User: fmt.Sprintf("u%d", uid), UID: uid, Project: project, Slots: n}
}

func withEq(r Request, eq float64) Request {
	r.Quota.MaxGPUEq = fptr(eq)
	return r
}

func mustAcquire(t *testing.T, a *Allocator, r Request) []Slot {
	t.Helper()
	got, err := a.Acquire(context.Background(), r, time.Second, nil)
	if err != nil {
		t.Fatalf("Acquire(%+v): %v", r, err)
	}
	if len(got) != r.Slots {
		t.Fatalf("Acquire(%+v) = %d slots", r, len(got))
	}
	return got
}

// refused checks err is a RefusedError of reason whose message names all
// of parts.
func refused(t *testing.T, err error, reason string, parts ...string) {
	t.Helper()
	var re *RefusedError
	if !errors.As(err, &re) {
		t.Fatalf("err = %v; want a RefusedError %s", err, reason)
	}
	if re.Reason != reason {
		t.Errorf("reason %q, want %q (%s)", re.Reason, reason, re.Msg)
	}
	for _, p := range parts {
		if !strings.Contains(re.Msg, p) {
			t.Errorf("message %q lacks %q", re.Msg, p)
		}
	}
}

func uuids(slots []Slot) string {
	var s []string
	for _, x := range slots {
		s = append(s, x.Index)
	}
	return strings.Join(s, ",")
}

func TestAcquireNothing(t *testing.T) {
	a, _ := fullAlloc(t, 1)
	got, err := a.Acquire(context.Background(), req(1, "p", 0), 0, nil)
	if got != nil || err != nil {
		t.Fatalf("Acquire(0) = %v, %v", got, err)
	}
	if a.Total() != 1 {
		t.Errorf("Total = %d", a.Total())
	}
}

func TestQuotaMIGFractions(t *testing.T) {
	ctx := context.Background()
	a, slots := migAlloc(t)

	// Two slots are at least 2/7 + 2/7 = 0.57: over a 0.5 quota.
	_, err := a.Acquire(ctx, withEq(req(1, "p", 2), 0.5), 0, nil)
	refused(t, err, "quota", "0.0 of 0.5", "0.57", "+gpus=1")

	// One fits, and is the cheapest: a 2g.
	got := mustAcquire(t, a, withEq(req(1, "p", 1), 0.5))
	if got[0].Slices != 2 {
		t.Errorf("got %s, want a 2g", got[0].Name)
	}
	if eq, n := a.UserEq(1); n != 1 || RoundEq(eq) != 0.29 {
		t.Errorf("UserEq = %v, %d", eq, n)
	}
	// Another container: 2/7 held + 2/7 more is over 0.5.
	_, err = a.Acquire(ctx, withEq(req(1, "q", 1), 0.5), 0, nil)
	refused(t, err, "quota", "0.29 of 0.5", "retire a container")
	a.Release(1, "p")

	// 3/7 held (restored) + 2/7 = 5/7 = 0.714: fits 0.72, not 0.5.
	if err := a.Restore(Holder{User: "u2", UID: 2, Project: "old"}, []string{slots[0].UUID}); err != nil {
		t.Fatal(err)
	}
	_, err = a.Acquire(ctx, withEq(req(2, "new", 1), 0.5), 0, nil)
	refused(t, err, "quota", "0.43 of 0.5", "retire a container (container-list)", "+cpu")
	mustAcquire(t, a, withEq(req(2, "new", 1), 0.72))
	a.Release(2, "new")
	a.Release(2, "old")

	// All three are 3/7 + 2/7 + 2/7: exactly 1.0, within a quota of 1.
	mustAcquire(t, a, withEq(req(3, "p", 3), 1))
	if eq, _ := a.UserEq(3); eq != 1 {
		t.Errorf("UserEq = %v, want exactly 1", eq)
	}
	a.Release(3, "p")

	// Full: the spec's message.
	a2, _ := fullAlloc(t, 3)
	mustAcquire(t, a2, withEq(req(4, "p", 2), 2))
	_, err = a2.Acquire(ctx, withEq(req(4, "q", 1), 2), 0, nil)
	refused(t, err, "quota", "you hold 2.0 of 2.0 GPU-equivalents: retire a container (container-list) or ask for +cpu")

	_, err = a2.Acquire(ctx, withEq(req(5, "p", 1), 0), 0, nil)
	refused(t, err, "quota", "+cpu")
}

func TestSmallestGPUEqFirst(t *testing.T) {
	slots := fakeSlots(t, []FakeGPU{{}, {MIG: []int{3, 2, 2}}, {}, {MIG: []int{7}}})
	a := NewAllocator(slots)
	for _, c := range []struct {
		n    int
		want string
	}{
		{1, "1:1"},     // the first 2g
		{2, "1:0,1:2"}, // the other 2g and then the 3g (inventory order)
		{1, "3:0"},     // a 7g MIG instance before a full GPU
		{1, "0"},       // then full GPUs in inventory order
		{1, "2"},
	} {
		got := mustAcquire(t, a, req(c.n, fmt.Sprint(c.n, c.want), c.n))
		if uuids(got) != c.want {
			t.Errorf("asked %d: got %s, want %s", c.n, uuids(got), c.want)
		}
	}
}

func TestPerContainerCap(t *testing.T) {
	a, _ := fullAlloc(t, 4)
	r := req(1, "p", 3)
	r.Quota.MaxSlotsPerContainer = iptr(2)
	_, err := a.Acquire(context.Background(), r, 0, nil)
	refused(t, err, "per_container_cap", "you asked for 3 GPUs; at most 2 per container (max_gpu_slots_per_container): ask for +gpus=2")
	r.Quota.MaxSlotsPerContainer = iptr(0)
	r.Slots = 1
	_, err = a.Acquire(context.Background(), r, 0, nil)
	refused(t, err, "per_container_cap", "+cpu")
	r.Quota.MaxSlotsPerContainer = iptr(1)
	mustAcquire(t, a, r)
}

func TestInventoryRefusal(t *testing.T) {
	a, _ := fullAlloc(t, 2)
	_, err := a.Acquire(context.Background(), req(1, "p", 3), 0, nil)
	refused(t, err, "inventory", "this host has 2 GPU slots; you asked for 3")

	// Holding one of two, a second container of two could only ever be
	// granted by the user's own release: refused, not queued.
	mustAcquire(t, a, req(1, "p", 1))
	_, err = a.Acquire(context.Background(), req(1, "q", 2), 0, nil)
	refused(t, err, "inventory", "you hold 1", "+gpus=1")

	_, err = NewAllocator(nil).Acquire(context.Background(), req(1, "p", 1), 0, nil)
	refused(t, err, "inventory", "no GPUs", "+cpu")
}

func TestGrantedOnce(t *testing.T) {
	a, _ := fullAlloc(t, 2)
	mustAcquire(t, a, req(1, "p", 1))
	_, err := a.Acquire(context.Background(), req(1, "p", 1), 0, nil)
	var re *RefusedError
	if err == nil || errors.As(err, &re) {
		t.Fatalf("second Acquire of the same container: %v", err)
	}
	if got := a.Release(1, "p"); len(got) != 1 {
		t.Fatalf("Release = %v", got)
	}
	if got := a.Release(1, "p"); got != nil {
		t.Fatalf("second Release = %v", got)
	}
	mustAcquire(t, a, req(1, "p", 1))
}

// waiting is an Acquire running in the background.
type waiting struct {
	res  chan result
	prog chan QueueStatus
	stop context.CancelFunc
}

type result struct {
	slots []Slot
	err   error
}

func startAcquire(a *Allocator, r Request, maxWait time.Duration) *waiting {
	ctx, cancel := context.WithCancel(context.Background())
	w := &waiting{res: make(chan result, 1), prog: make(chan QueueStatus, 1000), stop: cancel}
	go func() {
		s, err := a.Acquire(ctx, r, maxWait, func(st QueueStatus) { w.prog <- st })
		w.res <- result{s, err}
	}()
	return w
}

// until reads progress until one matches.
func (w *waiting) until(t *testing.T, what string, ok func(QueueStatus) bool) QueueStatus {
	t.Helper()
	deadline := time.After(5 * time.Second)
	for {
		select {
		case st := <-w.prog:
			if ok(st) {
				return st
			}
		case r := <-w.res:
			t.Fatalf("waiting for %s: Acquire returned %v, %v", what, r.slots, r.err)
		case <-deadline:
			t.Fatalf("no progress update with %s", what)
		}
	}
}

func (w *waiting) at(t *testing.T, pos int) QueueStatus {
	t.Helper()
	return w.until(t, fmt.Sprintf("position %d", pos), func(st QueueStatus) bool { return st.Position == pos })
}

func (w *waiting) result(t *testing.T) result {
	t.Helper()
	select {
	case r := <-w.res:
		return r
	case <-time.After(5 * time.Second):
		t.Fatal("Acquire did not return")
		return result{}
	}
}

func (w *waiting) stillWaiting(t *testing.T) {
	t.Helper()
	select {
	case r := <-w.res:
		t.Fatalf("Acquire returned %v, %v; want it still queued", r.slots, r.err)
	case <-time.After(50 * time.Millisecond):
	}
}

func TestFIFO(t *testing.T) {
	a, slots := fullAlloc(t, 1)
	mustAcquire(t, a, req(9, "x", 1))
	var ws []*waiting
	for i := range 3 {
		w := startAcquire(a, req(i+1, "p", 1), 0)
		st := w.at(t, i+1) // told at once where it stands
		if st.Waiting != i+1 || st.Held != 1 || st.Total != 1 || st.Holders != 1 {
			t.Errorf("waiter %d: %+v", i, st)
		}
		ws = append(ws, w)
	}
	if _, q := a.Snapshot(); len(q) != 3 || q[0].User != "u1" || q[2].User != "u3" {
		t.Fatalf("queue %+v", q)
	}
	prevUID, prevProject := 9, "x"
	for i, w := range ws {
		a.Release(prevUID, prevProject)
		r := w.result(t)
		if r.err != nil || len(r.slots) != 1 || r.slots[0].UUID != slots[0].UUID {
			t.Fatalf("waiter %d: %v, %v", i, r.slots, r.err)
		}
		for _, later := range ws[i+1:] {
			later.stillWaiting(t)
		}
		if i+1 < len(ws) {
			ws[i+1].at(t, 1) // moved up
		}
		prevUID, prevProject = i+1, "p"
	}
	a.Release(prevUID, prevProject)
	assertIdle(t, a)
}

func TestSmallWaitsBehindBigHead(t *testing.T) {
	a, _ := fullAlloc(t, 2)
	mustAcquire(t, a, req(9, "x", 1))
	big := startAcquire(a, req(1, "big", 2), 0)
	big.at(t, 1)
	small := startAcquire(a, req(2, "small", 1), 0)
	small.at(t, 2)
	small.stillWaiting(t) // one slot is free, but the head comes first
	a.Release(9, "x")
	if r := big.result(t); r.err != nil || len(r.slots) != 2 {
		t.Fatalf("big: %v, %v", r.slots, r.err)
	}
	small.at(t, 1)
	small.stillWaiting(t)
	a.Release(1, "big")
	if r := small.result(t); r.err != nil || len(r.slots) != 1 {
		t.Fatalf("small: %v, %v", r.slots, r.err)
	}
	a.Release(2, "small")
	assertIdle(t, a)
}

func TestQuotaRecheckedAtGrant(t *testing.T) {
	a, _ := fullAlloc(t, 2)
	mustAcquire(t, a, req(9, "x", 2))
	// Both fit a quota of 1.0 while the user holds nothing...
	first := startAcquire(a, withEq(req(1, "p", 1), 1), 0)
	first.at(t, 1)
	second := startAcquire(a, withEq(req(1, "q", 1), 1), 0)
	second.at(t, 2)
	// ...but once the first is granted, the second would overshoot.
	a.Release(9, "x")
	if r := first.result(t); r.err != nil {
		t.Fatal(r.err)
	}
	refused(t, second.result(t).err, "quota", "1.0 of 1.0")
	if eq, n := a.UserEq(1); eq != 1 || n != 1 {
		t.Errorf("UserEq = %v, %d; the quota was overshot", eq, n)
	}
	if _, q := a.Snapshot(); len(q) != 0 {
		t.Errorf("queue %+v", q)
	}
}

// Free slots that would overshoot the quota are not granted when a
// cheaper one will come back: the request waits for it.
func TestQuotaWaitsForCheaperSlot(t *testing.T) {
	slots := fakeSlots(t, []FakeGPU{{MIG: []int{3, 2}}})
	a := NewAllocator(slots)
	mustAcquire(t, a, req(9, "x", 1)) // takes the 2g
	w := startAcquire(a, withEq(req(1, "p", 1), 0.3), 0)
	w.at(t, 1)
	w.stillWaiting(t) // the 3g is free but 3/7 > 0.3
	a.Release(9, "x")
	r := w.result(t)
	if r.err != nil || r.slots[0].Slices != 2 {
		t.Fatalf("got %v, %v; want the 2g", r.slots, r.err)
	}
}

func TestCancelLeavesQueue(t *testing.T) {
	a, _ := fullAlloc(t, 1)
	mustAcquire(t, a, req(9, "x", 1))
	first := startAcquire(a, req(1, "p", 1), 0)
	first.at(t, 1)
	second := startAcquire(a, req(2, "p", 1), 0)
	second.at(t, 2)
	first.stop()
	if r := first.result(t); !errors.Is(r.err, context.Canceled) {
		t.Fatalf("cancelled: %v, %v", r.slots, r.err)
	}
	st := second.at(t, 1)
	if st.Waiting != 1 {
		t.Errorf("after cancel: %+v", st)
	}
	if _, q := a.Snapshot(); len(q) != 1 || q[0].User != "u2" {
		t.Errorf("queue %+v", q)
	}
	a.Release(9, "x")
	if r := second.result(t); r.err != nil {
		t.Fatal(r.err)
	}
	if a.Held(1, "p") != nil {
		t.Error("the cancelled request holds slots")
	}
}

// A head that leaves lets a smaller request behind it through.
func TestCancelHeadUnblocksNext(t *testing.T) {
	a, _ := fullAlloc(t, 2)
	mustAcquire(t, a, req(9, "x", 1))
	big := startAcquire(a, req(1, "big", 2), 0)
	big.at(t, 1)
	small := startAcquire(a, req(2, "small", 1), 0)
	small.at(t, 2)
	big.stop()
	if r := small.result(t); r.err != nil {
		t.Fatal(r.err)
	}
}

func TestQueueTimeout(t *testing.T) {
	a, _ := fullAlloc(t, 1)
	mustAcquire(t, a, req(9, "x", 1))
	w := startAcquire(a, req(1, "p", 1), 50*time.Millisecond)
	r := w.result(t)
	if !errors.Is(r.err, ErrQueueTimeout) || !strings.Contains(r.err.Error(), "50ms") || !strings.Contains(r.err.Error(), "gpu-status") {
		t.Fatalf("err = %v", r.err)
	}
	if _, q := a.Snapshot(); len(q) != 0 {
		t.Errorf("queue %+v", q)
	}
}

func TestRestore(t *testing.T) {
	a, slots := fullAlloc(t, 3)
	h1 := Holder{User: "alice", UID: 1, Project: "p", Since: time.Unix(1, 0)}
	h2 := Holder{User: "bob", UID: 2, Project: "q"}

	err := a.Restore(h1, []string{slots[0].UUID, "GPU-gone", slots[0].UUID})
	if err == nil || !strings.Contains(err.Error(), "GPU-gone") || strings.Contains(err.Error(), slots[0].UUID) {
		t.Fatalf("Restore: %v", err)
	}
	if got := a.Held(1, "p"); len(got) != 1 || got[0].UUID != slots[0].UUID {
		t.Fatalf("Held = %v", got)
	}

	// Slot 0 is alice's: bob gets only slot 1, and is told about slot 0.
	err = a.Restore(h2, []string{slots[0].UUID, slots[1].UUID})
	if err == nil || !strings.Contains(err.Error(), slots[0].UUID) || !strings.Contains(err.Error(), "alice/p") {
		t.Fatalf("Restore: %v", err)
	}
	if got := a.Held(2, "q"); len(got) != 1 || got[0].UUID != slots[1].UUID {
		t.Fatalf("Held = %v", got)
	}
	// Restoring again what one already holds is fine.
	if err := a.Restore(h1, []string{slots[0].UUID}); err != nil {
		t.Fatal(err)
	}

	states, _ := a.Snapshot()
	if states[0].Holder == nil || *states[0].Holder != h1 || states[1].Holder.User != "bob" || states[2].Holder != nil {
		t.Fatalf("Snapshot %+v", states)
	}
	if eq, n := a.UserEq(1); eq != 1 || n != 1 {
		t.Errorf("UserEq = %v, %d", eq, n)
	}
}

func assertIdle(t *testing.T, a *Allocator) {
	t.Helper()
	states, q := a.Snapshot()
	for _, s := range states {
		if s.Holder != nil {
			t.Errorf("slot %s still held by %+v", s.Slot.Index, *s.Holder)
		}
	}
	if len(q) != 0 {
		t.Errorf("queue not empty: %+v", q)
	}
}

// owners checks, beside the allocator, that no slot ever has two holders.
type owners struct {
	mu sync.Mutex
	m  map[string]string
}

func (o *owners) take(t *testing.T, who string, slots []Slot) {
	o.mu.Lock()
	defer o.mu.Unlock()
	for _, s := range slots {
		if prev, ok := o.m[s.UUID]; ok {
			t.Errorf("slot %s granted to %s while %s holds it", s.UUID, who, prev)
		}
		o.m[s.UUID] = who
	}
}

func (o *owners) drop(slots []Slot) {
	o.mu.Lock()
	defer o.mu.Unlock()
	for _, s := range slots {
		delete(o.m, s.UUID)
	}
}

func TestStress(t *testing.T) {
	slots := fakeSlots(t, []FakeGPU{{}, {MIG: []int{3, 2, 2}}})
	a := NewAllocator(slots)
	o := &owners{m: map[string]string{}}
	rounds := 40
	if testing.Short() {
		rounds = 10
	}
	var wg sync.WaitGroup
	var mu sync.Mutex
	outcomes := map[string]int{}
	for g := range 50 {
		wg.Go(func() {
			rng := rand.New(rand.NewPCG(uint64(g), 1))
			// Pairs of goroutines share a user, so the quota spans them.
			r := req(g%25, fmt.Sprint("p", g), 0)
			for range rounds {
				r.Slots = 1 + rng.IntN(2)
				r.Quota = Quota{}
				if rng.IntN(2) == 0 {
					r.Quota.MaxGPUEq = fptr(1)
				}
				ctx, cancel := context.WithCancel(context.Background())
				if rng.IntN(3) == 0 {
					time.AfterFunc(time.Duration(rng.IntN(2000))*time.Microsecond, cancel)
				}
				var maxWait time.Duration
				if rng.IntN(5) == 0 {
					maxWait = time.Duration(1+rng.IntN(3)) * time.Millisecond
				}
				got, err := a.Acquire(ctx, r, maxWait, func(QueueStatus) {
					if rng.IntN(4) == 0 {
						time.Sleep(50 * time.Microsecond) // a slow connection
					}
				})
				cancel()
				var re *RefusedError
				switch {
				case err == nil:
					o.take(t, r.Project, got)
					if held := a.Held(r.UID, r.Project); len(held) != len(got) {
						t.Errorf("Held = %v, granted %v", held, got)
					}
					time.Sleep(time.Duration(rng.IntN(300)) * time.Microsecond)
					o.drop(got)
					if rng.IntN(3) == 0 { // a stop that keeps the GPUs for a moment
						ids := make([]string, len(got))
						for i, s := range got {
							ids[i] = s.UUID
						}
						a.Hold(r.UID, r.Project, ids, time.Now().Add(time.Duration(rng.IntN(500))*time.Microsecond))
					}
					if freed := a.Release(r.UID, r.Project); len(freed) != len(got) {
						t.Errorf("Release freed %v, granted %v", freed, got)
					}
					mu.Lock()
					outcomes["granted"]++
					mu.Unlock()
				case errors.Is(err, context.Canceled), errors.Is(err, ErrQueueTimeout), errors.As(err, &re):
					if held := a.Held(r.UID, r.Project); held != nil {
						t.Errorf("%s failed with %v but holds %v", r.Project, err, held)
					}
					kind := "refused"
					if errors.Is(err, context.Canceled) {
						kind = "cancelled"
					} else if errors.Is(err, ErrQueueTimeout) {
						kind = "timeout"
					}
					mu.Lock()
					outcomes[kind]++
					mu.Unlock()
				default:
					t.Errorf("Acquire: %v", err)
				}
			}
		})
	}
	wg.Wait()
	assertIdle(t, a)
	time.Sleep(time.Millisecond) // every hold has run out
	if hs := a.Holds(); len(hs) != 0 {
		t.Errorf("holds left: %+v", hs)
	}
	for uid := range 25 {
		if eq, n := a.UserEq(uid); eq != 0 || n != 0 {
			t.Errorf("uid %d still holds %v (%d)", uid, eq, n)
		}
	}
	if outcomes["granted"] == 0 {
		t.Error("nothing was granted")
	}
	t.Logf("outcomes: %v", outcomes)
}
