package docker

import (
	"context"
	"testing"
	"time"
)

// A container killed on the engine (docker kill) is reported by
// WatchStops at once; one without the label is not.
func TestWatchStopsReportsAKill(t *testing.T) {
	d := engine(t)
	id := launchIdle(t, d)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	ready := make(chan struct{})
	stops := make(chan string, 16)
	ended := make(chan error, 1)
	go func() {
		ended <- d.WatchStops(ctx, map[string]string{"ds01.test": "usage"}, func() { close(ready) }, func(id string) { stops <- id })
	}()
	select {
	case <-ready:
	case <-time.After(10 * time.Second):
		t.Fatal("WatchStops never became ready")
	}
	start := time.Now()
	if err := d.cli.ContainerKill(ctx, id, "KILL"); err != nil {
		t.Fatal(err)
	}
	select {
	case got := <-stops:
		if got != id {
			t.Fatalf("stopped(%s), want %s", got, id)
		}
		t.Logf("reported %s after the kill", time.Since(start).Round(time.Millisecond))
	case <-time.After(5 * time.Second):
		t.Fatal("the kill was not reported within 5 s")
	}
	cancel()
	select {
	case <-ended:
	case <-time.After(5 * time.Second):
		t.Fatal("WatchStops did not return when its context ended")
	}
}
