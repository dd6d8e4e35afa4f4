package gpu

import (
	"log/slog"
	"strconv"
	"strings"
	"time"
)

// HoldState is one held slot for gpu-status: its container stopped, and
// the slot is kept for (UID, Project) until Until, so that a reconnect
// gets the same GPU back.
type HoldState struct {
	Slot    Slot
	User    string
	UID     int
	Project string
	Until   time.Time
}

// hold is one slot's reservation. A held slot is free (nobody's grant):
// it counts as neither allocated (Pressure) nor held (gpu-status'
// holders), since anyone who would otherwise wait takes it.
type hold struct {
	key   key
	until time.Time
}

// Hold reserves the given slots for (uid, project) until until: an
// Acquire by that same container takes them first; anyone else takes them
// only when they would otherwise wait, and the hold then ends at once
// (SetHoldDropped's callback is told). A hold also ends when someone other
// than its owner waits in the queue, and vanishes at until.
//
// Call it before or after Release: a slot still granted to (uid, project)
// is held from its release on, which leaves no moment for another request
// to take it. Slots held by another container, or reserved for another,
// are skipped: the first reservation stands.
func (a *Allocator) Hold(uid int, project string, uuids []string, until time.Time) {
	k := key{uid, project}
	a.mu.Lock()
	defer a.unlock()
	a.expireLocked()
	if !until.After(a.now()) {
		return
	}
	for _, u := range uuids {
		i, ok := a.index[strings.TrimSpace(u)]
		switch {
		case !ok:
			slog.Warn("gpu: hold of a slot not in the inventory", "uuid", u, "uid", uid, "project", project)
		case a.owner[i] != nil && a.owner[i].key != k:
		case a.hold[i] != nil && a.hold[i].key != k:
		default:
			a.hold[i] = &hold{key: k, until: until}
		}
	}
	a.dropForWaitersLocked()
}

// DropHolds ends the holds of (uid, project) at once, without telling
// SetHoldDropped's callback (the caller knows), and returns them.
func (a *Allocator) DropHolds(uid int, project string) []HoldState {
	k := key{uid, project}
	a.mu.Lock()
	defer a.mu.Unlock()
	a.expireLocked()
	var out []HoldState
	for i, h := range a.hold {
		if h != nil && h.key == k {
			out = append(out, a.holdStateLocked(i))
			a.hold[i] = nil
		}
	}
	return out
}

// Holds lists the slots held now, in inventory order.
func (a *Allocator) Holds() []HoldState {
	a.mu.Lock()
	defer a.mu.Unlock()
	a.expireLocked()
	var out []HoldState
	for i, h := range a.hold {
		if h != nil {
			out = append(out, a.holdStateLocked(i))
		}
	}
	return out
}

// SetHoldDropped sets what is told when a hold ends because someone else
// needed its slot (took it, or waits in the queue); not when it expires,
// is taken back by its owner, or ends by DropHolds. f runs on the
// goroutine of the call that ended the hold (an Acquire, Release, Hold or
// Restore), after the allocator's lock is released, once per slot; it may
// run on several goroutines at once and should be quick.
func (a *Allocator) SetHoldDropped(f func(HoldState)) {
	a.mu.Lock()
	defer a.mu.Unlock()
	a.onDrop = f
}

// Pressure reports whether GPUs are scarce: someone waits in the queue,
// or the GPU-equivalents allocated to containers are at least threshold
// of the inventory's (counted in whole sevenths, so 3.2 of 4 GPUs is
// exact). Held slots do not count: anyone who would otherwise wait takes
// them. A threshold <= 0 means pressure whenever there are GPUs; one
// above 1 means only a waiter makes pressure.
func (a *Allocator) Pressure(threshold float64) bool {
	a.mu.Lock()
	defer a.mu.Unlock()
	if len(a.queue) > 0 {
		return true
	}
	total, used := 0, 0
	for i, s := range a.slots {
		total += s.sevenths()
		if a.owner[i] != nil {
			used += s.sevenths()
		}
	}
	return total > 0 && float64(used) >= threshold*float64(total)-eqEpsilon
}

// SetQueueBound sets where waiters learn how long they wait at most: f
// returns the earliest moment a GPU container stops for idleness (false:
// none is due). f is called without the allocator's lock, on the waiters'
// goroutines, when their status changes and every 30 s, so it may read
// the lifecycle's state and call Pressure.
func (a *Allocator) SetQueueBound(f func() (time.Time, bool)) {
	a.mu.Lock()
	defer a.mu.Unlock()
	a.bound = f
}

// queueBound is SetQueueBound's answer for QueueStatus.Bound, rounded up
// to the minute: the queue display shows minutes, and a bound that moves
// by seconds (a busy holder's deadline does every sweep) must not repeat
// the line.
func (a *Allocator) queueBound() time.Time {
	a.mu.Lock()
	f := a.bound
	a.mu.Unlock()
	if f == nil {
		return time.Time{}
	}
	t, ok := f()
	if !ok || t.IsZero() {
		return time.Time{}
	}
	m := t.UTC().Truncate(time.Minute)
	if m.Before(t) {
		m = m.Add(time.Minute)
	}
	return m
}

// unlock releases the lock, then tells onDrop of the holds that ended
// meanwhile: the callback may log or write to the store, which must not
// happen under the lock every Acquire takes.
func (a *Allocator) unlock() {
	dropped, f := a.dropped, a.onDrop
	a.dropped = nil
	a.mu.Unlock()
	if f == nil {
		return
	}
	for _, h := range dropped {
		f(h)
	}
}

// unholdLocked ends slot i's hold as it is granted to k: silently for its
// owner (or when the hold ran out), and as a drop for anyone else.
func (a *Allocator) unholdLocked(i int, k key) {
	h := a.hold[i]
	if h == nil {
		return
	}
	if h.key != k && a.now().Before(h.until) {
		a.dropped = append(a.dropped, a.holdStateLocked(i))
	}
	a.hold[i] = nil
}

// dropForWaitersLocked ends every hold whose owner does not wait itself
// while someone waits: a hold must never lengthen anyone's wait, and a
// waiter that needs more slots than are free takes the held ones as soon
// as enough come free.
func (a *Allocator) dropForWaitersLocked() {
	if len(a.queue) == 0 {
		return
	}
	a.expireLocked()
	for i, h := range a.hold {
		if h == nil || a.waitingLocked(h.key) {
			continue
		}
		a.dropped = append(a.dropped, a.holdStateLocked(i))
		a.hold[i] = nil
	}
}

func (a *Allocator) waitingLocked(k key) bool {
	for _, w := range a.queue {
		if w.key == k {
			return true
		}
	}
	return false
}

// expireLocked forgets the holds that ran out. Lazily, on the calls that
// look at holds: no timer to stop.
func (a *Allocator) expireLocked() {
	now := a.now()
	for i, h := range a.hold {
		if h != nil && !now.Before(h.until) {
			a.hold[i] = nil
		}
	}
}

// holdsLocked reports whether k holds any slot.
func (a *Allocator) holdsLocked(k key) bool {
	for _, h := range a.hold {
		if h != nil && h.key == k {
			return true
		}
	}
	return false
}

func (a *Allocator) anyHeldLocked() bool {
	for _, h := range a.hold {
		if h != nil {
			return true
		}
	}
	return false
}

func (a *Allocator) holdStateLocked(i int) HoldState {
	h := a.hold[i]
	name, ok := a.names[h.key.uid]
	if !ok { // held before any grant, as a restart's restore may do
		name = "uid " + strconv.Itoa(h.key.uid)
	}
	return HoldState{Slot: a.slots[i], User: name, UID: h.key.uid, Project: h.key.project, Until: h.until}
}
