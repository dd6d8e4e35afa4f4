package lifecycle

import (
	"slices"
	"testing"
	"time"
)

func TestPressureHalvesAndTellsOnce(t *testing.T) {
	in := gpuInput(rules30m())
	in.Pressure = true
	s := newSim(t, in)
	s.run(time.Minute, time.Hour)
	if got, want := s.kinds(), []string{"pressure@1m", "idle_warning@5m", "idle_warning@10m"}; !slices.Equal(got, want) {
		t.Errorf("notices %v, want %v", got, want)
	}
	s.wantStop(StopIdle, 15*time.Minute)
	if got, want := s.notices[0].n.Text, "ds01: my-thesis: someone is waiting for a GPU; your container is idle and stops at 12:15 UTC (in 14m) unless used"; got != want {
		t.Errorf("pressure notice\n got %s\nwant %s", got, want)
	}
	if s.stop.Reason != "idle for 15m (timeout 15m)" {
		t.Errorf("reason %q", s.stop.Reason)
	}
}

func TestPressureArrivingLateWarnsAgainBeforeTheEarlierStop(t *testing.T) {
	s := newSim(t, gpuInput(rules30m()))
	s.run(time.Minute, 21*time.Minute) // both warnings for 12:30 are out
	s.in.Pressure = true
	s.run(time.Minute, time.Hour)
	// The deadline moved to 12:15, already past: a fresh last warning,
	// which says that someone waits, and the stop 5 m (the lead) later.
	if got, want := s.kinds(), []string{"idle_warning@10m", "idle_warning@20m", "idle_warning@22m"}; !slices.Equal(got, want) {
		t.Errorf("notices %v, want %v", got, want)
	}
	wantContains(t, s.notices[2].n.Text, "idle for 22m", "while someone is waiting for a GPU", "stops at 12:27 UTC (in 5m)")
	s.wantStop(StopIdle, 27*time.Minute)
}

func TestPressureEpisodes(t *testing.T) {
	in := gpuInput(DefaultRules())
	in.Rules.IdleTimeout = 10 * time.Hour
	in.Pressure = true
	s := newSim(t, in)
	s.step(time.Minute)
	s.step(time.Minute)
	s.in.Pressure = false
	s.step(time.Minute)
	s.in.Pressure = true
	s.step(time.Minute)
	s.step(time.Minute)
	if got, want := s.kinds(), []string{"pressure@1m", "pressure@4m"}; !slices.Equal(got, want) {
		t.Errorf("notices %v, want %v", got, want)
	}

	// A busy holder is not told.
	s = newSim(t, in)
	s.gpu = []int{90}
	s.run(time.Minute, time.Hour)
	if len(s.notices) != 0 {
		t.Errorf("busy holder told: %v", s.kinds())
	}
}

func TestPressureWithoutAnIdleStop(t *testing.T) {
	in := gpuInput(rules30m())
	in.Pressure = true
	in.Rules.IdleTimeout = 0
	s := newSim(t, in)
	s.run(time.Minute, 5*time.Minute)
	if got, want := s.kinds(), []string{"pressure@1m"}; !slices.Equal(got, want) {
		t.Fatalf("notices %v, want %v", got, want)
	}
	if got, want := s.notices[0].n.Text, "ds01: my-thesis: someone is waiting for a GPU; your container has been idle for 1m; please end it if you no longer need it"; got != want {
		t.Errorf("got %s\nwant %s", got, want)
	}

	in = gpuInput(rules30m())
	in.Pressure = true
	in.Exempt = Exemption{Idle: true}
	s = newSim(t, in)
	s.run(time.Minute, 5*time.Minute)
	wantContains(t, s.notices[0].n.Text, "ds01: (info) my-thesis: someone is waiting for a GPU", "please end it")
}

func TestPressureOnlyConcernsGPUContainers(t *testing.T) {
	r := rules30m()
	r.IdleTimeoutNoGPU = 30 * time.Minute
	s := newSim(t, Input{Rules: r, Detached: true, Pressure: true})
	s.run(time.Minute, time.Hour)
	s.wantStop(StopIdle, 30*time.Minute)
	for _, n := range s.notices {
		if n.n.Kind == NoticePressure {
			t.Errorf("no-GPU container told: %s", n.n.Text)
		}
	}
}

func TestPressureFloor(t *testing.T) {
	for _, tc := range []struct{ timeout, floor, want time.Duration }{
		{30 * time.Minute, 10 * time.Minute, 15 * time.Minute},
		{16 * time.Minute, 10 * time.Minute, 10 * time.Minute}, // the floor
		{8 * time.Minute, 10 * time.Minute, 8 * time.Minute},   // never below a timeout under the floor...
		{20 * time.Second, 10 * time.Minute, 20 * time.Second}, // ...so short test timeouts need a short floor
		{20 * time.Second, 5 * time.Second, 10 * time.Second},
		{0, 10 * time.Minute, 0}, // never stays never
	} {
		in := gpuInput(DefaultRules())
		in.Rules.IdleTimeout, in.Rules.PressureIdleFloor, in.Pressure = tc.timeout, tc.floor, true
		if got := in.effectiveIdle(); got != tc.want {
			t.Errorf("timeout %s floor %s: %s, want %s", tc.timeout, tc.floor, got, tc.want)
		}
	}
}

func TestPressureCapsKeepAlive(t *testing.T) {
	for _, tc := range []struct {
		pressure bool
		keepCap  time.Duration
		want     time.Duration
	}{
		{false, time.Hour, 24 * time.Hour},
		{true, time.Hour, 15*time.Minute + time.Hour},
		{true, 0, 15 * time.Minute},
	} {
		in := gpuInput(rules30m())
		in.Pressure, in.Rules.PressureKeepCap = tc.pressure, tc.keepCap
		s := newSim(t, in)
		s.keep = t0
		s.st.KeepUntil = t0.Add(3 * time.Hour) // a lease, capped the same way
		if d := s.step(time.Minute); !d.Deadline.Equal(t0.Add(tc.want)) {
			t.Errorf("pressure %v cap %s: deadline +%s, want +%s", tc.pressure, tc.keepCap, d.Deadline.Sub(t0), tc.want)
		}
	}
}
