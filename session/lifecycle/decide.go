package lifecycle

import (
	"fmt"
	"time"
)

// Decide runs one sweep of the policy for one container: it folds the
// Sample into the State, and says which notices to deliver, whether to stop
// the container now, and when it stops next. now is the gateway's clock
// (usually s.At).
func Decide(in Input, st State, s Sample, now time.Time) Decision {
	if s.At.IsZero() {
		s.At = now
	}
	if st.Started.IsZero() {
		st.Started = now
	}
	if st.LastActive.IsZero() {
		st.LastActive = st.Started // the start counts as activity
	}
	prevSample := st.LastSampleAt

	var d Decision
	busy := observe(in.Rules, &st, s)
	keepAliveEvents(in, &st, s, now, &d)
	n := notes{in: in, now: now}

	idle, idleOn := idlePlan(in, st, s, now)
	rt, rtOn := runtimePlan(in, st)

	// Warnings belong to one deadline and one exemption status: a moved idle
	// deadline, or an exemption that ended, starts the warnings again.
	if st.IdleWarned > 0 && (!idleOn || !st.IdleWarnedFor.Equal(idle.deadline) || st.IdleWarnedInfo && !in.Exempt.Idle) {
		resetIdle(&st)
	}
	if st.RuntimeWarnedInfo && !in.Exempt.Runtime {
		st.runtimeWarnings().reset()
	}

	// Stops rest on warnings delivered at an earlier sweep, so they are
	// decided before this sweep's warnings. Runtime first: it is the
	// reason that holds whatever the container does.
	switch {
	case rtOn && !in.Exempt.Runtime && rt.canStop(st.RuntimeWarned, st.RuntimeWarnedInfo, st.RuntimeWarnedAt, now):
		ran := now.Sub(st.Started)
		d.Stop = &Stop{
			Kind:   StopRuntime,
			Text:   n.runtimeStop(in.Rules.MaxRuntime),
			Reason: fmt.Sprintf("maximum runtime %s reached (ran %s)", ShortDuration(in.Rules.MaxRuntime), ShortDuration(ran)),
		}
		d.Events = append(d.Events, Event{Type: EventRuntimeStop, Details: d.Stop.Reason, Duration: ran})
		d.Deadline, d.DeadlineReason = now, ReasonRuntime
	case idleOn && !in.Exempt.Idle && idle.canStop(st.IdleWarned, st.IdleWarnedInfo, st.IdleWarnedAt, now):
		idleFor := now.Sub(st.LastActive)
		d.Stop = &Stop{
			Kind:   StopIdle,
			Text:   n.idleStop(idleFor),
			Reason: fmt.Sprintf("idle for %s (timeout %s)", ShortDuration(idleFor), ShortDuration(in.effectiveIdle())),
		}
		d.Events = append(d.Events, Event{Type: EventIdleStop, Details: d.Stop.Reason, Duration: idleFor})
		d.Deadline, d.DeadlineReason = now, ReasonIdle
	}
	if !busy {
		d.IdleSince = st.LastActive
	}
	if d.Stop != nil {
		d.State = st
		return d
	}

	// An idle GPU holder under pressure is told once per episode; a warning
	// going out now carries the news itself.
	tellWaiting := in.Pressure && in.HasGPU && !busy && !prevSample.IsZero() && !st.PressureTold
	if idleOn {
		if due := idle.due(now); due > st.IdleWarned {
			st.IdleWarned, st.IdleWarnedAt, st.IdleWarnedFor, st.IdleWarnedInfo = due, now, idle.deadline, in.Exempt.Idle
			idleFor := now.Sub(st.LastActive)
			stopAt := idle.stopAt(due, now)
			d.Notices = append(d.Notices, Notice{Kind: NoticeIdle, Text: n.idleWarning(idleFor, stopAt, tellWaiting)})
			d.Events = append(d.Events, Event{
				Type:     EventIdleWarning,
				Details:  warningDetails(idle.pct[due-1], in.Exempt.Idle, fmt.Sprintf("idle for %s of %s", ShortDuration(idleFor), ShortDuration(in.effectiveIdle())), stopAt),
				Duration: idleFor,
			})
			if tellWaiting {
				st.PressureTold, tellWaiting = true, false
			}
		}
	}
	if rtOn {
		if due := rt.due(now); due > st.RuntimeWarned {
			st.RuntimeWarned, st.RuntimeWarnedAt, st.RuntimeWarnedInfo = due, now, in.Exempt.Runtime
			stopAt := rt.stopAt(due, now)
			ran := now.Sub(st.Started)
			d.Notices = append(d.Notices, Notice{Kind: NoticeRuntime, Text: n.runtimeWarning(in.Rules.MaxRuntime, stopAt)})
			d.Events = append(d.Events, Event{
				Type:     EventRuntimeWarning,
				Details:  warningDetails(rt.pct[due-1], in.Exempt.Runtime, fmt.Sprintf("ran %s of %s", ShortDuration(ran), ShortDuration(in.Rules.MaxRuntime)), stopAt),
				Duration: ran,
			})
		}
	}

	// The next stop, if nothing changes.
	var idleAt, rtAt time.Time
	if idleOn && !in.Exempt.Idle {
		idleAt = idle.stopAt(st.IdleWarned, st.IdleWarnedAt)
		d.Deadline, d.DeadlineReason = idleAt, ReasonIdle
	}
	if rtOn && !in.Exempt.Runtime {
		rtAt = rt.stopAt(st.RuntimeWarned, st.RuntimeWarnedAt)
		if d.Deadline.IsZero() || rtAt.Before(d.Deadline) {
			d.Deadline, d.DeadlineReason = rtAt, ReasonRuntime
		}
	}

	if tellWaiting {
		st.PressureTold = true
		d.Notices = append(d.Notices, Notice{Kind: NoticePressure, Text: n.pressure(now.Sub(st.LastActive), idleAt)})
	}
	if !in.Pressure {
		st.PressureTold = false
	}
	d.State = st
	return d
}

// observe folds the sample's activity into st and reports whether this
// sweep was active.
func observe(r Rules, st *State, s Sample) bool {
	prev := st.LastSampleAt
	busy := s.NoCPU
	if !s.NoCPU {
		// No judgement without a base, or when the clock or the counter
		// went backwards: the sample only becomes the next base.
		if !prev.IsZero() && s.At.After(prev) && s.CPU >= st.LastCPU && r.CPUIdleThreshold > 0 {
			pct := 100 * float64(s.CPU-st.LastCPU) / float64(s.At.Sub(prev))
			busy = pct >= r.CPUIdleThreshold
		}
		st.LastCPU, st.LastSampleAt = s.CPU, s.At
	}
	if r.GPUIdleThreshold > 0 {
		for _, u := range s.GPUUtil {
			if float64(u) >= r.GPUIdleThreshold {
				busy = true
			}
		}
	}
	var latest time.Time
	if busy {
		latest = s.At
	}
	for _, t := range []time.Time{s.LastInput, s.SessionStarted} {
		if !t.IsZero() && t.After(prev) {
			busy = true
		}
		latest = later(latest, t)
	}
	if latest.After(st.LastActive) {
		st.LastActive = latest
		resetIdle(st) // activity answers the idle warnings
	}
	return busy
}

func resetIdle(st *State) {
	st.idleWarnings().reset()
	st.IdleWarnedFor = time.Time{}
}

// idlePlan is the idle deadline and its warnings; false when the container
// is never stopped for idleness now.
func idlePlan(in Input, st State, s Sample, now time.Time) (schedule, bool) {
	t := in.effectiveIdle()
	if t <= 0 {
		return schedule{}, false
	}
	base := st.LastActive.Add(t)
	d := base
	if w := in.Rules.KeepAliveWindow; w > 0 && !s.KeepAlive.IsZero() {
		// A future mtime (touch -d) counts as now, not as a longer keep.
		d = later(d, earlier(s.KeepAlive, now).Add(w))
	}
	d = later(d, st.KeepUntil)
	if in.Pressure && in.HasGPU {
		d = earlier(d, base.Add(in.Rules.PressureKeepCap))
	}
	return idleSchedule(d, t), true
}

// runtimePlan is the runtime deadline and its warnings; false when there
// is no maximum runtime.
func runtimePlan(in Input, st State) (schedule, bool) {
	r := in.Rules.MaxRuntime
	if r <= 0 {
		return schedule{}, false
	}
	return runtimeSchedule(st.Started.Add(r), r), true
}

// keepAliveEvents records a .keep-alive window starting and any keep-alive
// (file or lease) ending. A file touched again within its window is no new
// event, so a script touching it every minute does not flood the events.
func keepAliveEvents(in Input, st *State, s Sample, now time.Time, d *Decision) {
	w := in.Rules.KeepAliveWindow
	fileOn := false
	if w > 0 && !s.KeepAlive.IsZero() {
		k := earlier(s.KeepAlive, now)
		fileOn = now.Sub(k) < w
		wasOn := !st.KeepAliveSeen.IsZero() && now.Sub(earlier(st.KeepAliveSeen, now)) < w
		if fileOn && !wasOn {
			d.Events = append(d.Events, Event{
				Type:     EventKeepaliveSet,
				Details:  fmt.Sprintf("/workspace/.keep-alive touched at %s: postpones an idle stop until %s", k.UTC().Format(time.RFC3339), k.Add(w).UTC().Format(time.RFC3339)),
				Duration: w,
			})
		}
	}
	st.KeepAliveSeen = s.KeepAlive
	on := fileOn || st.KeepUntil.After(now)
	if st.Kept && !on {
		d.Events = append(d.Events, Event{Type: EventKeepaliveExpired, Details: "keep-alive ended (.keep-alive window and container-keep lease)"})
	}
	st.Kept = on
}

func warningDetails(pct string, info bool, what string, stopAt time.Time) string {
	s := pct + " warning: " + what + ", stop at " + stopAt.UTC().Format(time.RFC3339)
	if info {
		s += " (exempt: not stopped)"
	}
	return s
}
