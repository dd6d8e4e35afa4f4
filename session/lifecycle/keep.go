package lifecycle

import (
	"errors"
	"fmt"
	"time"
)

// Keep grants a container-keep lease of d from now: an idle stop waits until
// the returned time (never the maximum runtime). A lease that ends before an
// existing one changes nothing and costs nothing; otherwise only the time
// added past the existing lease counts against Rules.KeepTotal.
//
// The returned time may be earlier than now+d, never silently otherwise:
// the lease ends at the maximum runtime, and under GPU pressure it ends
// Rules.PressureKeepCap past the idle deadline. The caller compares it with
// now+d to say so. Every error is a refusal worded for the user.
func Keep(in Input, st State, d time.Duration, now time.Time) (State, time.Time, error) {
	r := in.Rules
	switch {
	case d <= 0:
		return st, time.Time{}, errors.New("the keep duration must be positive, e.g. --for 4h")
	case r.KeepMax <= 0:
		return st, time.Time{}, errors.New("container-keep is turned off on this server; touch /workspace/.keep-alive instead")
	case d > r.KeepMax:
		return st, time.Time{}, fmt.Errorf("at most %s per keep (asked for %s); keep again later to extend", ShortDuration(r.KeepMax), ShortDuration(d))
	}
	t := r.IdleTimeout
	if !in.HasGPU {
		t = r.IdleTimeoutNoGPU
	}
	if t <= 0 {
		return st, time.Time{}, fmt.Errorf("%s is never stopped for being idle: nothing to keep", in.Project)
	}
	if st.Started.IsZero() {
		st.Started = now
	}
	if st.LastActive.IsZero() {
		st.LastActive = st.Started
	}

	from := later(now, st.KeepUntil)
	until := now.Add(d)
	if rt := r.MaxRuntime; rt > 0 && !in.Exempt.Runtime {
		until = earlier(until, st.Started.Add(rt))
	}
	if in.Pressure && in.HasGPU {
		capAt := st.LastActive.Add(in.effectiveIdle()).Add(r.PressureKeepCap)
		if !capAt.After(from) {
			return st, time.Time{}, fmt.Errorf("someone is waiting for a GPU: %s cannot be kept longer now (at most %s past its idle deadline)", in.Project, ShortDuration(r.PressureKeepCap))
		}
		until = earlier(until, capAt)
	}
	if !until.After(from) {
		if st.KeepUntil.After(now) {
			return st, st.KeepUntil, nil // already kept at least this long
		}
		return st, time.Time{}, fmt.Errorf("%s reaches its maximum runtime of %s before then: nothing to keep", in.Project, ShortDuration(r.MaxRuntime))
	}
	add := until.Sub(from)
	if r.KeepTotal > 0 && st.KeepGranted+add > r.KeepTotal {
		left := r.KeepTotal - st.KeepGranted
		if left < time.Minute {
			return st, time.Time{}, fmt.Errorf("%s has used its keep total of %s; ask an admin for an exemption", in.Project, ShortDuration(r.KeepTotal))
		}
		most := (from.Sub(now) + left).Truncate(time.Minute)
		return st, time.Time{}, fmt.Errorf("%s has %s of its keep total of %s left: use --for %s or less", in.Project, ShortDuration(left.Truncate(time.Minute)), ShortDuration(r.KeepTotal), ShortDuration(most))
	}
	st.KeepUntil = until
	st.KeepGranted += add
	return st, until, nil
}
