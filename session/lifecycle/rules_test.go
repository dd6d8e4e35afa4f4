package lifecycle

import (
	"testing"
	"time"

	"github.com/ds01/ds01-gateway/session/gpu"
)

func TestRulesFromLimits(t *testing.T) {
	block := DefaultRules()
	block.IdleTimeout = 20 * time.Second

	if got := RulesFrom(block, gpu.Limits{}); got != block {
		t.Errorf("no file values: %+v, want the block %+v", got, block)
	}

	got := RulesFrom(block, gpu.Limits{
		IdleTimeout:      gpu.Opt[time.Duration]{Set: true, V: time.Hour},
		MaxRuntime:       gpu.Opt[time.Duration]{Set: true, Never: true},
		GPUHoldAfterStop: gpu.Opt[time.Duration]{Set: true, V: 0},
		GPUIdleThreshold: gpu.Opt[float64]{Set: true, V: 10},
		CPUIdleThreshold: gpu.Opt[float64]{Set: true, V: 0.5},
	})
	want := block
	want.IdleTimeout, want.MaxRuntime, want.GPUHoldAfterStop = time.Hour, 0, 0
	want.GPUIdleThreshold, want.CPUIdleThreshold = 10, 0.5
	if got != want {
		t.Errorf("file values: %+v\nwant %+v", got, want)
	}

	// End to end from a DS01 file: the user's null beats the group's value.
	p, err := gpu.ParsePolicy([]byte(`
defaults: {idle_timeout_h: 0.5, max_runtime_h: 24}
groups: {researcher: {max_runtime_h: 48}}
user_overrides: {carol: {idle_timeout_h: null}}
`), "")
	if err != nil {
		t.Fatal(err)
	}
	l, _ := p.For("carol", "researcher")
	r := RulesFrom(block, l)
	if r.IdleTimeout != 0 || r.MaxRuntime != 48*time.Hour || r.GPUHoldAfterStop != block.GPUHoldAfterStop {
		t.Errorf("carol: %+v", r)
	}
}

func TestShortDuration(t *testing.T) {
	for d, want := range map[time.Duration]string{
		-time.Second:                         "0s",
		0:                                    "0s",
		400 * time.Millisecond:               "0s",
		45 * time.Second:                     "45s",
		6*time.Second + 600*time.Millisecond: "7s",
		90 * time.Second:                     "1m30s",
		6*time.Minute + 20*time.Second:       "6m",
		6*time.Minute + 40*time.Second:       "7m",
		time.Hour:                            "1h",
		90 * time.Minute:                     "1h30m",
		24 * time.Hour:                       "24h",
		72*time.Hour + 29*time.Second:        "72h",
	} {
		if got := ShortDuration(d); got != want {
			t.Errorf("ShortDuration(%s) = %q, want %q", d, got, want)
		}
	}
}

func TestWhenShowsTheDateOnlyForAnotherDay(t *testing.T) {
	n := notes{now: time.Date(2026, 12, 1, 22, 0, 0, 0, time.UTC)}
	if got := n.when(n.now.Add(6 * time.Minute)); got != "22:06 UTC (in 6m)" {
		t.Errorf("same day: %q", got)
	}
	if got := n.when(n.now.Add(6 * time.Hour)); got != "Dec 2 04:00 UTC (in 6h)" {
		t.Errorf("next day: %q", got)
	}
	// Times are shown in UTC whatever zone the caller's clock is in.
	cet := time.FixedZone("CET", 3600)
	n.now = n.now.In(cet)
	if got := n.when(n.now.Add(time.Hour)); got != "23:00 UTC (in 1h)" {
		t.Errorf("zone: %q", got)
	}
}
