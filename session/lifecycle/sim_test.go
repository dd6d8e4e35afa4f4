package lifecycle

import (
	"strings"
	"testing"
	"time"
)

// t0 is the fake clock's start; tests move time by hand.
var t0 = time.Date(2026, 12, 1, 12, 0, 0, 0, time.UTC)

// sim drives one container through sweeps on a fake clock.
type sim struct {
	t   *testing.T
	in  Input
	st  State
	now time.Time

	cpu      time.Duration // cumulative
	cpuShare float64       // share of one core used from now on
	gpu      []int
	input    time.Time
	keep     time.Time // .keep-alive mtime
	session  time.Time

	notices []timed
	events  []Event
	stop    *Stop
	stopAt  time.Time
	last    Decision
}

type timed struct {
	at time.Time
	n  Notice
}

func newSim(t *testing.T, in Input) *sim {
	t.Helper()
	if in.Project == "" {
		in.Project = "my-thesis"
	}
	s := &sim{t: t, in: in, now: t0}
	s.step(0) // the container starts
	return s
}

func gpuInput(r Rules) Input { return Input{Rules: r, HasGPU: true, Attached: 1} }

// step advances the clock by dt and runs one sweep.
func (s *sim) step(dt time.Duration) Decision {
	s.t.Helper()
	s.now = s.now.Add(dt)
	s.cpu += time.Duration(float64(dt) * s.cpuShare)
	return s.sweep(Sample{At: s.now, CPU: s.cpu, GPUUtil: s.gpu, LastInput: s.input, KeepAlive: s.keep, SessionStarted: s.session})
}

func (s *sim) sweep(sample Sample) Decision {
	s.t.Helper()
	if s.stop != nil {
		s.t.Fatalf("sweep after the stop at %s", s.stopAt)
	}
	d := Decide(s.in, s.st, sample, s.now)
	s.st, s.last = d.State, d
	for _, n := range d.Notices {
		if !strings.HasPrefix(n.Text, "ds01: ") || strings.Contains(n.Text, "\n") {
			s.t.Errorf("notice not one ds01: line: %q", n.Text)
		}
		s.notices = append(s.notices, timed{s.now, n})
	}
	s.events = append(s.events, d.Events...)
	if d.Stop != nil {
		s.stop, s.stopAt = d.Stop, s.now
	}
	return d
}

// run sweeps every interval until a stop or until limit has passed.
func (s *sim) run(interval, limit time.Duration) {
	s.t.Helper()
	end := s.now.Add(limit)
	for s.stop == nil && s.now.Before(end) {
		s.step(interval)
	}
}

func (s *sim) kinds() []string {
	var out []string
	for _, n := range s.notices {
		out = append(out, n.n.Kind+"@"+ShortDuration(n.at.Sub(t0)))
	}
	return out
}

func (s *sim) eventTypes() []string {
	var out []string
	for _, e := range s.events {
		out = append(out, e.Type)
	}
	return out
}

func (s *sim) wantStop(kind string, at time.Duration) {
	s.t.Helper()
	if s.stop == nil {
		s.t.Fatalf("no stop; notices %v", s.kinds())
	}
	if s.stop.Kind != kind || !s.stopAt.Equal(t0.Add(at)) {
		s.t.Fatalf("stop %s at +%s, want %s at +%s", s.stop.Kind, s.stopAt.Sub(t0), kind, at)
	}
}

func (s *sim) wantNoStop() {
	s.t.Helper()
	if s.stop != nil {
		s.t.Fatalf("stopped (%s) at +%s: %s", s.stop.Kind, s.stopAt.Sub(t0), s.stop.Text)
	}
}

func wantContains(t *testing.T, text string, parts ...string) {
	t.Helper()
	for _, p := range parts {
		if !strings.Contains(text, p) {
			t.Errorf("%q\n  does not contain %q", text, p)
		}
	}
}
