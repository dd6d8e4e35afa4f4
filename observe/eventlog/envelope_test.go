package eventlog

import (
	"encoding/json"
	"strings"
	"testing"
	"time"
	"unicode/utf8"

	"github.com/ds01/ds01-gateway/store"
)

func TestDS01Type(t *testing.T) {
	for ours, want := range map[string]string{
		"container.launch":       "container.create",
		"container.idle_stop":    "maintenance.idle_kill",
		"container.runtime_stop": "maintenance.runtime_kill",
		"gpu.allocate":           "gpu.allocate",
		"gpu.release":            "gpu.release",
		"gpu.reject":             "gpu.reject",
		"auth.denied":            "auth.denied",
		"container.retire":       "container.retire", // no DS01 equivalent: ours
		"image.build":            "image.build",
	} {
		if got := DS01Type(ours); got != want {
			t.Errorf("DS01Type(%q) = %q, want %q", ours, got, want)
		}
	}
}

func decode(t *testing.T, line []byte) map[string]any {
	t.Helper()
	if len(line) == 0 || line[len(line)-1] != '\n' || strings.Count(string(line), "\n") != 1 {
		t.Fatalf("not one line: %q", line)
	}
	var m map[string]any
	if err := json.Unmarshal(line, &m); err != nil {
		t.Fatalf("invalid JSON %q: %v", line, err)
	}
	return m
}

func TestLineEnvelope(t *testing.T) {
	at := time.Date(2026, 12, 1, 18, 45, 23, 123456789, time.FixedZone("CET", 3600))
	line := Line(store.Event{ID: 7, Time: at, Type: "container.launch", User: "alice", Project: "thesis",
		Container: "abc123", Duration: 1500 * time.Millisecond})
	m := decode(t, line)
	want := map[string]any{
		"timestamp": "2026-12-01T17:45:23.123456Z", "event_type": "container.create", "user": "alice",
		"source": "ds01-gateway", "schema_version": "1",
	}
	for k, v := range want {
		if m[k] != v {
			t.Errorf("%s = %v, want %v", k, m[k], v)
		}
	}
	d, _ := m["details"].(map[string]any)
	if d["project"] != "thesis" || d["container"] != "abc123" || d["duration_s"] != 1.5 || d["event_id"] != 7.0 {
		t.Errorf("details = %v", d)
	}
	if _, err := time.Parse(time.RFC3339Nano, m["timestamp"].(string)); err != nil {
		t.Errorf("timestamp: %v", err)
	}
}

func TestEnvelopeDetails(t *testing.T) {
	for _, c := range []struct {
		name, details string
		want          map[string]any
	}{
		{"none", "", map[string]any{}},
		{"text", "grace expired", map[string]any{"message": "grace expired"}},
		{"json object merged", `{"bytes_in": 12, "protocol": "sftp"}`, map[string]any{"bytes_in": 12.0, "protocol": "sftp"}},
		{"json array is text", `[1,2]`, map[string]any{"message": "[1,2]"}},
		{"broken json is text", `{"a":`, map[string]any{"message": `{"a":`}},
		{"our fields win", `{"project": "forged"}`, map[string]any{"project": "p"}},
	} {
		t.Run(c.name, func(t *testing.T) {
			e := store.Event{Type: "x", Details: c.details}
			if c.name == "our fields win" {
				e.Project = "p"
			}
			m := decode(t, Line(e))
			d, ok := m["details"].(map[string]any)
			if !ok {
				t.Fatalf("details is not an object: %v", m["details"])
			}
			if len(d) != len(c.want) {
				t.Errorf("details = %v, want %v", d, c.want)
			}
			for k, v := range c.want {
				if d[k] != v {
					t.Errorf("details[%s] = %v, want %v", k, d[k], v)
				}
			}
		})
	}
}

// An event of any size becomes one valid line under 4 KiB that keeps its
// envelope and says it was cut.
func TestLineTruncated(t *testing.T) {
	for _, c := range []struct{ name, details string }{
		{"ascii", strings.Repeat("x", 10000)},
		{"multibyte", strings.Repeat("é€😀", 2000)},
		{"escapes", strings.Repeat("\x01\"\\\n", 3000)},
		{"invalid utf8", strings.Repeat("\xff\xfe", 5000)},
		{"json object", `{"k": "` + strings.Repeat("v", 9000) + `"}`},
	} {
		t.Run(c.name, func(t *testing.T) {
			line := Line(store.Event{Type: "image.build", User: "bob", Project: "p", Details: c.details})
			if len(line) > MaxLine {
				t.Fatalf("line is %d bytes, want at most %d", len(line), MaxLine)
			}
			if len(line) < MaxLine-64 {
				t.Errorf("line is %d bytes: cut more than needed", len(line))
			}
			m := decode(t, line)
			d := m["details"].(map[string]any)
			if m["event_type"] != "image.build" || m["user"] != "bob" || d["project"] != "p" || d["truncated"] != true {
				t.Errorf("envelope lost: %v", m)
			}
			msg, _ := d["message"].(string)
			if msg == "" || !utf8.ValidString(msg) {
				t.Errorf("message %q", msg)
			}
		})
	}
	// Oversized names are cut too: the line still fits.
	line := Line(store.Event{Type: strings.Repeat("t", 5000), User: strings.Repeat("u", 5000), Details: "d"})
	if len(line) > MaxLine {
		t.Fatalf("line is %d bytes", len(line))
	}
	decode(t, line)
}
