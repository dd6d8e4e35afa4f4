package store

import (
	"testing"
	"time"
)

func TestEvents(t *testing.T) {
	s, _ := openTest(t)
	ctx := t.Context()
	t0 := time.Date(2025, 6, 1, 0, 0, 0, 0, time.UTC)
	in := []Event{
		{Time: t0, Type: "container.launch", User: "alice", Project: "p", Container: "c1", Duration: 1500 * time.Millisecond, Details: `{"image":"x"}`},
		{Time: t0.Add(time.Minute), Type: "session.end", User: "alice", Project: "p", Duration: time.Hour},
		{Time: t0.Add(2 * time.Minute), Type: "container.launch", User: "bob", Project: "q"},
		{Time: t0.Add(2 * time.Minute), Type: "session.start", User: "bob", Project: "q"}, // same time: id orders
	}
	for _, e := range in {
		if err := s.AddEvent(ctx, e); err != nil {
			t.Fatal(err)
		}
	}

	all, err := s.ListEvents(ctx, EventFilter{})
	if err != nil {
		t.Fatal(err)
	}
	if len(all) != 4 {
		t.Fatalf("ListEvents: %d, want 4", len(all))
	}
	last := all[3]
	if last.ID == 0 || last.Type != in[0].Type || !last.Time.Equal(t0) || last.Time.Location() != time.UTC ||
		last.Duration != in[0].Duration || last.Details != in[0].Details || last.Container != "c1" {
		t.Errorf("round trip: %+v", last)
	}

	tests := []struct {
		name  string
		f     EventFilter
		types []string // expected, newest first
	}{
		{"all", EventFilter{}, []string{"session.start", "container.launch", "session.end", "container.launch"}},
		{"user", EventFilter{User: "alice"}, []string{"session.end", "container.launch"}},
		{"project", EventFilter{Project: "q"}, []string{"session.start", "container.launch"}},
		{"type", EventFilter{Type: "container.launch"}, []string{"container.launch", "container.launch"}},
		{"since", EventFilter{Since: t0.Add(time.Minute)}, []string{"session.start", "container.launch", "session.end"}},
		{"limit", EventFilter{Limit: 1}, []string{"session.start"}},
		{"combined", EventFilter{User: "bob", Type: "container.launch", Since: t0}, []string{"container.launch"}},
		{"no match", EventFilter{User: "carol"}, nil},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			es, err := s.ListEvents(ctx, tc.f)
			if err != nil {
				t.Fatal(err)
			}
			var got []string
			for _, e := range es {
				got = append(got, e.Type)
			}
			if len(got) != len(tc.types) {
				t.Fatalf("got %v, want %v", got, tc.types)
			}
			for i := range got {
				if got[i] != tc.types[i] {
					t.Fatalf("got %v, want %v", got, tc.types)
				}
			}
		})
	}
}

func TestAddEventDefaults(t *testing.T) {
	s, _ := openTest(t)
	ctx := t.Context()
	before := time.Now()
	if err := s.AddEvent(ctx, Event{Type: "x"}); err != nil {
		t.Fatal(err)
	}
	es, err := s.ListEvents(ctx, EventFilter{})
	if err != nil || len(es) != 1 {
		t.Fatalf("ListEvents = %v, %v", es, err)
	}
	if es[0].Time.Before(before.Add(-time.Second)) || es[0].Time.After(time.Now().Add(time.Second)) {
		t.Errorf("default time %v not about now", es[0].Time)
	}
	if err := s.AddEvent(ctx, Event{}); err == nil {
		t.Error("AddEvent without type succeeded")
	}
}

// TestOnEvent: every observer hears each stored event once, with its ID
// and time, in order; a refused event is not heard.
func TestOnEvent(t *testing.T) {
	s, _ := openTest(t)
	ctx := t.Context()
	var a, b []Event
	s.OnEvent(func(e Event) { a = append(a, e) })
	s.OnEvent(func(e Event) { b = append(b, e) })
	for _, typ := range []string{"container.launch", "gpu.allocate"} {
		if err := s.AddEvent(ctx, Event{Type: typ, User: "alice"}); err != nil {
			t.Fatal(err)
		}
	}
	if err := s.AddEvent(ctx, Event{}); err == nil {
		t.Fatal("empty type accepted")
	}
	if len(a) != 2 || len(b) != 2 || a[0].Type != "container.launch" || a[1].Type != "gpu.allocate" {
		t.Fatalf("heard %+v and %+v", a, b)
	}
	if a[0].ID == 0 || a[1].ID <= a[0].ID || a[0].Time.IsZero() || a[0].User != "alice" {
		t.Errorf("event not filled in: %+v", a[0])
	}
}
