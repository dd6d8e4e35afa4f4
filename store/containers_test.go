package store

import (
	"errors"
	"testing"
	"time"
)

func TestContainers(t *testing.T) {
	s, _ := openTest(t)
	ctx := t.Context()
	t0 := time.Date(2025, 5, 1, 0, 0, 0, 0, time.UTC)
	c1 := Container{ID: "aaa", Name: "ds01-alice-p", User: "alice", Project: "p", Image: "img:1", CreatedAt: t0}
	c2 := Container{ID: "bbb", Name: "ds01-bob-q", User: "bob", Project: "q", Image: "img:2", State: StateRunning, CreatedAt: t0.Add(time.Minute)}
	for _, c := range []Container{c1, c2} {
		if err := s.PutContainer(ctx, c); err != nil {
			t.Fatal(err)
		}
	}
	c1.State = StateRunning // empty defaults to running

	cs, err := s.ListContainers(ctx, true)
	if err != nil {
		t.Fatal(err)
	}
	if len(cs) != 2 || cs[0] != c1 || cs[1] != c2 {
		t.Fatalf("ListContainers = %+v", cs)
	}

	// Upsert: a zero CreatedAt keeps the stored one.
	upd := c1
	upd.Image = "img:1b"
	upd.CreatedAt = time.Time{}
	if err := s.PutContainer(ctx, upd); err != nil {
		t.Fatal(err)
	}
	cs, _ = s.ListContainers(ctx, false)
	if len(cs) != 2 || cs[0].Image != "img:1b" || !cs[0].CreatedAt.Equal(t0) {
		t.Fatalf("after upsert: %+v", cs)
	}

	retired := t0.Add(time.Hour)
	if err := s.RetireContainer(ctx, "aaa", retired); err != nil {
		t.Fatal(err)
	}
	// Retiring again keeps the first time.
	if err := s.RetireContainer(ctx, "aaa", retired.Add(time.Hour)); err != nil {
		t.Fatal(err)
	}
	active, err := s.ListContainers(ctx, true)
	if err != nil {
		t.Fatal(err)
	}
	if len(active) != 1 || active[0].ID != "bbb" || !active[0].RetiredAt.IsZero() {
		t.Errorf("active = %+v", active)
	}
	all, err := s.ListContainers(ctx, false)
	if err != nil {
		t.Fatal(err)
	}
	if len(all) != 2 || all[0].State != StateRetired || !all[0].RetiredAt.Equal(retired) {
		t.Errorf("all = %+v", all)
	}
}

func TestContainerErrors(t *testing.T) {
	s, _ := openTest(t)
	ctx := t.Context()
	if err := s.RetireContainer(ctx, "nope", time.Now()); !errors.Is(err, ErrNotFound) {
		t.Errorf("RetireContainer: %v, want ErrNotFound", err)
	}
	for _, c := range []Container{{}, {ID: "x", State: "paused"}} {
		if err := s.PutContainer(ctx, c); err == nil {
			t.Errorf("PutContainer(%+v) succeeded, want error", c)
		}
	}
	if cs, err := s.ListContainers(ctx, false); err != nil || len(cs) != 0 {
		t.Errorf("ListContainers = %v, %v", cs, err)
	}
}
