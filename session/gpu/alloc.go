package gpu

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"strings"
	"sync"
	"time"
)

// Holder is who holds a slot.
type Holder struct {
	User    string
	UID     int
	Project string
	Since   time.Time
}

// Quota is what the allocator enforces for one request. nil pointers mean
// unlimited.
type Quota struct {
	MaxGPUEq             *float64 // max_gpu_equivalents: the user's total across containers
	MaxSlotsPerContainer *int     // max_gpu_slots_per_container
}

// Request asks for n slots for one container of (UID, Project).
type Request struct {
	User    string
	UID     int
	Project string
	Slots   int
	Quota   Quota
}

// Reasons of a RefusedError.
const (
	reasonCap       = "per_container_cap"
	reasonQuota     = "quota"
	reasonInventory = "inventory"
)

// RefusedError is a request that cannot be granted as asked, so it is
// refused at once rather than left to wait forever. Reason is one of
// "per_container_cap", "quota", "inventory"; Msg is the one line the user
// sees: the numbers, and what to do about them.
type RefusedError struct{ Reason, Msg string }

func (e *RefusedError) Error() string { return e.Msg }

// ErrQueueTimeout is a request that waited as long as the gateway lets it.
var ErrQueueTimeout = errors.New("no GPU came free in time: gpu-status shows who holds them; try again later or ask for +cpu")

// QueueStatus is what a waiting request is told: its 1-based Position in
// the queue, how many requests wait in all, and how many of the Total
// slots are held by how many containers. Bound, when not zero, is when the
// first idle GPU container stops unless used (see SetQueueBound), rounded
// up to the minute, in UTC.
type QueueStatus struct {
	Position, Waiting, Held, Total, Holders int
	Bound                                   time.Time
}

// SlotState is one slot for gpu-status; Holder is nil when it is free.
type SlotState struct {
	Slot   Slot
	Holder *Holder
}

// Waiter is one queued request for gpu-status.
type Waiter struct {
	User, Project string
	Slots         int
	Since         time.Time
}

// key is one container's claim: a user's project.
type key struct {
	uid     int
	project string
}

// grant is the slots one container holds, as inventory indices in
// inventory order.
type grant struct {
	key    key
	holder Holder
	slots  []int
}

// waiter is a queued Acquire. Its fields past notify are guarded by the
// allocator's mutex; done is closed once finished is set.
type waiter struct {
	req    Request
	key    key
	since  time.Time
	notify chan struct{} // buffered 1: "the queue or the holders changed"
	done   chan struct{}

	finished bool
	slots    []int
	err      error
}

// Allocator hands out slots: each to at most one container, in strict
// arrival order when there are not enough for everyone.
type Allocator struct {
	slots []Slot         // inventory order; never changes
	index map[string]int // UUID -> position in slots
	// pref is every slot index, cheapest first (fewest sevenths, MIG
	// before a full GPU, then inventory order): taking the first free ones
	// gives the smallest gpueq that satisfies a count.
	pref []int

	mu     sync.Mutex
	owner  []*grant // per slot; nil when free
	grants map[key]*grant
	queue  []*waiter

	// Holds after stop (alloc_hold.go): per slot, nil when not held. A
	// held slot is free (owner nil) but kept for its owner.
	hold    []*hold
	names   map[int]string // uid -> user name, for HoldState
	now     func() time.Time
	onDrop  func(HoldState)
	dropped []HoldState // to tell onDrop once the lock is released

	bound      func() (time.Time, bool) // see SetQueueBound
	boundEvery time.Duration            // how often a waiter re-reads bound
}

// NewAllocator returns an allocator of the given slots, all free.
func NewAllocator(slots []Slot) *Allocator {
	a := &Allocator{
		index: map[string]int{}, grants: map[key]*grant{}, names: map[int]string{},
		now: time.Now, boundEvery: 30 * time.Second,
	}
	for _, s := range slots {
		if _, dup := a.index[s.UUID]; dup {
			slog.Warn("gpu: slot listed twice in the inventory; using the first", "uuid", s.UUID)
			continue
		}
		a.index[s.UUID] = len(a.slots)
		a.slots = append(a.slots, s)
	}
	a.owner = make([]*grant, len(a.slots))
	a.hold = make([]*hold, len(a.slots))
	a.pref = make([]int, len(a.slots))
	for i := range a.pref {
		a.pref[i] = i
	}
	slices.SortStableFunc(a.pref, func(i, j int) int {
		si, sj := a.slots[i], a.slots[j]
		if c := si.sevenths() - sj.sevenths(); c != 0 {
			return c
		}
		return boolRank(si.Slices == 0) - boolRank(sj.Slices == 0)
	})
	return a
}

func boolRank(b bool) int {
	if b {
		return 1
	}
	return 0
}

// Total is the number of slots in the inventory.
func (a *Allocator) Total() int { return len(a.slots) }

// Acquire grants r.Slots slots to (r.UID, r.Project), exclusively, waiting
// in a FIFO queue while they are not free. A request that cannot be granted
// as asked (per-container cap, inventory, quota) fails at once with a
// *RefusedError. While queued, progress (if not nil) is told the position
// at once and after every change; it runs on this goroutine without the
// allocator's lock, so a slow connection delays only its own updates.
// Cancelling ctx leaves the queue with ctx.Err(); after maxWait (0: no
// limit) it leaves with ErrQueueTimeout. Slots held for (r.UID, r.Project)
// since its last container stopped (Hold) are given back first.
func (a *Allocator) Acquire(ctx context.Context, r Request, maxWait time.Duration, progress func(QueueStatus)) ([]Slot, error) {
	if r.Slots <= 0 {
		return nil, nil
	}
	if err := a.refuseStatic(r); err != nil {
		return nil, err
	}
	k := key{r.UID, r.Project}
	a.mu.Lock()
	if err := a.refuseLocked(r); err != nil {
		a.unlock()
		return nil, err
	}
	if _, ok := a.grants[k]; ok {
		a.unlock()
		return nil, fmt.Errorf("gpu: %s/%s already holds GPU slots; release them first", r.User, r.Project)
	}
	for _, w := range a.queue {
		if w.key == k {
			a.unlock()
			return nil, fmt.Errorf("gpu: %s/%s is already waiting for GPU slots", r.User, r.Project)
		}
	}
	if err := ctx.Err(); err != nil {
		a.unlock()
		return nil, err
	}
	if len(a.queue) == 0 {
		if chosen := a.chooseLocked(r); chosen != nil {
			a.grantLocked(k, r.holder(), chosen)
			a.unlock()
			return a.slotIdx(chosen), nil
		}
	}
	w := &waiter{req: r, key: k, since: time.Now(), notify: make(chan struct{}, 1), done: make(chan struct{})}
	a.queue = append(a.queue, w)
	a.dropForWaitersLocked()
	a.notifyLocked()
	st, _ := a.statusLocked(w)
	a.unlock()
	return a.wait(ctx, w, st, maxWait, progress)
}

// wait is a queued request's side: it relays progress until the request
// is granted, refused, cancelled or out of time.
func (a *Allocator) wait(ctx context.Context, w *waiter, st QueueStatus, maxWait time.Duration, progress func(QueueStatus)) ([]Slot, error) {
	if progress == nil {
		progress = func(QueueStatus) {}
	}
	var last QueueStatus
	tell := func(st QueueStatus) {
		st.Bound = a.queueBound()
		if st != last {
			last = st
			progress(st)
		}
	}
	tell(st)
	// The bound moves without the queue changing (a holder becomes idle,
	// or busy again): re-read it now and then.
	tick := time.NewTicker(a.boundEvery)
	defer tick.Stop()
	var timeout <-chan time.Time
	if maxWait > 0 {
		t := time.NewTimer(maxWait)
		defer t.Stop()
		timeout = t.C
	}
	for {
		select {
		case <-w.done:
			if w.err != nil {
				return nil, w.err
			}
			return a.slotIdx(w.slots), nil
		case <-ctx.Done():
			return a.leave(w, ctx.Err())
		case <-timeout:
			return a.leave(w, fmt.Errorf("waited %s: %w", maxWait, ErrQueueTimeout))
		case <-w.notify:
		case <-tick.C:
		}
		a.mu.Lock()
		st, queued := a.statusLocked(w)
		a.mu.Unlock()
		if queued {
			tell(st)
		}
	}
}

// leave takes a waiter out of the queue with err. A grant that raced with
// the cancellation is given back, so a caller that gave up holds nothing.
func (a *Allocator) leave(w *waiter, err error) ([]Slot, error) {
	a.mu.Lock()
	defer a.unlock()
	if w.finished {
		if w.err != nil {
			return nil, w.err
		}
		a.ungrantLocked(w.key, w.slots)
	} else {
		a.queue = slices.DeleteFunc(a.queue, func(q *waiter) bool { return q == w })
		w.finished = true
		close(w.done)
	}
	// The head may have left, or slots come back: the next may fit now.
	a.dispatchLocked()
	a.notifyLocked()
	return nil, err
}

// Release frees the slots of (uid, project) and hands them to the queue's
// head(s) as they fit; it returns what was freed (nil if none).
func (a *Allocator) Release(uid int, project string) []Slot {
	a.mu.Lock()
	defer a.unlock()
	g, ok := a.grants[key{uid, project}]
	if !ok {
		return nil
	}
	freed := a.slotIdx(g.slots)
	a.ungrantLocked(g.key, g.slots)
	a.dispatchLocked()
	a.notifyLocked()
	return freed
}

// Restore records slots held by a container that survived a gateway
// restart (rebuilt from its Docker labels). It restores every UUID that is
// in the inventory and free; it returns an error naming the others (gone
// from the inventory, or held by another container), which stay as they
// are: two containers must never share a GPU.
func (a *Allocator) Restore(h Holder, uuids []string) error {
	k := key{h.UID, h.Project}
	a.mu.Lock()
	defer a.unlock()
	var unknown, taken []string
	var add []int
	seen := map[int]bool{}
	for _, u := range uuids {
		u = strings.TrimSpace(u)
		if u == "" {
			continue
		}
		i, ok := a.index[u]
		switch {
		case !ok:
			unknown = append(unknown, u)
		case seen[i]:
		case a.owner[i] == nil:
			add = append(add, i)
		case a.owner[i].key != k:
			o := a.owner[i].holder
			taken = append(taken, fmt.Sprintf("%s (held by %s/%s)", u, o.User, o.Project))
		}
		if ok {
			seen[i] = true
		}
	}
	if len(add) > 0 {
		a.grantLocked(k, h, add)
		a.notifyLocked()
	}
	var problems []string
	if len(unknown) > 0 {
		problems = append(problems, "not in the inventory: "+strings.Join(unknown, ", "))
	}
	if len(taken) > 0 {
		problems = append(problems, "held by another container: "+strings.Join(taken, ", "))
	}
	if len(problems) > 0 {
		return fmt.Errorf("restore GPUs of %s/%s: %s", h.User, h.Project, strings.Join(problems, "; "))
	}
	return nil
}

// Held returns the slots (uid, project) holds, in inventory order.
func (a *Allocator) Held(uid int, project string) []Slot {
	a.mu.Lock()
	defer a.mu.Unlock()
	if g, ok := a.grants[key{uid, project}]; ok {
		return a.slotIdx(g.slots)
	}
	return nil
}

// UserEq is the gpueq and slot count uid holds across its containers.
func (a *Allocator) UserEq(uid int) (eq float64, slots int) {
	a.mu.Lock()
	defer a.mu.Unlock()
	sev, n := a.userLocked(uid)
	return float64(sev) / migSlices, n
}

// Snapshot is the whole state for gpu-status: every slot in inventory
// order with its holder (nil if free), and the queue in order.
func (a *Allocator) Snapshot() ([]SlotState, []Waiter) {
	a.mu.Lock()
	defer a.mu.Unlock()
	states := make([]SlotState, len(a.slots))
	for i, s := range a.slots {
		states[i].Slot = s
		if g := a.owner[i]; g != nil {
			h := g.holder
			states[i].Holder = &h
		}
	}
	queue := make([]Waiter, len(a.queue))
	for i, w := range a.queue {
		queue[i] = Waiter{User: w.req.User, Project: w.req.Project, Slots: w.req.Slots, Since: w.since}
	}
	return states, queue
}

func (r Request) holder() Holder {
	return Holder{User: r.User, UID: r.UID, Project: r.Project, Since: time.Now()}
}

// chooseLocked picks free slots for r, or nil when r must wait: not
// enough are free, or the free ones would overshoot the quota where
// cheaper ones (held by others now) would not. The owner of held slots
// gets them back first, so a reconnect finds its GPU; others take the
// cheapest free slots nobody holds, and held ones only when they would
// otherwise wait, so a hold never makes anyone queue.
func (a *Allocator) chooseLocked(r Request) []int {
	a.expireLocked()
	k := key{r.UID, r.Project}
	own := func(i int) bool { return a.hold[i] != nil && a.hold[i].key == k }
	unheld := func(i int) bool { return a.hold[i] == nil }
	if chosen := a.pickLocked(r, own, unheld); chosen != nil {
		return chosen
	}
	if a.holdsLocked(k) { // the held ones overshoot the quota: the cheapest instead
		if chosen := a.pickLocked(r, func(i int) bool { return own(i) || unheld(i) }); chosen != nil {
			return chosen
		}
	}
	if !a.anyHeldLocked() {
		return nil
	}
	return a.pickLocked(r, func(int) bool { return true })
}

// pickLocked takes free slots in the order of passes (each cheapest
// first) until r has its count; nil when there are not enough or they
// overshoot r's quota.
func (a *Allocator) pickLocked(r Request, passes ...func(i int) bool) []int {
	var chosen []int
	sev := 0
	for _, ok := range passes {
		for _, i := range a.pref {
			if len(chosen) == r.Slots {
				break
			}
			if a.owner[i] == nil && ok(i) && !slices.Contains(chosen, i) {
				chosen = append(chosen, i)
				sev += a.slots[i].sevenths()
			}
		}
	}
	if len(chosen) < r.Slots {
		return nil
	}
	if q := r.Quota.MaxGPUEq; q != nil {
		heldSev, _ := a.userLocked(r.UID)
		if !fits(heldSev+sev, *q) {
			return nil
		}
	}
	slices.Sort(chosen)
	return chosen
}

// dispatchLocked grants the queue's head while it fits, in strict order:
// a smaller request behind a head that must wait waits too, so a big
// request is never starved by a stream of small ones. A head that can no
// longer be granted at all (its user got other slots meanwhile) is
// refused.
func (a *Allocator) dispatchLocked() {
	for len(a.queue) > 0 {
		w := a.queue[0]
		if err := a.refuseLocked(w.req); err != nil {
			w.err = err
		} else if chosen := a.chooseLocked(w.req); chosen != nil {
			a.grantLocked(w.key, w.req.holder(), chosen)
			w.slots = chosen
		} else {
			a.dropForWaitersLocked()
			return
		}
		a.queue = a.queue[1:]
		w.finished = true
		close(w.done)
	}
}

// grantLocked gives slots to k (adding to what it holds, for Restore).
func (a *Allocator) grantLocked(k key, h Holder, idx []int) *grant {
	g, ok := a.grants[k]
	if !ok {
		g = &grant{key: k, holder: h}
		a.grants[k] = g
	}
	a.names[k.uid] = h.User
	for _, i := range idx {
		if a.owner[i] != nil {
			// The callers pick free slots under the lock: this is a bug.
			panic(fmt.Sprintf("gpu: slot %s granted twice", a.slots[i].UUID))
		}
		a.owner[i] = g
		a.unholdLocked(i, k)
	}
	g.slots = append(g.slots, idx...)
	slices.Sort(g.slots)
	return g
}

// ungrantLocked frees the given slots of k.
func (a *Allocator) ungrantLocked(k key, idx []int) {
	g, ok := a.grants[k]
	if !ok {
		return
	}
	for _, i := range idx {
		if a.owner[i] == g {
			a.owner[i] = nil
		}
	}
	g.slots = slices.DeleteFunc(g.slots, func(i int) bool { return slices.Contains(idx, i) })
	if len(g.slots) == 0 {
		delete(a.grants, k)
	}
}

// userLocked is the sevenths and slot count uid holds.
func (a *Allocator) userLocked(uid int) (sev, n int) {
	for k, g := range a.grants {
		if k.uid != uid {
			continue
		}
		for _, i := range g.slots {
			sev += a.slots[i].sevenths()
		}
		n += len(g.slots)
	}
	return sev, n
}

// statusLocked is w's place in the queue; false once it has left.
func (a *Allocator) statusLocked(w *waiter) (QueueStatus, bool) {
	pos := slices.Index(a.queue, w)
	if pos < 0 {
		return QueueStatus{}, false
	}
	held := 0
	for _, g := range a.owner {
		if g != nil {
			held++
		}
	}
	return QueueStatus{Position: pos + 1, Waiting: len(a.queue), Held: held, Total: len(a.slots), Holders: len(a.grants)}, true
}

// notifyLocked wakes every waiter to recompute its status. The send never
// blocks: a waiter busy in progress finds one pending wake-up and reads
// the newest state then, so only intermediate states are dropped.
func (a *Allocator) notifyLocked() {
	for _, w := range a.queue {
		select {
		case w.notify <- struct{}{}:
		default:
		}
	}
}

// slotIdx copies slots out by index; a.slots never changes, so no lock.
func (a *Allocator) slotIdx(idx []int) []Slot {
	out := make([]Slot, len(idx))
	for i, j := range idx {
		out[i] = a.slots[j]
	}
	return out
}
