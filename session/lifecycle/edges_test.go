package lifecycle

import (
	"slices"
	"testing"
	"time"
)

func TestStopAtExactlyTheDeadline(t *testing.T) {
	s := newSim(t, gpuInput(rules30m()))
	s.run(time.Minute, 29*time.Minute)
	s.step(time.Minute - time.Nanosecond)
	s.wantNoStop()
	s.step(time.Nanosecond)
	s.wantStop(StopIdle, 30*time.Minute)
}

// After a restart the gateway may come back long after a deadline: the
// last warning goes out first and the stop waits the lead.
func TestSampleGapLongerThanTheTimeout(t *testing.T) {
	s := newSim(t, gpuInput(rules30m()))
	s.cpuShare = 0.01 // 1 % of a core over the gap: idle
	s.step(2 * time.Hour)
	if got, want := s.kinds(), []string{"idle_warning@2h"}; !slices.Equal(got, want) {
		t.Errorf("notices %v, want %v", got, want)
	}
	wantContains(t, s.notices[0].n.Text, "idle for 2h", "stops at 14:10 UTC (in 10m)")
	if !s.last.Deadline.Equal(t0.Add(2*time.Hour + 10*time.Minute)) {
		t.Errorf("deadline %s", s.last.Deadline)
	}
	s.run(time.Minute, time.Hour)
	s.wantStop(StopIdle, 2*time.Hour+10*time.Minute)

	// Busy on average over the gap: activity at the sample, no warning.
	s = newSim(t, gpuInput(rules30m()))
	s.cpuShare = 0.25
	if d := s.step(2 * time.Hour); len(d.Notices) != 0 || !d.State.LastActive.Equal(s.now) {
		t.Errorf("busy gap: notices %v, last active %s", d.Notices, d.State.LastActive)
	}
}

func TestClockGoingBackwardsStopsNothing(t *testing.T) {
	s := newSim(t, gpuInput(rules30m()))
	s.cpuShare = 0.5
	s.run(time.Minute, 2*time.Minute)
	s.cpuShare = 0
	s.run(time.Minute, 20*time.Minute) // last warning at 22 m for 12:32
	if s.st.IdleWarned != 2 {
		t.Fatalf("warned %d", s.st.IdleWarned)
	}
	s.now = s.now.Add(-time.Hour) // 11:22
	for s.now.Before(t0.Add(31 * time.Minute)) {
		s.step(time.Minute)
		s.wantNoStop()
	}
	if len(s.notices) != 2 {
		t.Errorf("notices %v", s.kinds())
	}
	s.step(time.Minute) // the clock has caught up with the deadline
	s.wantStop(StopIdle, 32*time.Minute)
}

// A deadline reached while the clock is behind the last warning: no stop
// until the lead has passed on the clock that now runs.
func TestClockBehindTheLastWarning(t *testing.T) {
	r := DefaultRules()
	r.IdleTimeout, r.MaxRuntime = 0, time.Hour
	s := newSim(t, gpuInput(r))
	s.run(time.Minute, 59*time.Minute)
	st := s.st
	st.RuntimeWarnedAt = t0.Add(2 * time.Hour) // warned "in the future"
	d := Decide(s.in, st, Sample{At: t0.Add(61 * time.Minute)}, t0.Add(61*time.Minute))
	if d.Stop != nil {
		t.Fatalf("stopped: %s", d.Stop.Reason)
	}
	if !d.Deadline.Equal(t0.Add(2*time.Hour + 20*time.Minute)) {
		t.Errorf("deadline %s", d.Deadline)
	}
}

func TestCPUCounterGoingBackwardsIsNoJudgement(t *testing.T) {
	s := newSim(t, gpuInput(rules30m()))
	s.cpu = time.Hour
	s.step(time.Minute) // a big jump up is activity
	if !s.st.LastActive.Equal(s.now) {
		t.Fatalf("last active %s", s.st.LastActive)
	}
	s.cpu = 0 // a reset counter: rebase, not activity, not an error
	s.step(time.Minute)
	if !s.st.LastActive.Equal(t0.Add(time.Minute)) || s.st.LastCPU != 0 {
		t.Errorf("state %+v", s.st)
	}
	s.run(time.Minute, time.Hour)
	s.wantStop(StopIdle, 31*time.Minute)
}

func TestExemptGetsInformationAndNoStop(t *testing.T) {
	until := time.Date(2027, 1, 31, 0, 0, 0, 0, time.UTC)
	in := gpuInput(DefaultRules())
	in.Rules.MaxRuntime = 2 * time.Hour
	in.Exempt = Exemption{Idle: true, Runtime: true, Until: until, Reason: "thesis deadline"}
	s := newSim(t, in)
	s.run(time.Minute, 10*time.Hour)
	s.wantNoStop()
	if got, want := s.kinds(), []string{"idle_warning@10m", "idle_warning@20m", "runtime_warning@1h", "runtime_warning@1h30m"}; !slices.Equal(got, want) {
		t.Errorf("notices %v, want %v", got, want)
	}
	if got, want := s.notices[0].n.Text, "ds01: (info) my-thesis: idle for 10m (GPU, CPU and terminal unused); it would stop at 12:30 UTC (in 20m), but you are exempt from idle_timeout_h until 2027-01-31: thesis deadline"; got != want {
		t.Errorf("idle info\n got %s\nwant %s", got, want)
	}
	if got, want := s.notices[2].n.Text, "ds01: (info) my-thesis: reaches its maximum runtime of 2h at 14:00 UTC (in 1h), but you are exempt from max_runtime_h until 2027-01-31: thesis deadline; it keeps running"; got != want {
		t.Errorf("runtime info\n got %s\nwant %s", got, want)
	}
	if !s.last.Deadline.IsZero() {
		t.Errorf("deadline %s for an exempt container", s.last.Deadline)
	}
	if e := s.events[0]; e.Details != "80 % warning: idle for 10m of 30m, stop at 2026-12-01T12:30:00Z (exempt: not stopped)" {
		t.Errorf("event %+v", e)
	}

	// The exemption ends: informational warnings do not count, so real
	// ones come first and each stop waits its lead.
	s.in.Exempt = Exemption{}
	s.run(time.Minute, 2*time.Hour)
	if got := s.kinds()[4:]; !slices.Equal(got, []string{"idle_warning@10h1m", "runtime_warning@10h1m"}) {
		t.Errorf("notices after the exemption %v", got)
	}
	s.wantStop(StopIdle, 10*time.Hour+11*time.Minute)
}

func TestExemptFromIdleOnly(t *testing.T) {
	in := gpuInput(DefaultRules())
	in.Exempt = Exemption{Idle: true}
	s := newSim(t, in)
	s.run(time.Minute, time.Minute)
	if s.last.DeadlineReason != ReasonRuntime || !s.last.Deadline.Equal(t0.Add(24*time.Hour)) {
		t.Errorf("deadline %s (%s)", s.last.Deadline, s.last.DeadlineReason)
	}
	s.run(10*time.Minute, 30*time.Hour)
	s.wantStop(StopRuntime, 24*time.Hour+time.Minute)
	wantContains(t, s.notices[0].n.Text, "(info)", "exempt from idle_timeout_h")
}
