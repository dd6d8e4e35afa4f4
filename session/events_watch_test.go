package session

import (
	"context"
	"errors"
	"io"
	"strings"
	"sync/atomic"
	"testing"
	"time"
)

// fakeStops is an event stream the test feeds: each ID sent on stops is a
// stop event, and an error sent on breaks ends the stream.
type fakeStops struct {
	connects atomic.Int32
	stops    chan string
	breaks   chan error
}

func newFakeStops() *fakeStops {
	return &fakeStops{stops: make(chan string), breaks: make(chan error)}
}

func (f *fakeStops) WatchStops(ctx context.Context, _ map[string]string, ready func(), stopped func(string)) error {
	f.connects.Add(1)
	ready()
	for {
		select {
		case <-ctx.Done():
			return ctx.Err()
		case id := <-f.stops:
			stopped(id)
		case err := <-f.breaks:
			return err
		}
	}
}

// followForTest runs followStops on its own goroutine until the test ends.
func followForTest(t *testing.T, m *Manager, f *fakeStops) {
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		m.followStops(ctx, f)
	}()
	t.Cleanup(func() {
		cancel()
		<-done
	})
}

// attachFollowed is a manager that follows a fake event stream, with one
// session attached to project p.
func attachFollowed(t *testing.T) (*memRuntime, *Manager, *fakeStops, *Lease) {
	t.Helper()
	rt := newMem()
	m, u := newTestManager(t, rt, time.Hour)
	f := newFakeStops()
	followForTest(t, m, f)
	l, err := m.Attach(context.Background(), u, "p", Default, io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(l.Release)
	return rt, m, f, l
}

func retiredWithin(l *Lease, d time.Duration) bool {
	select {
	case <-l.Retired():
		return true
	case <-time.After(d):
		return false
	}
}

// A container killed outside the gateway (docker kill) is retired as soon
// as the engine's event arrives, with no sweep: its sessions hear why.
func TestStopEventRetiresAtOnce(t *testing.T) {
	rt, m, f, l := attachFollowed(t)
	id := l.ContainerID()
	rt.mu.Lock()
	delete(rt.running, id) // died: the engine lists it stopped
	rt.mu.Unlock()
	f.stops <- id
	f.stops <- id // die, then destroy: handled once
	if !retiredWithin(l, 5*time.Second) {
		t.Fatal("the lease was not told its container died")
	}
	if why := l.RetiredWhy(); !strings.Contains(why, "stopped outside") {
		t.Errorf("why = %q", why)
	}
	// Sessions hear first, by design, before the runtime's retire ends
	// and the entry lets go of the container: wait for that too.
	deadline := time.Now().Add(5 * time.Second)
	for m.entryOf(id) != nil {
		if time.Now().After(deadline) {
			t.Fatal("the manager still holds the dead container")
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// An OOM event whose container still runs (a child was killed, not the
// init) and events for containers the gateway does not hold change nothing.
func TestStopEventSparesARunningContainer(t *testing.T) {
	rt, _, f, l := attachFollowed(t)
	f.stops <- l.ContainerID()
	f.stops <- "someone-elses"
	if retiredWithin(l, 300*time.Millisecond) {
		t.Fatalf("a running container was retired: %s", l.RetiredWhy())
	}
	if running, _, _ := rt.counts(); running != 1 {
		t.Errorf("running = %d, want 1", running)
	}
}

// A stop that happened while the stream was broken (the engine restarted)
// is found by the sweep that follows the reconnect.
func TestStopMissedWhileDisconnectedIsSwept(t *testing.T) {
	rt, _, f, l := attachFollowed(t)
	f.breaks <- errors.New("engine restarted")
	rt.mu.Lock()
	delete(rt.running, l.ContainerID()) // no event for it
	rt.mu.Unlock()
	if !retiredWithin(l, stopsRetryMin+5*time.Second) {
		t.Fatal("the container that died unseen was not retired after the reconnect")
	}
	if n := f.connects.Load(); n < 2 {
		t.Errorf("connects = %d, want a reconnect", n)
	}
}
