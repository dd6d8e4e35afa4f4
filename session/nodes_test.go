package session

import (
	"context"
	"io"
	"testing"
	"time"
)

// Listings carry the node the runtime reports under ds01.node; a label
// that is no node name (a Docker image can set any label) is dropped.
func TestListingsShowNodes(t *testing.T) {
	rt := newMem()
	m, u := newTestManager(t, rt, time.Minute)
	ctx := context.Background()
	l, err := m.Attach(ctx, u, "proj", Default, io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	defer l.Release()
	setNode := func(n string) {
		rt.mu.Lock()
		rt.running[l.ContainerID()].Labels[LabelNode] = n
		rt.mu.Unlock()
	}
	node := func() (own, all string) {
		cs, err := m.Catalog().Containers(ctx, u, false)
		if err != nil || len(cs) != 1 {
			t.Fatalf("Containers = %+v, %v", cs, err)
		}
		as, err := m.Admin().AllContainers(ctx, false)
		if err != nil || len(as) != 1 {
			t.Fatalf("AllContainers = %+v, %v", as, err)
		}
		return cs[0].Node, as[0].Node
	}
	if own, all := node(); own != "" || all != "" {
		t.Errorf("no node label: nodes %q %q, want none", own, all)
	}
	setNode("gpu-node-2.lab")
	if own, all := node(); own != "gpu-node-2.lab" || all != "gpu-node-2.lab" {
		t.Errorf("nodes %q %q, want gpu-node-2.lab", own, all)
	}
	setNode("evil\x1b[31m")
	if own, all := node(); own != "" || all != "" {
		t.Errorf("a label that is no node name shows: %q %q", own, all)
	}
}
