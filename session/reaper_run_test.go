package session

import (
	"context"
	"sync/atomic"
	"testing"
	"time"

	"github.com/ds01/ds01-gateway/session/lifecycle"
	"github.com/ds01/ds01-gateway/session/runtime"
)

// countingSampler counts the samples taken.
type countingSampler struct {
	*memSampler
	reads atomic.Int32
}

func (s *countingSampler) Usage(ctx context.Context, id string) (runtime.Usage, error) {
	s.reads.Add(1)
	return s.memSampler.Usage(ctx, id)
}

func (s *countingSampler) UserProcs(ctx context.Context, id string) (int, error) {
	s.reads.Add(1)
	return s.memSampler.UserProcs(ctx, id)
}

// runReaper starts Run over m with a check interval of an hour: only its
// looks at detached containers can act within a test.
func runReaper(t *testing.T, m *Manager) *countingSampler {
	t.Helper()
	s := &countingSampler{memSampler: newMemSampler()}
	m.cfg.Lifecycle = LifecycleConfig{Rules: lifecycle.DefaultRules(), CheckInterval: time.Hour, Sampler: s}
	m.reaper = newReaper(m, m.log)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		m.reaper.Run(ctx)
	}()
	t.Cleanup(func() {
		cancel()
		<-done
	})
	return s
}

// With nothing detached, Run neither wakes nor samples between its full
// sweeps, however many containers run: an idle gateway sleeps.
func TestReaperSleepsWhileNothingIsDetached(t *testing.T) {
	rt := newMem()
	m, u := newTestManager(t, rt, time.Hour)
	s := runReaper(t, m)
	for _, p := range []string{"a", "b", "c"} {
		l, err := m.Attach(context.Background(), u, p, Default, &syncWriter{})
		if err != nil {
			t.Fatal(err)
		}
		defer l.Release()
	}
	time.Sleep(1200 * time.Millisecond) // past two of the old half-second looks
	if n := s.reads.Load(); n != 0 {
		t.Errorf("%d samples while nothing was detached, want none before the full sweep", n)
	}
	if n := m.reaper.wakes.Load(); n != 0 {
		t.Errorf("Run woke %d times while nothing was detached, want none before the full sweep", n)
	}
}

// A container that becomes detached wakes Run, which then watches its
// processes often: the retire follows the end of the work within about a
// grace, not at the next full sweep (an hour here).
func TestReaperWatchesADetachedContainerAtOnce(t *testing.T) {
	rt := newMem()
	m, u := newTestManager(t, rt, 30*time.Millisecond)
	s := runReaper(t, m)
	l, err := m.Attach(context.Background(), u, "proj", Default, &syncWriter{})
	if err != nil {
		t.Fatal(err)
	}
	id := l.ContainerID()
	s.set(id, 1) // nohup train.py &
	l.Release()
	waitFor(t, "the container to be detached", func() bool {
		info, ok := m.container(u, "proj")
		return ok && info.Life.Detached
	})
	s.set(id, 0) // the job ended
	waitFor(t, "the retire after the work ended", func() bool { running, _, _ := rt.counts(); return running == 0 })
}
