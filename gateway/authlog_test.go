package gateway

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"sync"
	"testing"
	"testing/synctest"
	"time"

	"github.com/ds01/ds01-gateway/store"
)

type fakeRecorder struct {
	mu     sync.Mutex
	events []store.Event
}

func (f *fakeRecorder) AddEvent(_ context.Context, e store.Event) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.events = append(f.events, e)
	return nil
}

func (f *fakeRecorder) all() []store.Event {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]store.Event(nil), f.events...)
}

func deniedDetails(t *testing.T, e store.Event) map[string]any {
	t.Helper()
	if e.Type != "auth.denied" {
		t.Fatalf("event type %q", e.Type)
	}
	var d map[string]any
	if err := json.Unmarshal([]byte(e.Details), &d); err != nil {
		t.Fatalf("details %q: %v", e.Details, err)
	}
	return d
}

// An unknown key is one auth.denied event naming the source, login and
// key; a connection that offers a stranger's key and then its own is no
// denial.
func TestAuthDeniedEvent(t *testing.T) {
	rec := &fakeRecorder{}
	g := startGateway(t, Options{Events: rec}, nil)
	known := g.addUser("ann", 1000)
	stranger := newKey(t)

	c := g.mustDial("p", stranger, known)
	c.Close()
	if _, err := g.dial("p", stranger); err == nil {
		t.Fatal("unknown key accepted")
	}
	eventually(t, "auth.denied event", func() bool { return len(rec.all()) == 1 })
	d := deniedDetails(t, rec.all()[0])
	if d["source"] != "127.0.0.1" || d["count"] != 1.0 || d["login"] != "p" || d["reason"] != "unknown key" || d["key"] == "" {
		t.Errorf("details %v", d)
	}
	// More from the same source within the window: counted, not recorded.
	for range 3 {
		g.dial("p", stranger)
	}
	time.Sleep(100 * time.Millisecond)
	if n := len(rec.all()); n != 1 {
		t.Errorf("%d events, want still 1 within the window", n)
	}
}

// A source that keeps failing makes one event per window with the count;
// a quiet source is forgotten, and its next denial is recorded at once.
// Many sources cannot make more than maxDeniedSources+1 events a window.
func TestAuthDenialsAggregate(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		rec := &fakeRecorder{}
		a := newAuthDenials(rec, slog.New(slog.DiscardHandler), time.Minute)
		a.add("10.0.0.1", "p", "unknown key", "SHA256:x")
		if n := len(rec.all()); n != 1 {
			t.Fatalf("first denial: %d events, want 1 at once", n)
		}
		for range 99 {
			time.Sleep(100 * time.Millisecond)
			a.add("10.0.0.1", "q", "unknown key", "SHA256:y")
		}
		if n := len(rec.all()); n != 1 {
			t.Fatalf("%d events within the window, want 1", n)
		}
		time.Sleep(time.Minute)
		synctest.Wait()
		ev := rec.all()
		if len(ev) != 2 {
			t.Fatalf("%d events after the window, want 2", len(ev))
		}
		if d := deniedDetails(t, ev[1]); d["count"] != 99.0 || d["login"] != "q" {
			t.Errorf("summary %v", d)
		}
		time.Sleep(2 * time.Minute) // quiet: nothing to record, forgotten
		synctest.Wait()
		if n := len(rec.all()); n != 2 {
			t.Errorf("quiet source: %d events, want 2", n)
		}
		a.add("10.0.0.1", "p", "unknown key", "SHA256:x")
		if n := len(rec.all()); n != 3 {
			t.Errorf("after a quiet window: %d events, want a third at once", n)
		}

		before := len(rec.all())
		for i := range 5000 {
			a.add(fmt.Sprintf("10.1.%d.%d", i/256, i%256), "p", "unknown key", "k")
		}
		if n := len(rec.all()) - before; n > maxDeniedSources {
			t.Errorf("5000 sources: %d events at once, want at most %d", n, maxDeniedSources)
		}
		a.flushAll()
		if n := len(rec.all()) - before; n > maxDeniedSources+2 {
			t.Errorf("5000 sources: %d events in the window, want at most %d", n, maxDeniedSources+2)
		}
		last := rec.all()[len(rec.all())-1]
		total := 0.0
		for _, e := range rec.all()[before:] {
			total += deniedDetails(t, e)["count"].(float64)
		}
		if total != 5000 {
			t.Errorf("counts add up to %v, want 5000 (last %v)", total, last)
		}
	})
}
