package session

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/ds01/ds01-gateway/session/lifecycle"
	"github.com/ds01/ds01-gateway/session/runtime"
	"github.com/ds01/ds01-gateway/store"
)

// memSampler stands in for the cgroup sampler: each container's CPU time
// and user processes are what the test says.
type memSampler struct {
	mu         sync.Mutex
	procs      map[string]int
	cpu        map[string]time.Duration
	terminated []string
}

func newMemSampler() *memSampler {
	return &memSampler{procs: map[string]int{}, cpu: map[string]time.Duration{}}
}

func (s *memSampler) Usage(_ context.Context, id string) (runtime.Usage, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return runtime.Usage{CPU: s.cpu[id], UserProcs: s.procs[id]}, nil
}

func (s *memSampler) UserProcs(_ context.Context, id string) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.procs[id], nil
}

func (s *memSampler) TerminateUser(_ context.Context, id string, _ time.Duration) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.terminated = append(s.terminated, id)
	s.procs[id] = 0
	return nil
}

func (s *memSampler) Forget(string) {}

func (s *memSampler) set(id string, procs int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.procs[id] = procs
}

func newLifecycleManager(t *testing.T, rt *memRuntime, grace time.Duration, rules lifecycle.Rules) (*Manager, *memSampler, store.User) {
	t.Helper()
	m, u := newTestManager(t, rt, grace)
	s := newMemSampler()
	m.cfg.Lifecycle = LifecycleConfig{Rules: rules, CheckInterval: time.Hour, Sampler: s}
	m.reaper = newReaper(m, m.log)
	return m, s, u
}

// A container whose user left work running stays, detached, past the
// grace; it retires one grace after the work ends.
func TestDetachedContainerOutlivesTheGrace(t *testing.T) {
	rt := newMem()
	m, s, u := newLifecycleManager(t, rt, 30*time.Millisecond, lifecycle.DefaultRules())
	ctx := context.Background()
	l, err := m.Attach(ctx, u, "proj", Default, &syncWriter{})
	if err != nil {
		t.Fatal(err)
	}
	id := l.ContainerID()
	s.set(id, 1) // nohup train.py &
	l.Release()
	time.Sleep(150 * time.Millisecond)
	info, ok := m.container(u, "proj")
	if !ok || !info.Life.Detached {
		t.Fatalf("after the grace with work running: %+v %v, want the container kept, detached", info, ok)
	}
	if running, _, _ := rt.counts(); running != 1 {
		t.Fatalf("running = %d, want the detached container", running)
	}

	s.set(id, 0) // the job ended
	m.reaper.sweepDetached(ctx)
	waitFor(t, "the retire after the work ended", func() bool { running, _, _ := rt.counts(); return running == 0 })
	if _, ok := m.container(u, "proj"); ok {
		t.Error("the entry outlived its container")
	}
	evs, _ := m.store.ListEvents(ctx, store.EventFilter{})
	var types []string
	for _, ev := range evs {
		types = append(types, ev.Type)
	}
	if got := strings.Join(types, " "); !strings.Contains(got, "container.detached") || !strings.Contains(got, "container.work_ended") {
		t.Errorf("events %q, want container.detached and container.work_ended", got)
	}
}

// Nothing left running: retired at the grace, as before.
func TestEmptyContainerRetiresAtTheGrace(t *testing.T) {
	rt := newMem()
	m, _, u := newLifecycleManager(t, rt, 30*time.Millisecond, lifecycle.DefaultRules())
	l, err := m.Attach(context.Background(), u, "proj", Default, &syncWriter{})
	if err != nil {
		t.Fatal(err)
	}
	l.Release()
	waitFor(t, "the retire at the grace", func() bool { running, _, _ := rt.counts(); return running == 0 })
}

// The runtime warnings reach the open session and the alerts file in
// order, then the stop: SIGTERM first, then the retire, and the session
// hears why. A user who was away hears it at the next login, once.
func TestRuntimeStopWarnsThenStops(t *testing.T) {
	rt := newMem()
	rules := lifecycle.DefaultRules()
	rules.MaxRuntime = time.Hour
	m, s, u := newLifecycleManager(t, rt, time.Hour, rules)
	ctx := context.Background()
	term := &syncWriter{}
	l, err := m.Attach(ctx, u, "proj", Default, term)
	if err != nil {
		t.Fatal(err)
	}
	id := l.ContainerID()
	start := time.Now()
	for _, at := range []time.Duration{time.Minute, 21 * time.Minute, 41 * time.Minute, 55 * time.Minute} {
		m.reaper.sweep(ctx, start.Add(at))
	}
	waitFor(t, "two warnings on the terminal", func() bool { return strings.Count(term.String(), "maximum runtime") >= 2 })
	if strings.Contains(term.String(), "stopped") {
		t.Fatalf("stopped before the deadline:\n%s", term.String())
	}
	m.reaper.sweep(ctx, start.Add(61*time.Minute))
	select {
	case <-l.Retired():
	case <-time.After(5 * time.Second):
		t.Fatal("the container was not stopped at its maximum runtime")
	}
	if why := l.RetiredWhy(); !strings.Contains(why, "maximum runtime") {
		t.Errorf("the session hears %q, want the maximum runtime named", why)
	}
	s.mu.Lock()
	terminated := strings.Join(s.terminated, ",")
	s.mu.Unlock()
	if terminated != id {
		t.Errorf("SIGTERM went to %q, want %q before the stop", terminated, id)
	}
	waitFor(t, "the stop notice", func() bool { return strings.Contains(term.String(), "stopped") })
	alerts, err := os.ReadFile(filepath.Join(workspaceOf(t, m, u, "proj"), ".ds01-alerts"))
	if err != nil {
		t.Fatal(err)
	}
	lines := strings.Split(strings.TrimSpace(string(alerts)), "\n")
	if len(lines) != 3 || !strings.Contains(lines[2], "stopped") || strings.Contains(lines[0], "stopped") {
		t.Errorf("alerts file: want two warnings then the stop, got\n%s", alerts)
	}
	l.Release()

	// The session saw every notice: nothing to repeat at the next login.
	again := &syncWriter{}
	l2, err := m.Attach(ctx, u, "proj", Default, again)
	if err != nil {
		t.Fatal(err)
	}
	defer l2.Release()
	if strings.Contains(again.String(), "while you were away") {
		t.Errorf("notices repeated at login:\n%s", again.String())
	}
}

// A stop nobody saw is shown at the next login, once.
func TestMissedNoticesAtNextLogin(t *testing.T) {
	rt := newMem()
	rules := lifecycle.DefaultRules()
	rules.MaxRuntime = time.Hour
	m, s, u := newLifecycleManager(t, rt, 10*time.Millisecond, rules)
	ctx := context.Background()
	l, err := m.Attach(ctx, u, "proj", Default, &syncWriter{})
	if err != nil {
		t.Fatal(err)
	}
	s.set(l.ContainerID(), 1)
	l.Release()
	time.Sleep(60 * time.Millisecond) // detached now
	start := time.Now()
	for _, at := range []time.Duration{time.Minute, 21 * time.Minute, 41 * time.Minute, 61 * time.Minute} {
		m.reaper.sweep(ctx, start.Add(at))
	}
	waitFor(t, "the stop", func() bool { running, _, _ := rt.counts(); return running == 0 })
	first := &syncWriter{}
	l2, err := m.Attach(ctx, u, "proj", Default, first)
	if err != nil {
		t.Fatal(err)
	}
	l2.Release()
	if got := first.String(); strings.Count(got, "while you were away") != 3 || !strings.Contains(got, "stopped") {
		t.Errorf("first login after the stop:\n%s\nwant the two warnings and the stop", got)
	}
	second := &syncWriter{}
	l3, err := m.Attach(ctx, u, "proj", Default, second)
	if err != nil {
		t.Fatal(err)
	}
	l3.Release()
	if strings.Contains(second.String(), "while you were away") {
		t.Errorf("notices shown twice:\n%s", second.String())
	}
}

// container-keep needs a running container and obeys the caps.
func TestKeepLease(t *testing.T) {
	rt := newMem()
	m, _, u := newLifecycleManager(t, rt, time.Hour, lifecycle.DefaultRules())
	ctx := context.Background()
	if _, err := m.reaper.Keep(ctx, u, "proj", time.Hour); err == nil {
		t.Error("keep without a container succeeded")
	}
	l, err := m.Attach(ctx, u, "proj", Default, &syncWriter{})
	if err != nil {
		t.Fatal(err)
	}
	defer l.Release()
	until, err := m.reaper.Keep(ctx, u, "proj", 4*time.Hour)
	if err != nil || until.Before(time.Now().Add(4*time.Hour-time.Minute)) {
		t.Fatalf("keep 4h: %v %v", until, err)
	}
	if _, err := m.reaper.Keep(ctx, u, "proj", 13*time.Hour); err == nil {
		t.Error("a lease over keep_max was granted")
	}
	if info, _ := m.container(u, "proj"); !info.Life.KeepUntil.Equal(until) {
		t.Errorf("container-list shows keep until %v, want %v", info.Life.KeepUntil, until)
	}
	var nilReaper *Reaper
	if _, err := nilReaper.Keep(ctx, u, "proj", time.Hour); err == nil {
		t.Error("keep on a gateway without the lifecycle succeeded")
	}
}
