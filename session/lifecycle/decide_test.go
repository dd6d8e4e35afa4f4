package lifecycle

import (
	"encoding/json"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"
)

// rules30m is a GPU rule set with the 30 m idle timeout and no maximum
// runtime, so that idle tests see idle stops only.
func rules30m() Rules {
	r := DefaultRules()
	r.MaxRuntime = 0
	return r
}

func TestIdleGPUContainerWarnedTwiceThenStopped(t *testing.T) {
	s := newSim(t, gpuInput(rules30m()))
	if d := s.last; !d.Deadline.Equal(t0.Add(30*time.Minute)) || d.DeadlineReason != ReasonIdle || !d.IdleSince.Equal(t0) {
		t.Errorf("at start: deadline %s (%s), idle since %s", d.Deadline, d.DeadlineReason, d.IdleSince)
	}
	s.run(time.Minute, 2*time.Hour)
	// At 30 m the leads win over 80 %/95 %: the warnings come 20 m and
	// 10 m before the stop.
	if got, want := s.kinds(), []string{"idle_warning@10m", "idle_warning@20m"}; !slices.Equal(got, want) {
		t.Errorf("notices %v, want %v", got, want)
	}
	s.wantStop(StopIdle, 30*time.Minute)
	if got, want := s.notices[0].n.Text, "ds01: my-thesis: idle for 10m (GPU, CPU and terminal unused); it stops at 12:30 UTC (in 20m) unless used. Save checkpoints to /workspace; to keep it: touch /workspace/.keep-alive or container-keep my-thesis"; got != want {
		t.Errorf("first warning\n got %s\nwant %s", got, want)
	}
	wantContains(t, s.notices[1].n.Text, "idle for 20m", "12:30 UTC (in 10m)")
	if got, want := s.stop.Text, "ds01: my-thesis: stopped: idle for 30m (GPU, CPU and terminal unused). Your workspace is kept; connect again for a fresh container. Next time touch /workspace/.keep-alive or run container-keep my-thesis to keep an idle container"; got != want {
		t.Errorf("stop text\n got %s\nwant %s", got, want)
	}
	if s.stop.Reason != "idle for 30m (timeout 30m)" {
		t.Errorf("stop reason %q", s.stop.Reason)
	}
	if got, want := s.eventTypes(), []string{EventIdleWarning, EventIdleWarning, EventIdleStop}; !slices.Equal(got, want) {
		t.Errorf("events %v, want %v", got, want)
	}
	if e := s.events[0]; e.Duration != 10*time.Minute || e.Details != "80 % warning: idle for 10m of 30m, stop at 2026-12-01T12:30:00Z" {
		t.Errorf("warning event %+v", e)
	}
	if e := s.events[2]; e.Duration != 30*time.Minute {
		t.Errorf("stop event %+v", e)
	}
}

func TestKeepHintInNotices(t *testing.T) {
	in := gpuInput(rules30m())
	in.KeepHint = "ssh ds01@gpu1 container-keep my-thesis"
	s := newSim(t, in)
	s.run(time.Minute, time.Hour)
	wantContains(t, s.notices[0].n.Text, "touch /workspace/.keep-alive or ssh ds01@gpu1 container-keep my-thesis")
	wantContains(t, s.stop.Text, "run ssh ds01@gpu1 container-keep my-thesis")
}

// Whatever the timeout and the sweep interval: warnings in order, the last
// at least the lead before the stop, the stop not before the deadline and
// not much after it.
func TestWarningsAlwaysComeInTime(t *testing.T) {
	for _, tc := range []struct {
		timeout, interval time.Duration
	}{
		{20 * time.Second, time.Second}, {20 * time.Second, 2 * time.Second}, {20 * time.Second, 7 * time.Second},
		{time.Minute, 2 * time.Second}, {30 * time.Minute, time.Minute}, {30 * time.Minute, 7 * time.Minute},
		{2 * time.Hour, time.Minute}, {24 * time.Hour, 5 * time.Minute}, {24 * time.Hour, time.Hour},
	} {
		for _, kind := range []string{StopIdle, StopRuntime} {
			t.Run(fmt.Sprintf("%s/%s/%s", kind, tc.timeout, tc.interval), func(t *testing.T) {
				r := DefaultRules()
				sched := idleSchedule(t0.Add(tc.timeout), tc.timeout)
				if kind == StopIdle {
					r.IdleTimeout, r.MaxRuntime = tc.timeout, 0
				} else {
					r.IdleTimeout, r.MaxRuntime = 0, tc.timeout
					sched = runtimeSchedule(t0.Add(tc.timeout), tc.timeout)
				}
				s := newSim(t, gpuInput(r))
				s.run(tc.interval, 3*tc.timeout)
				s.wantStopKind(kind)
				if len(s.notices) == 0 || len(s.notices) > 2 {
					t.Fatalf("notices %v", s.kinds())
				}
				if tc.interval <= sched.last.Sub(sched.first) && len(s.notices) != 2 {
					t.Errorf("want both warnings, got %v", s.kinds())
				}
				last := s.notices[len(s.notices)-1].at
				if gap := s.stopAt.Sub(last); gap < sched.lead {
					t.Errorf("last warning %s before the stop, want >= %s", gap, sched.lead)
				}
				if s.stopAt.Before(t0.Add(tc.timeout)) || s.stopAt.After(t0.Add(tc.timeout+sched.lead+tc.interval)) {
					t.Errorf("stop at +%s, timeout %s", s.stopAt.Sub(t0), tc.timeout)
				}
				if tc.timeout >= 30*time.Minute && kind == StopIdle && sched.lead != 10*time.Minute ||
					tc.timeout >= 2*time.Hour && kind == StopRuntime && sched.lead != 30*time.Minute {
					t.Errorf("lead %s at a real timeout", sched.lead)
				}
			})
		}
	}
}

func (s *sim) wantStopKind(kind string) {
	s.t.Helper()
	if s.stop == nil || s.stop.Kind != kind {
		s.t.Fatalf("stop %+v, want %s", s.stop, kind)
	}
}

func TestCPUThresholdIsPercentOfOneCore(t *testing.T) {
	for _, tc := range []struct {
		share     float64
		threshold float64
		stopped   bool
	}{
		{0.019, 2, true},  // 1.9 % of a core: idle
		{0.021, 2, false}, // 2.1 %: busy
		{1, 150, true},    // one full core under a 1.5-core threshold
		{2, 150, false},   // two cores
		{1, 0, true},      // threshold 0: CPU is ignored
	} {
		r := rules30m()
		r.CPUIdleThreshold = tc.threshold
		s := newSim(t, gpuInput(r))
		s.cpuShare = tc.share
		s.run(time.Minute, 3*time.Hour)
		if (s.stop != nil) != tc.stopped {
			t.Errorf("share %v threshold %v: stopped %v, want %v", tc.share, tc.threshold, s.stop != nil, tc.stopped)
		}
	}
}

func TestGPUThresholdAnySlot(t *testing.T) {
	for _, tc := range []struct {
		util      []int
		threshold float64
		stopped   bool
	}{
		{[]int{4, 4}, 5, true},
		{[]int{0, 5}, 5, false}, // one busy slot keeps it
		{[]int{80}, 5, false},
		{nil, 5, true},
		{[]int{100}, 0, true}, // threshold 0: GPUs are ignored
	} {
		r := rules30m()
		r.GPUIdleThreshold = tc.threshold
		s := newSim(t, gpuInput(r))
		s.gpu = tc.util
		s.run(time.Minute, 3*time.Hour)
		if (s.stop != nil) != tc.stopped {
			t.Errorf("util %v threshold %v: stopped %v, want %v", tc.util, tc.threshold, s.stop != nil, tc.stopped)
		}
	}
}

func TestInputAndNewSessionsResetIdleWarnings(t *testing.T) {
	for _, which := range []string{"input", "session"} {
		t.Run(which, func(t *testing.T) {
			s := newSim(t, gpuInput(rules30m()))
			s.run(time.Minute, 15*time.Minute)   // warned at 10 m
			typed := s.now.Add(20 * time.Second) // between two sweeps
			if which == "input" {
				s.input = typed
			} else {
				s.session = typed
			}
			d := s.step(time.Minute)
			if !d.IdleSince.IsZero() || s.st.IdleWarned != 0 {
				t.Errorf("after activity: idle since %s, warned %d", d.IdleSince, s.st.IdleWarned)
			}
			if !d.Deadline.Equal(typed.Add(30 * time.Minute)) {
				t.Errorf("deadline %s, want %s", d.Deadline, typed.Add(30*time.Minute))
			}
			s.run(time.Minute, 2*time.Hour)
			// The same input time again is not new activity.
			if got, want := s.kinds(), []string{"idle_warning@10m", "idle_warning@26m", "idle_warning@36m"}; !slices.Equal(got, want) {
				t.Errorf("notices %v, want %v", got, want)
			}
			s.wantStop(StopIdle, 46*time.Minute)
		})
	}
}

func TestOpenConnectionsAndProcessesAreNotActivity(t *testing.T) {
	in := gpuInput(rules30m())
	in.Attached = 3
	s := newSim(t, in)
	s.run(time.Minute, time.Hour)
	s.wantStop(StopIdle, 30*time.Minute)
}

func TestNoCPUReadingCountsAsActive(t *testing.T) {
	s := newSim(t, gpuInput(rules30m()))
	for range 90 {
		s.now = s.now.Add(time.Minute)
		s.sweep(Sample{At: s.now, NoCPU: true})
	}
	s.wantNoStop()
	if len(s.notices) != 0 {
		t.Errorf("notices %v", s.kinds())
	}
}

func TestNoGPUContainers(t *testing.T) {
	r := rules30m()
	t.Run("attached: never idle-stopped", func(t *testing.T) {
		s := newSim(t, Input{Rules: r, Attached: 1})
		s.run(10*time.Minute, 72*time.Hour)
		s.wantNoStop()
		if len(s.notices) != 0 || !s.last.Deadline.IsZero() {
			t.Errorf("notices %v, deadline %s", s.kinds(), s.last.Deadline)
		}
	})
	t.Run("detached: the no-GPU timeout, 80 % and 95 %", func(t *testing.T) {
		s := newSim(t, Input{Rules: r, Detached: true})
		s.run(6*time.Minute, 48*time.Hour)
		if got, want := s.kinds(), []string{"idle_warning@19h12m", "idle_warning@22h48m"}; !slices.Equal(got, want) {
			t.Errorf("notices %v, want %v", got, want)
		}
		s.wantStop(StopIdle, 24*time.Hour)
		wantContains(t, s.notices[0].n.Text, "(CPU and terminal unused)", "stops at 12:00 UTC (in 4h48m)")
	})
	t.Run("detaching after a long idle attach", func(t *testing.T) {
		s := newSim(t, Input{Rules: r, Attached: 1})
		s.run(time.Hour, 30*time.Hour)
		s.in.Attached, s.in.Detached = 0, true
		s.run(time.Minute, time.Hour)
		// The deadline passed long ago, but the stop waits for a warning.
		if got, want := s.kinds(), []string{"idle_warning@30h1m"}; !slices.Equal(got, want) {
			t.Errorf("notices %v, want %v", got, want)
		}
		wantContains(t, s.notices[0].n.Text, "idle for 30h1m", "(in 10m)")
		s.wantStop(StopIdle, 30*time.Hour+11*time.Minute)
	})
	t.Run("no-GPU timeout 0: never", func(t *testing.T) {
		r := r
		r.IdleTimeoutNoGPU = 0
		s := newSim(t, Input{Rules: r, Detached: true})
		s.run(time.Hour, 100*time.Hour)
		s.wantNoStop()
	})
}

func TestMaxRuntimeWarnsAndStopsWhateverItDoes(t *testing.T) {
	r := DefaultRules()
	s := newSim(t, gpuInput(r))
	s.cpuShare = 1
	for s.stop == nil && s.now.Before(t0.Add(30*time.Hour)) {
		if s.now.Equal(t0.Add(22 * time.Hour)) {
			s.input = s.now // activity never resets runtime warnings
		}
		s.step(6 * time.Minute)
	}
	if got, want := s.kinds(), []string{"runtime_warning@18h", "runtime_warning@21h36m"}; !slices.Equal(got, want) {
		t.Errorf("notices %v, want %v", got, want)
	}
	s.wantStop(StopRuntime, 24*time.Hour)
	if got, want := s.notices[0].n.Text, "ds01: my-thesis: reaches its maximum runtime of 24h at 12:00 UTC (in 6h); it stops then whatever it does. Save checkpoints to /workspace; for longer runs ask an admin for an exemption"; got != want {
		t.Errorf("runtime warning\n got %s\nwant %s", got, want)
	}
	wantContains(t, s.stop.Text, "stopped: maximum runtime 24h reached", "exemption")
	if s.stop.Reason != "maximum runtime 24h reached (ran 24h)" {
		t.Errorf("reason %q", s.stop.Reason)
	}
	if got := s.eventTypes(); !slices.Equal(got, []string{EventRuntimeWarning, EventRuntimeWarning, EventRuntimeStop}) {
		t.Errorf("events %v", got)
	}
}

func TestRuntimeStopWinsWhenBothAreDue(t *testing.T) {
	r := DefaultRules()
	r.IdleTimeout, r.MaxRuntime = time.Hour, time.Hour
	s := newSim(t, gpuInput(r))
	s.run(time.Minute, 2*time.Hour)
	s.wantStop(StopRuntime, time.Hour)
	if len(s.notices) != 4 {
		t.Errorf("notices %v, want two of each", s.kinds())
	}
}

func TestDeadlineReportsTheNextStop(t *testing.T) {
	r := DefaultRules()
	r.MaxRuntime = 20 * time.Minute
	s := newSim(t, gpuInput(r))
	if !s.last.Deadline.Equal(t0.Add(20*time.Minute)) || s.last.DeadlineReason != ReasonRuntime {
		t.Errorf("deadline %s (%s)", s.last.Deadline, s.last.DeadlineReason)
	}
	r.MaxRuntime = 24 * time.Hour
	s = newSim(t, gpuInput(r))
	s.cpuShare = 1
	d := s.step(time.Minute)
	if !d.Deadline.Equal(s.now.Add(30*time.Minute)) || d.DeadlineReason != ReasonIdle || !d.IdleSince.IsZero() {
		t.Errorf("busy: deadline %s (%s), idle since %s", d.Deadline, d.DeadlineReason, d.IdleSince)
	}
	s.cpuShare = 0
	d = s.step(time.Minute)
	if !d.IdleSince.Equal(s.now.Add(-time.Minute)) {
		t.Errorf("idle since %s, want the last busy sweep", d.IdleSince)
	}
}

func TestKeepAliveFile(t *testing.T) {
	r := rules30m()
	s := newSim(t, gpuInput(r))
	s.step(5 * time.Minute)
	s.keep = s.now // touch /workspace/.keep-alive
	d := s.step(5 * time.Minute)
	if want := t0.Add(5*time.Minute + 24*time.Hour); !d.Deadline.Equal(want) {
		t.Errorf("deadline %s, want %s", d.Deadline, want)
	}
	s.step(5 * time.Minute)
	s.keep = s.now // touched again within the window: no new event
	s.run(5*time.Minute, 48*time.Hour)
	s.wantStop(StopIdle, 24*time.Hour+15*time.Minute)
	if got, want := s.kinds(), []string{"idle_warning@23h55m", "idle_warning@24h5m"}; !slices.Equal(got, want) {
		t.Errorf("notices %v, want %v", got, want)
	}
	if got, want := s.eventTypes(), []string{EventKeepaliveSet, EventIdleWarning, EventIdleWarning, EventKeepaliveExpired, EventIdleStop}; !slices.Equal(got, want) {
		t.Errorf("events %v, want %v", got, want)
	}
}

func TestKeepAliveCannotBeatMaxRuntime(t *testing.T) {
	r := DefaultRules()
	r.MaxRuntime = 2 * time.Hour
	s := newSim(t, gpuInput(r))
	s.keep = t0
	s.run(5*time.Minute, 10*time.Hour)
	s.wantStop(StopRuntime, 2*time.Hour)
	if got, want := s.kinds(), []string{"runtime_warning@1h", "runtime_warning@1h30m"}; !slices.Equal(got, want) {
		t.Errorf("notices %v, want %v", got, want)
	}
}

// A hostile mtime far in the future counts as now: it keeps the container
// only as long as a touch every sweep would, and logs one event.
func TestKeepAliveFutureMtime(t *testing.T) {
	s := newSim(t, gpuInput(rules30m()))
	s.keep = t0.Add(10000 * time.Hour)
	d := s.step(time.Hour)
	if !d.Deadline.Equal(s.now.Add(24 * time.Hour)) {
		t.Errorf("deadline %s, want now+24h", d.Deadline)
	}
	s.run(time.Hour, 48*time.Hour)
	if got := s.eventTypes(); !slices.Equal(got, []string{EventKeepaliveSet}) {
		t.Errorf("events %v", got)
	}
	r := DefaultRules()
	r.MaxRuntime = 3 * time.Hour
	s = newSim(t, gpuInput(r))
	s.keep = t0.Add(10000 * time.Hour)
	s.run(time.Minute, 10*time.Hour)
	s.wantStop(StopRuntime, 3*time.Hour)
}

func TestKeepAliveWindowZeroIgnoresTheFile(t *testing.T) {
	r := rules30m()
	r.KeepAliveWindow = 0
	s := newSim(t, gpuInput(r))
	s.keep = t0
	s.run(time.Minute, time.Hour)
	s.wantStop(StopIdle, 30*time.Minute)
}

func TestStateSurvivesJSON(t *testing.T) {
	a := newSim(t, gpuInput(DefaultRules()))
	b := newSim(t, gpuInput(DefaultRules()))
	a.keep, b.keep = t0, t0
	for range 24*12 + 20 {
		a.step(5 * time.Minute)
		raw, err := json.Marshal(b.st)
		if err != nil {
			t.Fatal(err)
		}
		var st State
		if err := json.Unmarshal(raw, &st); err != nil {
			t.Fatal(err)
		}
		b.st = st
		b.step(5 * time.Minute)
		if a.stop != nil {
			break
		}
	}
	if !slices.Equal(a.kinds(), b.kinds()) || !slices.Equal(a.eventTypes(), b.eventTypes()) || (a.stop == nil) != (b.stop == nil) {
		t.Errorf("through JSON: %v %v, directly: %v %v", b.kinds(), b.eventTypes(), a.kinds(), a.eventTypes())
	}
	if a.stop == nil {
		t.Errorf("no stop in 25h")
	}
	raw, _ := json.Marshal(a.st)
	for _, key := range []string{`"started"`, `"last_active"`, `"runtime_warned"`} {
		if !strings.Contains(string(raw), key) {
			t.Errorf("state JSON %s lacks %s", raw, key)
		}
	}
}

func TestZeroStateStartsNow(t *testing.T) {
	d := Decide(gpuInput(DefaultRules()), State{}, Sample{}, t0)
	if !d.State.Started.Equal(t0) || !d.State.LastActive.Equal(t0) || !d.State.LastSampleAt.Equal(t0) {
		t.Errorf("state %+v", d.State)
	}
	// A persisted start is kept: a container adopted after a restart keeps
	// its runtime deadline.
	st := State{Started: t0.Add(-23 * time.Hour), LastActive: t0}
	d = Decide(gpuInput(DefaultRules()), st, Sample{At: t0}, t0)
	if !d.Deadline.Equal(t0.Add(30*time.Minute)) || d.DeadlineReason != ReasonIdle {
		t.Errorf("deadline %s (%s)", d.Deadline, d.DeadlineReason)
	}
	// Both runtime warnings are past: only the last goes out, and the stop
	// still comes at the deadline since it is 1 h away (lead 30 m).
	if len(d.Notices) != 1 || d.Notices[0].Kind != NoticeRuntime || d.State.RuntimeWarned != 2 {
		t.Errorf("notices %+v", d.Notices)
	}
}
