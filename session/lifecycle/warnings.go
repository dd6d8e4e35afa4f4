package lifecycle

import "time"

// schedule is one kind's deadline and the times of its two warnings.
type schedule struct {
	deadline    time.Time
	lead        time.Duration // the last warning comes at least this long before a stop
	first, last time.Time
	pct         [2]string // what the warnings are called: "80 %", "95 %"
}

// Leads at real timeouts: the last idle warning 10 minutes before the stop,
// the last runtime warning 30 minutes; short (test) timeouts scale down.
const (
	idleLeadMax    = 10 * time.Minute
	runtimeLeadMax = 30 * time.Minute
)

// idleSchedule warns at 80 % and 95 % of t, but at least 2L and L before d.
func idleSchedule(d time.Time, t time.Duration) schedule {
	l := min(idleLeadMax, t/3)
	return schedule{
		deadline: d, lead: l,
		first: d.Add(-max(t/5, 2*l)),
		last:  d.Add(-max(t/20, l)),
		pct:   [2]string{"80 %", "95 %"},
	}
}

// runtimeSchedule warns at 75 % and 90 % of r, but at least 2L and L before d.
func runtimeSchedule(d time.Time, r time.Duration) schedule {
	l := min(runtimeLeadMax, r/3)
	return schedule{
		deadline: d, lead: l,
		first: d.Add(-max(r/4, 2*l)),
		last:  d.Add(-max(r/10, l)),
		pct:   [2]string{"75 %", "90 %"},
	}
}

// due is the warning level now calls for: only the latest one goes out when
// a sweep gap skipped the first.
func (s schedule) due(now time.Time) int {
	switch {
	case !now.Before(s.last):
		return 2
	case !now.Before(s.first):
		return 1
	}
	return 0
}

// stopAt is when the stop will happen: the deadline, or later when the
// last warning went out less than the lead before it.
func (s schedule) stopAt(level int, warnedAt time.Time) time.Time {
	if level >= 2 {
		return later(s.deadline, warnedAt.Add(s.lead))
	}
	return s.deadline
}

// canStop: the deadline has come and the last real (not informational)
// warning was delivered at least the lead ago. A clock that went back
// makes now-warnedAt negative, so it never stops anything.
func (s schedule) canStop(level int, info bool, warnedAt, now time.Time) bool {
	return level >= 2 && !info && !now.Before(s.deadline) && now.Sub(warnedAt) >= s.lead
}

// warnings is one kind's warning progress in State.
type warnings struct {
	level *int
	at    *time.Time
	info  *bool
}

func (w warnings) reset() {
	*w.level, *w.at, *w.info = 0, time.Time{}, false
}

func (st *State) idleWarnings() warnings {
	return warnings{&st.IdleWarned, &st.IdleWarnedAt, &st.IdleWarnedInfo}
}

func (st *State) runtimeWarnings() warnings {
	return warnings{&st.RuntimeWarned, &st.RuntimeWarnedAt, &st.RuntimeWarnedInfo}
}

func later(a, b time.Time) time.Time {
	if b.After(a) {
		return b
	}
	return a
}

func earlier(a, b time.Time) time.Time {
	if b.Before(a) {
		return b
	}
	return a
}
