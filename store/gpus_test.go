package store

import (
	"context"
	"testing"
)

func TestGPUAllocations(t *testing.T) {
	ctx := context.Background()
	s, _ := openTest(t)
	a := Allocation{UUID: "GPU-1", Container: "c1", User: "alice", UID: 1001, Project: "p", GPUEq: 1}
	b := Allocation{UUID: "MIG-2", Container: "c1", User: "alice", UID: 1001, Project: "p", GPUEq: 3.0 / 7}
	if err := s.PutAllocations(ctx, []Allocation{a, b}); err != nil {
		t.Fatal(err)
	}
	as, err := s.ListAllocations(ctx)
	if err != nil || len(as) != 2 || as[0].UUID != "GPU-1" || as[1].GPUEq != 3.0/7 || as[0].Since.IsZero() {
		t.Fatalf("allocations = %+v, %v", as, err)
	}
	// One slot, one row: a second holder replaces, never duplicates.
	if err := s.ReplaceAllocations(ctx, []Allocation{a, {UUID: "GPU-1", Container: "c2"}}); err == nil {
		t.Error("ReplaceAllocations recorded one slot twice")
	}
	if err := s.DeleteAllocations(ctx, "c1"); err != nil {
		t.Fatal(err)
	}
	if as, _ := s.ListAllocations(ctx); len(as) != 0 {
		t.Errorf("after delete: %+v", as)
	}
	if _, err := s.CreateProject(ctx, Project{User: "alice", Name: "p", Workspace: "/w"}); err != nil {
		t.Fatal(err)
	}
	if p, _ := s.GetProject(ctx, "alice", "p"); p.GPUs != -1 {
		t.Errorf("default gpus = %d, want -1", p.GPUs)
	}
	if err := s.SetProjectGPUs(ctx, "alice", "p", 2); err != nil {
		t.Fatal(err)
	}
	if p, _ := s.GetProject(ctx, "alice", "p"); p.GPUs != 2 {
		t.Errorf("gpus = %d, want 2", p.GPUs)
	}
	if err := s.SetProjectGPUs(ctx, "alice", "nope", 2); err == nil {
		t.Error("SetProjectGPUs of a missing project succeeded")
	}
}
