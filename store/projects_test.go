package store

import (
	"errors"
	"testing"
	"time"
)

func TestProjects(t *testing.T) {
	s, _ := openTest(t)
	ctx := t.Context()
	created := time.Date(2025, 1, 2, 3, 4, 5, 6, time.UTC)
	p := Project{User: "alice", Name: "thesis", Workspace: "/srv/ws/alice/thesis", CreatedAt: created}

	ok, err := s.CreateProject(ctx, p)
	if err != nil || !ok {
		t.Fatalf("CreateProject = %v, %v; want true", ok, err)
	}
	again := p
	again.Workspace = "/elsewhere"
	ok, err = s.CreateProject(ctx, again)
	if err != nil || ok {
		t.Fatalf("second CreateProject = %v, %v; want false, nil", ok, err)
	}

	got, err := s.GetProject(ctx, "alice", "thesis")
	if err != nil {
		t.Fatal(err)
	}
	want := p
	want.LastUsed = created // defaults to CreatedAt
	want.GPUs = -1          // the gateway's default until set
	if got != want {
		t.Errorf("GetProject = %+v, want %+v (an existing project must not change)", got, want)
	}

	used := created.Add(time.Hour)
	if err := s.TouchProject(ctx, "alice", "thesis", used); err != nil {
		t.Fatal(err)
	}
	if got, _ := s.GetProject(ctx, "alice", "thesis"); !got.LastUsed.Equal(used) {
		t.Errorf("LastUsed %v, want %v", got.LastUsed, used)
	}

	for _, q := range []Project{
		{User: "alice", Name: "alpha"},
		{User: "bob", Name: "thesis"}, // same name, other user: allowed
	} {
		if ok, err := s.CreateProject(ctx, q); err != nil || !ok {
			t.Fatalf("CreateProject(%v) = %v, %v", q, ok, err)
		}
	}
	ps, err := s.ListProjects(ctx, "alice")
	if err != nil {
		t.Fatal(err)
	}
	if len(ps) != 2 || ps[0].Name != "alpha" || ps[1].Name != "thesis" {
		t.Errorf("ListProjects(alice) = %+v", ps)
	}
	if ps, err := s.ListProjects(ctx, "nobody"); err != nil || len(ps) != 0 {
		t.Errorf("ListProjects(nobody) = %v, %v", ps, err)
	}
}

func TestProjectErrors(t *testing.T) {
	s, _ := openTest(t)
	ctx := t.Context()
	if _, err := s.GetProject(ctx, "alice", "none"); !errors.Is(err, ErrNotFound) {
		t.Errorf("GetProject: %v, want ErrNotFound", err)
	}
	if err := s.TouchProject(ctx, "alice", "none", time.Now()); !errors.Is(err, ErrNotFound) {
		t.Errorf("TouchProject: %v, want ErrNotFound", err)
	}
	for _, p := range []Project{{Name: "x"}, {User: "alice"}} {
		if _, err := s.CreateProject(ctx, p); err == nil {
			t.Errorf("CreateProject(%+v) succeeded, want error", p)
		}
	}
}
