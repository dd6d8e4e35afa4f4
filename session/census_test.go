package session

import (
	"context"
	"io"
	"testing"
)

// census counts ContainerStates by status.
func census(m *Manager) map[string]int {
	n := map[string]int{}
	for _, c := range m.ContainerStates() {
		n[c.Status]++
	}
	return n
}

// The census follows a container through its launch, its sessions and
// its detached grace; Launched tells the login that waited for the launch
// from one that joined.
func TestContainerStatesAndLaunched(t *testing.T) {
	m, b, u := newBlockingManager(t)
	first := make(chan *Lease, 1)
	go func() {
		l, err := m.Attach(context.Background(), u, "p", Default, io.Discard)
		if err != nil {
			t.Error(err)
		}
		first <- l
	}()
	<-b.started
	if got := census(m); got[StatusLaunching] != 1 || len(m.ContainerStates()) != 1 {
		t.Errorf("during the build: %v, want one launching", m.ContainerStates())
	}
	close(b.release)
	l1 := <-first
	if l1 == nil {
		t.FailNow()
	}
	if !l1.Launched() {
		t.Error("the login that launched the container is not a cold one")
	}
	l2, err := m.Attach(context.Background(), u, "p", Default, io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	if l2.Launched() {
		t.Error("a login that joined the running container is a cold one")
	}
	cs := m.ContainerStates()
	if len(cs) != 1 || cs[0].Status != StatusRunning || cs[0].Connections != 2 || cs[0].User != u.Name || cs[0].Project != "p" || cs[0].Name == "" {
		t.Errorf("running: %+v", cs)
	}
	l1.Release()
	l2.Release()
	// The grace is an hour: no connection, still running.
	if got := census(m); got[StatusDetached] != 1 || len(m.ContainerStates()) != 1 {
		t.Errorf("after the last release: %v, want one detached", m.ContainerStates())
	}
	if err := m.RetireContainer(context.Background(), u, "p", "test"); err != nil {
		t.Fatal(err)
	}
	if cs := m.ContainerStates(); len(cs) != 0 {
		t.Errorf("after the retire: %+v", cs)
	}
}
