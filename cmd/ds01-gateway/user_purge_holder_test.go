package main

import (
	"context"
	"testing"

	"github.com/ds01/ds01-gateway/session"
	"github.com/ds01/ds01-gateway/session/runtime"
)

// orderEngine records the order of removals.
type orderEngine struct {
	*fakeEngine
	log []string
}

func (o *orderEngine) Retire(ctx context.Context, id string) error {
	o.log = append(o.log, "rm "+id)
	return o.fakeEngine.Retire(ctx, id)
}

func (o *orderEngine) RemoveNetwork(ctx context.Context, name string, want map[string]string) (bool, error) {
	o.log = append(o.log, "net "+name)
	return o.fakeEngine.RemoveNetwork(ctx, name, want)
}

// A running network holder is no running work: a user whose only
// container is a holder is purged without --force, and the holder goes
// after the project containers and before the network.
func TestPurgeRemovesNetworkHolders(t *testing.T) {
	ctx := context.Background()
	p, eng, _, _ := purgeFixture(t)
	holder := runtime.Container{ID: "h1", Name: "ds01-net-ann.p-1", Running: true, Labels: map[string]string{
		session.LabelInstance: "inst", session.LabelUID: "27401", session.LabelProject: "p", session.LabelRole: session.RoleHolder,
	}}
	eng.containers[0].Running = false // retired, not yet removed
	eng.containers = append([]runtime.Container{holder}, eng.containers...)
	oe := &orderEngine{fakeEngine: eng}
	p.eng = oe
	if err := p.run(ctx, "ann"); err != nil {
		t.Fatalf("purge with only a holder running: %v", err)
	}
	if len(eng.containers) != 0 {
		t.Errorf("left: %v", eng.containers)
	}
	want := []string{"rm c1", "rm h1", "net ds01-u27401"}
	if len(oe.log) != len(want) {
		t.Fatalf("removals %v, want %v", oe.log, want)
	}
	for i := range want {
		if oe.log[i] != want[i] {
			t.Fatalf("removals %v, want %v", oe.log, want)
		}
	}
}

// lateHolderEngine is an engine where a live gateway makes the user's
// holder just after the purge's first listing.
type lateHolderEngine struct {
	*fakeEngine
	lists int
}

func (l *lateHolderEngine) List(ctx context.Context, want map[string]string) ([]runtime.Container, error) {
	cs, err := l.fakeEngine.List(ctx, want)
	l.lists++
	if l.lists == 1 {
		l.containers = append(l.containers, runtime.Container{ID: "late", Running: true, Labels: map[string]string{
			session.LabelInstance: "inst", session.LabelUID: "27401", session.LabelProject: "p", session.LabelRole: session.RoleHolder,
		}})
	}
	return cs, err
}

// A holder the live gateway made while the purge ran (after its first
// listing) goes too, before the network.
func TestPurgeRemovesHolderMadeMeanwhile(t *testing.T) {
	p, eng, _, _ := purgeFixture(t)
	eng.containers[0].Running = false
	p.eng = &lateHolderEngine{fakeEngine: eng}
	if err := p.run(context.Background(), "ann"); err != nil {
		t.Fatal(err)
	}
	if len(eng.containers) != 0 {
		t.Errorf("left: %v", eng.containers)
	}
}
