package gpu

import (
	"fmt"
	"math"
	"strconv"
	"strings"
)

// refuseStatic refuses what no state of the allocator could grant.
func (a *Allocator) refuseStatic(r Request) error {
	if c := r.Quota.MaxSlotsPerContainer; c != nil && r.Slots > *c {
		if *c <= 0 {
			return &RefusedError{reasonCap, "GPUs are off for you (max_gpu_slots_per_container is 0): ask for +cpu"}
		}
		return &RefusedError{reasonCap, fmt.Sprintf("you asked for %d GPUs; at most %d per container (max_gpu_slots_per_container): ask for +gpus=%d", r.Slots, *c, *c)}
	}
	if n := len(a.slots); r.Slots > n {
		if n == 0 {
			return &RefusedError{reasonInventory, fmt.Sprintf("this host has no GPUs; you asked for %d: ask for +cpu", r.Slots)}
		}
		return &RefusedError{reasonInventory, fmt.Sprintf("this host has %d GPU slots; you asked for %d: ask for +gpus=%d", n, r.Slots, n)}
	}
	return nil
}

// refuseLocked refuses what cannot be granted while the user holds what
// they hold: the request only ever gets slots its user does not hold, so
// they bound both the count and the cheapest gpueq it can get. Without
// this, a request stuck behind the user's own containers would wait at
// the head of the queue and block everyone else.
func (a *Allocator) refuseLocked(r Request) error {
	heldSev, heldN := a.userLocked(r.UID)
	avail, minSev := a.cheapestLocked(r.UID, r.Slots)
	if avail < r.Slots {
		msg := fmt.Sprintf("you hold %d of this host's %d GPU slots in other containers; you asked for %d more: ", heldN, len(a.slots), r.Slots)
		if avail > 0 {
			msg += fmt.Sprintf("ask for +gpus=%d or retire a container (container-list)", avail)
		} else {
			msg += "retire a container (container-list) or ask for +cpu"
		}
		return &RefusedError{reasonInventory, msg}
	}
	q := r.Quota.MaxGPUEq
	if q == nil || fits(heldSev+minSev, *q) {
		return nil
	}
	if *q <= eqEpsilon {
		return &RefusedError{reasonQuota, "your GPU limit is 0 GPU-equivalents (max_gpu_equivalents): ask for +cpu"}
	}
	msg := fmt.Sprintf("you hold %s of %s GPU-equivalents", fmtSev(heldSev), fmtEq(*q))
	if fits(heldSev+1, *q) { // some room is left: say why it is not enough
		msg += fmt.Sprintf(" and %d GPU slot(s) need at least %s more", r.Slots, fmtSev(minSev))
	}
	var todo []string
	for n := r.Slots - 1; n >= 1; n-- {
		if _, s := a.cheapestLocked(r.UID, n); fits(heldSev+s, *q) {
			todo = append(todo, fmt.Sprintf("ask for +gpus=%d", n))
			break
		}
	}
	if heldN > 0 {
		todo = append(todo, "retire a container (container-list)")
	}
	todo = append(todo, "ask for +cpu")
	return &RefusedError{reasonQuota, msg + ": " + orList(todo)}
}

// orList joins choices as "a, b or c".
func orList(s []string) string {
	if len(s) == 1 {
		return s[0]
	}
	return strings.Join(s[:len(s)-1], ", ") + " or " + s[len(s)-1]
}

// fits reports whether sev sevenths stay within a quota of max gpueq.
func fits(sev int, max float64) bool {
	return float64(sev)/migSlices <= max+eqEpsilon
}

// fmtSev writes sevenths as gpueq.
func fmtSev(sev int) string { return fmtEq(float64(sev) / migSlices) }

// fmtEq writes gpueq for people: "2.0", "0.5", "0.43".
func fmtEq(eq float64) string {
	eq = RoundEq(eq)
	if eq == math.Trunc(eq) {
		return strconv.FormatFloat(eq, 'f', 1, 64)
	}
	return strconv.FormatFloat(eq, 'f', -1, 64)
}

// cheapestLocked counts the slots uid does not hold, and the sevenths of
// the cheapest n of them.
func (a *Allocator) cheapestLocked(uid, n int) (avail, sev int) {
	for _, i := range a.pref {
		if g := a.owner[i]; g != nil && g.key.uid == uid {
			continue
		}
		if avail < n {
			sev += a.slots[i].sevenths()
		}
		avail++
	}
	return avail, sev
}
