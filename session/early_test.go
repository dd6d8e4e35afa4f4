package session

import (
	"context"
	"errors"
	"io"
	"testing"
	"time"

	"github.com/ds01/ds01-gateway/store"
)

// earlyManager is a manager with a long grace and an existing project p
// whose image exists.
func earlyManager(t *testing.T) (*Manager, *memRuntime, store.User) {
	t.Helper()
	rt := newMem()
	m, u := newTestManager(t, rt, time.Hour)
	ws, err := m.workspaces.Ensure(context.Background(), u, "p")
	if err != nil {
		t.Fatal(err)
	}
	ws.Close()
	return m, rt, u
}

func running(rt *memRuntime) int { n, _, _ := rt.counts(); return n }

// The early start launches the container; the session that comes next
// joins it (no second launch), and after the handover the container
// lives on its lease and then its grace, like any other.
func TestEarlyStartIsHandedToTheSession(t *testing.T) {
	m, rt, u := earlyManager(t)
	h := m.Prepare(u, "p", Default)
	waitFor(t, "the early launch", func() bool { return running(rt) == 1 })
	l, err := m.Attach(context.Background(), u, "p", Default, io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	h.Handover()
	h.Abandon() // too late: the first call counts
	l.Release()
	time.Sleep(50 * time.Millisecond)
	if n, launches, retires := rt.counts(); n != 1 || launches != 1 || retires != 0 {
		t.Fatalf("running %d, launches %d, retires %d; want 1, 1, 0", n, launches, retires)
	}
}

// A session that asks while the early launch still runs follows it: one
// launch, and it is told when the container is ready.
func TestSessionFollowsTheEarlyLaunch(t *testing.T) {
	m, rt, u := earlyManager(t)
	rt.delay = 100 * time.Millisecond
	h := m.Prepare(u, "p", Default)
	waitFor(t, "the early launch to start", func() bool {
		m.mu.Lock()
		e := m.entries[key{u.UID, "p"}]
		m.mu.Unlock()
		if e == nil {
			return false
		}
		e.mu.Lock()
		defer e.mu.Unlock()
		return e.launch != nil
	})
	var notes syncWriter
	l, err := m.Attach(context.Background(), u, "p", Default, &notes)
	if err != nil {
		t.Fatal(err)
	}
	defer l.Release()
	h.Handover()
	if _, launches, _ := rt.counts(); launches != 1 || !l.Launched() {
		t.Fatalf("launches %d, launched %v", launches, l.Launched())
	}
	if got := notes.String(); got == "" {
		t.Error("the session was not told the container is ready")
	}
}

// A connection that does not use its early container (a file transfer,
// a close, a timeout) has it retired at once, not after the grace.
func TestAbandonedEarlyStartIsRetiredAtOnce(t *testing.T) {
	m, rt, u := earlyManager(t)
	h := m.Prepare(u, "p", Default)
	waitFor(t, "the early launch", func() bool { return running(rt) == 1 })
	h.Abandon()
	waitFor(t, "the retire", func() bool { return running(rt) == 0 })
}

// Abandoned during its launch: nothing is left running.
func TestEarlyStartAbandonedMidLaunch(t *testing.T) {
	m, rt, u := earlyManager(t)
	rt.delay = 100 * time.Millisecond
	h := m.Prepare(u, "p", Default)
	time.Sleep(20 * time.Millisecond)
	h.Abandon()
	time.Sleep(200 * time.Millisecond)
	waitFor(t, "nothing running", func() bool { return running(rt) == 0 })
}

// A container someone else holds is not retired by an abandoned hold.
func TestAbandonSparesAContainerInUse(t *testing.T) {
	m, rt, u := earlyManager(t)
	h := m.Prepare(u, "p", Default)
	waitFor(t, "the early launch", func() bool { return running(rt) == 1 })
	l, err := m.Attach(context.Background(), u, "p", Default, io.Discard) // a parallel login
	if err != nil {
		t.Fatal(err)
	}
	defer l.Release()
	h.Abandon()
	time.Sleep(50 * time.Millisecond)
	if n, launches, retires := rt.counts(); n != 1 || launches != 1 || retires != 0 {
		t.Fatalf("running %d, launches %d, retires %d; want 1, 1, 0", n, launches, retires)
	}
}

// Nothing starts early for a new project (the session creates it), a
// login that needs GPUs (the queue waits for a session), or a warm
// project.
func TestEarlyStartOnlyWhenFreeAndCold(t *testing.T) {
	m, rt, u := earlyManager(t)
	wait := func(h *EarlyHold) {
		t.Helper()
		select {
		case <-h.done:
		case <-time.After(5 * time.Second):
			t.Fatal("prepare did not end")
		}
	}
	h := m.Prepare(u, "new", Default)
	wait(h)
	if _, err := m.store.GetProject(context.Background(), u.Name, "new"); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("project created early: %v", err)
	}
	h = m.Prepare(u, "p", Want{GPUs: 1})
	wait(h)
	if _, launches, _ := rt.counts(); launches != 0 || h.e != nil {
		t.Fatalf("a GPU login started early (%d launches)", launches)
	}
	l, err := m.Attach(context.Background(), u, "p", Default, io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	defer l.Release()
	h = m.Prepare(u, "p", Default)
	wait(h)
	if h.e != nil {
		t.Error("a warm project was held early")
	}
	h.Abandon()
	time.Sleep(50 * time.Millisecond)
	if running(rt) != 1 {
		t.Error("abandoning a warm project's hold retired its container")
	}
}
