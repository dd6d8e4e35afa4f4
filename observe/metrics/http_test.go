package metrics

import (
	"context"
	"io"
	"log/slog"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/ds01/ds01-gateway/gateway"
)

func TestServe(t *testing.T) {
	m := newTestMetrics(twoGPUs())
	m.Refresh()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- m.Serve(ctx, ln, slog.New(slog.DiscardHandler)) }()
	base := "http://" + ln.Addr().String()

	if out := scrape(t, base+"/metrics"); !strings.Contains(out, `ds01_gpu_allocated{container="ds01-alice.thesis-abc123",gpu_slot="0",user="alice"} 1`) {
		t.Errorf("/metrics lacks alice's GPU:\n%s", out)
	}
	for _, path := range []string{"/", "/debug/pprof/", "/metrics/x"} {
		resp, err := http.Get(base + path)
		if err != nil {
			t.Fatal(err)
		}
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		if resp.StatusCode != http.StatusNotFound {
			t.Errorf("GET %s: %d, want 404", path, resp.StatusCode)
		}
	}
	resp, err := http.Post(base+"/metrics", "text/plain", nil)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusMethodNotAllowed {
		t.Errorf("POST /metrics: %d, want 405", resp.StatusCode)
	}

	cancel()
	select {
	case err := <-done:
		if err != nil {
			t.Errorf("Serve after cancel: %v", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("Serve did not return after its context ended")
	}
}

func TestLoopback(t *testing.T) {
	for addr, want := range map[string]bool{
		"127.0.0.1:9101": true, "[::1]:9101": true, "localhost:9101": true, "127.1.2.3:1": true,
		":9101": false, "0.0.0.0:9101": false, "10.0.0.5:9101": false, "[::]:9101": false, "ds01:9101": false, "nonsense": false,
	} {
		if got := Loopback(addr); got != want {
			t.Errorf("Loopback(%q) = %v, want %v", addr, got, want)
		}
	}
}

// What the observer adds to one login: a session started and ended and
// the login's latency (the auth failure counter is for failed logins).
func BenchmarkLoginObserver(b *testing.B) {
	var o gateway.Observer = New(Sources{})
	b.ReportAllocs()
	for b.Loop() {
		o.SessionStarted("alice")
		o.Login(gateway.LoginWarm, 250*time.Millisecond)
		o.SessionEnded("alice")
	}
}

// A scrape of a gateway with 8 GPUs, 50 users' sessions and the Go and
// process collectors.
func BenchmarkScrape(b *testing.B) {
	src := twoGPUs()
	m := New(Sources{GPUs: src, Containers: src})
	for i := range 50 {
		m.SessionStarted("user" + string(rune('a'+i%26)) + string(rune('a'+i/26)))
	}
	m.Refresh()
	h := m.Handler()
	b.ReportAllocs()
	for b.Loop() {
		rec := &discardWriter{h: http.Header{}}
		h.ServeHTTP(rec, mustRequest())
	}
}

type discardWriter struct{ h http.Header }

func (d *discardWriter) Header() http.Header         { return d.h }
func (d *discardWriter) Write(p []byte) (int, error) { return len(p), nil }
func (d *discardWriter) WriteHeader(int)             {}

func mustRequest() *http.Request {
	r, _ := http.NewRequest("GET", "/metrics", nil)
	return r
}
