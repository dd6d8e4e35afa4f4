package main

import (
	"bytes"
	"context"
	"io"
	"log/slog"
	"net/http"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"github.com/ds01/ds01-gateway/session"
	"github.com/ds01/ds01-gateway/store"
)

func TestMetricsListenConfig(t *testing.T) {
	cfg, err := loadConfig(writeConfig(t, ""))
	if err != nil || cfg.MetricsListen != "" {
		t.Fatalf("default metrics_listen: %q %v, want off", cfg.MetricsListen, err)
	}
	for _, tc := range []struct{ body, want string }{
		{"metrics_listen: 9101", "metrics_listen: want host:port"},
		{"metrics_listen: 127.0.0.1:http", "metrics_listen: want host:port"},
		{"metrics_listen: 127.0.0.1:70000", "metrics_listen: want host:port"},
		{"listen: 127.0.0.1:2222\nmetrics_listen: 127.0.0.1:2222", "metrics_listen: must differ from listen"},
	} {
		cfg, err := loadConfig(writeConfig(t, tc.body))
		if err == nil {
			err = cfg.Validate()
		}
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%q: got error %v, want it to contain %q", tc.body, err, tc.want)
		}
	}
	cfg, err = loadConfig(writeConfig(t, "metrics_listen: 127.0.0.1:9101"))
	if err == nil {
		err = cfg.Validate()
	}
	if err != nil || cfg.MetricsListen != "127.0.0.1:9101" {
		t.Errorf("DS01's address: %v %q", err, cfg.MetricsListen)
	}
}

type lockedBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

// startMetrics serves /metrics, counts the store's events, and warns when
// the address is not loopback; off, it serves nothing.
func TestStartMetrics(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	st, err := store.Open(ctx, filepath.Join(t.TempDir(), "ds01.db"))
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	var logs lockedBuffer
	log := slog.New(slog.NewTextHandler(&logs, nil))
	mgr := session.New(session.Config{}, nil, nil, st, log)

	cfg := defaultConfig()
	if obs, err := startMetrics(ctx, cfg, log, st, mgr); obs != nil || err != nil {
		t.Fatalf("metrics off: %v %v", obs, err)
	}

	cfg.MetricsListen = "127.0.0.1:0"
	obs, err := startMetrics(ctx, cfg, log, st, mgr)
	if err != nil || obs == nil {
		t.Fatalf("metrics on loopback: %v %v", obs, err)
	}
	if strings.Contains(logs.String(), "non-loopback") {
		t.Errorf("a loopback address warned:\n%s", logs.String())
	}
	addr := listenedOn(t, logs.String())
	if err := st.AddEvent(ctx, store.Event{Type: "container.retire", User: "alice"}); err != nil {
		t.Fatal(err)
	}
	resp, err := http.Get("http://" + addr + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if !strings.Contains(string(body), `ds01_lifecycle_events_total{action="container.retire"} 1`) {
		t.Errorf("/metrics does not count the store's event:\n%s", body)
	}

	cfg.MetricsListen = "0.0.0.0:0"
	if _, err := startMetrics(ctx, cfg, log, st, mgr); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(logs.String(), "level=WARN msg=\"metrics served on a non-loopback address") {
		t.Errorf("no warning for 0.0.0.0:\n%s", logs.String())
	}
}

// listenedOn is the address of the first "metrics listening" log line.
func listenedOn(t *testing.T, logs string) string {
	t.Helper()
	for _, line := range strings.Split(logs, "\n") {
		if !strings.Contains(line, "metrics listening") {
			continue
		}
		for _, f := range strings.Fields(line) {
			if a, ok := strings.CutPrefix(f, "addr="); ok {
				return a
			}
		}
	}
	t.Fatalf("no metrics address logged:\n%s", logs)
	return ""
}
