package store

import (
	"context"
	"testing"
	"time"
)

func TestBuildHistory(t *testing.T) {
	ctx := context.Background()
	s, _ := openTest(t)
	id1, err := s.StartBuild(ctx, Build{User: "alice", Project: "p", Reason: "first login", Dockerfile: "FROM a\n"})
	if err != nil {
		t.Fatal(err)
	}
	if err := s.FinishBuild(ctx, id1, BuildOK, "sha256:1", "", "", time.Second); err != nil {
		t.Fatal(err)
	}
	id2, _ := s.StartBuild(ctx, Build{User: "alice", Project: "p", Reason: "image-update --add-system nosuch", Dockerfile: "FROM b\n"})
	if err := s.FinishBuild(ctx, id2, BuildFailed, "", "Step 2/3 : RUN x", "exit 100", 2*time.Second); err != nil {
		t.Fatal(err)
	}
	s.StartBuild(ctx, Build{User: "bob", Project: "p", Dockerfile: "FROM c\n"})

	bs, err := s.ListBuilds(ctx, "alice", "p", 0)
	if err != nil {
		t.Fatal(err)
	}
	if len(bs) != 2 || bs[0].ID != id2 || bs[1].ID != id1 {
		t.Fatalf("builds = %+v, want alice's two, newest first", bs)
	}
	if b := bs[0]; b.Result != BuildFailed || b.FailedStep != "Step 2/3 : RUN x" || b.Duration != 2*time.Second || b.Dockerfile != "FROM b\n" {
		t.Errorf("failed build = %+v", b)
	}
	if b := bs[1]; b.Result != BuildOK || b.ImageID != "sha256:1" || b.Reason != "first login" || b.StartedAt.IsZero() {
		t.Errorf("ok build = %+v", b)
	}
	if bs, _ := s.ListBuilds(ctx, "alice", "p", 1); len(bs) != 1 {
		t.Errorf("limit 1 gave %d builds", len(bs))
	}
	if err := s.FinishBuild(ctx, id1, "weird", "", "", "", 0); err == nil {
		t.Error("FinishBuild accepted an invalid result")
	}
	// A crash mid-build: the next start closes the running row.
	n, err := s.FailRunningBuilds(ctx, "gateway restarted during the build")
	if err != nil || n != 1 {
		t.Fatalf("FailRunningBuilds = %d, %v; want 1", n, err)
	}
	bs, _ = s.ListBuilds(ctx, "bob", "p", 0)
	if bs[0].Result != BuildFailed || bs[0].Error == "" {
		t.Errorf("bob's build after restart = %+v", bs[0])
	}
}

// A user failing builds in a loop cannot grow the store without bound:
// each project keeps its last KeepBuilds builds.
func TestBuildHistoryIsBounded(t *testing.T) {
	ctx := context.Background()
	s, _ := openTest(t)
	other, _ := s.StartBuild(ctx, Build{User: "bob", Project: "p", Dockerfile: "FROM b\n"})
	var last int64
	for i := range KeepBuilds + 15 {
		id, err := s.StartBuild(ctx, Build{User: "alice", Project: "p", Dockerfile: "FROM a\n"})
		if err != nil {
			t.Fatal(err)
		}
		if err := s.FinishBuild(ctx, id, BuildFailed, "", "", "x", time.Duration(i)); err != nil {
			t.Fatal(err)
		}
		last = id
	}
	bs, err := s.ListBuilds(ctx, "alice", "p", 0)
	if err != nil {
		t.Fatal(err)
	}
	if len(bs) != KeepBuilds || bs[0].ID != last {
		t.Errorf("kept %d builds (newest %d), want the last %d (newest %d)", len(bs), bs[0].ID, KeepBuilds, last)
	}
	if bs, _ := s.ListBuilds(ctx, "bob", "p", 0); len(bs) != 1 || bs[0].ID != other {
		t.Errorf("another project's history was pruned: %+v", bs)
	}
}
