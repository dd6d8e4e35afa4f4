package lifecycle

import (
	"slices"
	"strings"
	"testing"
	"time"
)

func TestKeepLeases(t *testing.T) {
	in := gpuInput(DefaultRules())
	in.Project = "p"
	st := State{Started: t0, LastActive: t0}

	st, until, err := Keep(in, st, 4*time.Hour, t0)
	if err != nil || !until.Equal(t0.Add(4*time.Hour)) || st.KeepGranted != 4*time.Hour {
		t.Fatalf("first keep: %s, %v, granted %s", until, err, st.KeepGranted)
	}
	// Extending charges only the time added past the running lease.
	st, until, err = Keep(in, st, 4*time.Hour, t0.Add(time.Hour))
	if err != nil || !until.Equal(t0.Add(5*time.Hour)) || st.KeepGranted != 5*time.Hour {
		t.Fatalf("extension: %s, %v, granted %s", until, err, st.KeepGranted)
	}
	// A shorter lease changes and costs nothing.
	st2, until, err := Keep(in, st, 2*time.Hour, t0.Add(time.Hour))
	if err != nil || !until.Equal(t0.Add(5*time.Hour)) || st2 != st {
		t.Fatalf("shorter: %s, %v, %+v", until, err, st2)
	}
}

func TestKeepRefusals(t *testing.T) {
	base := State{Started: t0, LastActive: t0}
	for _, tc := range []struct {
		name string
		edit func(*Input, *State)
		d    time.Duration
		want string
	}{
		{"zero", nil, 0, "the keep duration must be positive, e.g. --for 4h"},
		{"too long", nil, 13 * time.Hour, "at most 12h per keep (asked for 13h); keep again later to extend"},
		{"turned off", func(in *Input, _ *State) { in.Rules.KeepMax = 0 }, time.Hour,
			"container-keep is turned off on this server; touch /workspace/.keep-alive instead"},
		{"never idle-stopped", func(in *Input, _ *State) { in.Rules.IdleTimeout = 0 }, time.Hour,
			"p is never stopped for being idle: nothing to keep"},
		{"no GPU, no-GPU timeout 0", func(in *Input, _ *State) { in.HasGPU, in.Rules.IdleTimeoutNoGPU = false, 0 }, time.Hour,
			"p is never stopped for being idle: nothing to keep"},
		{"runtime reached", func(_ *Input, st *State) { st.Started = t0.Add(-24 * time.Hour) }, time.Hour,
			"p reaches its maximum runtime of 24h before then: nothing to keep"},
		{"total used", func(_ *Input, st *State) { st.KeepGranted = 48 * time.Hour }, time.Hour,
			"p has used its keep total of 48h; ask an admin for an exemption"},
		{"total nearly used", func(_ *Input, st *State) { st.KeepGranted = 46 * time.Hour }, 4 * time.Hour,
			"p has 2h of its keep total of 48h left: use --for 2h or less"},
		{"total nearly used, lease running", func(_ *Input, st *State) {
			st.KeepGranted, st.KeepUntil = 46*time.Hour, t0.Add(time.Hour)
		}, 4 * time.Hour, "p has 2h of its keep total of 48h left: use --for 3h or less"},
		{"pressure, long idle", func(in *Input, st *State) { in.Pressure, st.LastActive = true, t0.Add(-2*time.Hour) }, time.Hour,
			"someone is waiting for a GPU: p cannot be kept longer now (at most 1h past its idle deadline)"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			in := gpuInput(DefaultRules())
			in.Project = "p"
			st := base
			if tc.edit != nil {
				tc.edit(&in, &st)
			}
			got, until, err := Keep(in, st, tc.d, t0)
			if err == nil || err.Error() != tc.want {
				t.Fatalf("err = %v\nwant %s", err, tc.want)
			}
			if got != st || !until.IsZero() {
				t.Errorf("a refusal changed the state or returned a time: %+v %s", got, until)
			}
		})
	}
}

func TestKeepCaps(t *testing.T) {
	for _, tc := range []struct {
		name string
		edit func(*Input, *State)
		want time.Duration // until, from t0
	}{
		{"runtime ends first", func(_ *Input, st *State) { st.Started = t0.Add(-22 * time.Hour) }, 2 * time.Hour},
		{"runtime-exempt", func(in *Input, st *State) { st.Started, in.Exempt.Runtime = t0.Add(-22*time.Hour), true }, 4 * time.Hour},
		{"pressure", func(in *Input, _ *State) { in.Pressure = true }, time.Hour + 15*time.Minute},
		{"pressure, no GPU", func(in *Input, _ *State) { in.Pressure, in.HasGPU = true, false }, 4 * time.Hour},
		{"no total", func(in *Input, st *State) { in.Rules.KeepTotal, st.KeepGranted = 0, 1000*time.Hour }, 4 * time.Hour},
		{"zero state", func(_ *Input, st *State) { *st = State{} }, 4 * time.Hour},
	} {
		in := gpuInput(DefaultRules())
		st := State{Started: t0, LastActive: t0}
		tc.edit(&in, &st)
		got, until, err := Keep(in, st, 4*time.Hour, t0)
		if err != nil || !until.Equal(t0.Add(tc.want)) || !got.KeepUntil.Equal(until) {
			t.Errorf("%s: until +%s (%v), want +%s", tc.name, until.Sub(t0), err, tc.want)
		}
	}
}

func TestKeepPostponesTheIdleStop(t *testing.T) {
	s := newSim(t, gpuInput(rules30m()))
	s.step(5 * time.Minute)
	st, _, err := Keep(s.in, s.st, time.Hour, s.now)
	if err != nil {
		t.Fatal(err)
	}
	s.st = st
	s.run(time.Minute, 3*time.Hour)
	if got, want := s.kinds(), []string{"idle_warning@45m", "idle_warning@55m"}; !slices.Equal(got, want) {
		t.Errorf("notices %v, want %v", got, want)
	}
	s.wantStop(StopIdle, time.Hour+5*time.Minute)
	if got := strings.Join(s.eventTypes(), " "); got != "container.idle_warning container.idle_warning container.keepalive_expired container.idle_stop" {
		t.Errorf("events %s", got)
	}
}
