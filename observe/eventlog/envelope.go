// Package eventlog appends every gateway event to a file as JSON lines in
// DS01's envelope ({"timestamp", "event_type", "user", "source",
// "details", "schema_version"}), for the log shippers and scripts DS01
// admins already point at /var/log/ds01/events.jsonl.
//
// Envelope and DS01Type are the format; Writer is the file (writer.go):
// a bounded queue in front of one goroutine, so recording an event never
// waits on the disk.
package eventlog

import (
	"bytes"
	"encoding/json"
	"strings"
	"unicode/utf8"

	"github.com/ds01/ds01-gateway/store"
)

// Source names the gateway in every record, as DS01's scripts name
// themselves.
const Source = "ds01-gateway"

// SchemaVersion is the envelope's version; DS01's is "1".
const SchemaVersion = "1"

// MaxLine bounds one line, its newline included: readers (and DS01's own
// tools) read lines of up to 4 KiB, and a line that size is written by
// one write(2), whole, even with another writer appending.
const MaxLine = 4096

// timeFormat is RFC 3339 in UTC with a fixed six-digit fraction, so the
// lines sort as text.
const timeFormat = "2006-01-02T15:04:05.000000Z07:00"

// Record is one event in DS01's envelope.
type Record struct {
	Timestamp     string         `json:"timestamp"`
	EventType     string         `json:"event_type"`
	User          string         `json:"user"`
	Source        string         `json:"source"`
	Details       map[string]any `json:"details"`
	SchemaVersion string         `json:"schema_version"`
}

// ds01Types are our event types that mean what one of DS01's does. The
// others keep our name: DS01 has no such event.
var ds01Types = map[string]string{
	"container.launch":       "container.create",
	"container.idle_stop":    "maintenance.idle_kill",
	"container.runtime_stop": "maintenance.runtime_kill",
	// Same name in both: listed so the mapping is complete here.
	"gpu.allocate": "gpu.allocate",
	"gpu.release":  "gpu.release",
	"gpu.reject":   "gpu.reject",
	"auth.denied":  "auth.denied",
}

// DS01Type is DS01's name for one of our event types, or ours where DS01
// has no event with that meaning.
func DS01Type(ourType string) string {
	if t, ok := ds01Types[ourType]; ok {
		return t
	}
	return ourType
}

// Envelope is e in DS01's envelope. Details always holds an object:
// project, container, duration_s and event_id where the event has them,
// and e.Details: the keys of a JSON object, else the text as "message".
func Envelope(e store.Event) Record {
	d := map[string]any{}
	if s := strings.TrimSpace(e.Details); s != "" {
		var obj map[string]any
		if strings.HasPrefix(s, "{") && json.Unmarshal([]byte(s), &obj) == nil {
			d = obj
			if d == nil {
				d = map[string]any{}
			}
		} else {
			d["message"] = e.Details
		}
	}
	// Our own fields win over a key of the same name in the details.
	if e.Project != "" {
		d["project"] = e.Project
	}
	if e.Container != "" {
		d["container"] = e.Container
	}
	if e.Duration != 0 {
		d["duration_s"] = e.Duration.Seconds()
	}
	if e.ID != 0 {
		d["event_id"] = e.ID
	}
	return Record{
		Timestamp:     e.Time.UTC().Format(timeFormat),
		EventType:     DS01Type(e.Type),
		User:          e.User,
		Source:        Source,
		Details:       d,
		SchemaVersion: SchemaVersion,
	}
}

// Line is e as one line of the events file, newline included, at most
// MaxLine bytes. An event too long for it keeps its envelope and its
// short fields; its details become the truncated text, marked
// "truncated": true. The line is always valid JSON.
func Line(e store.Event) []byte {
	if b, err := marshal(Envelope(e)); err == nil && len(b) <= MaxLine {
		return b
	}
	return shortLine(e)
}

// maxField bounds each short field of a truncated line; names are far
// shorter, so only a malformed event gets cut here.
const maxField = 256

func shortLine(e store.Event) []byte {
	e.Type, e.User = cut(e.Type, maxField), cut(e.User, maxField)
	e.Project, e.Container = cut(e.Project, maxField), cut(e.Container, maxField)
	text := e.Details
	r := Envelope(store.Event{ID: e.ID, Time: e.Time, Type: e.Type, User: e.User, Project: e.Project, Container: e.Container, Duration: e.Duration})
	r.Details["truncated"] = true
	// The longest prefix of the text (on a rune boundary) that fits:
	// escaping makes the JSON length hard to predict, so search.
	lo, hi := 0, len(text)
	var best []byte
	for lo <= hi {
		mid := (lo + hi) / 2
		r.Details["message"] = cut(text, mid)
		b, err := marshal(r)
		if err == nil && len(b) <= MaxLine {
			best, lo = b, mid+1
		} else {
			hi = mid - 1
		}
	}
	if best == nil { // cannot happen with maxField-long fields
		delete(r.Details, "message")
		best, _ = marshal(r)
	}
	return best
}

// cut is s cut to at most n bytes on a rune boundary.
func cut(s string, n int) string {
	if len(s) <= n {
		return s
	}
	for n > 0 && !utf8.RuneStart(s[n]) {
		n--
	}
	return s[:n]
}

// marshal is r as one line. HTML escaping is off: "<" stays "<", as in
// DS01's Python-written lines.
func marshal(r Record) ([]byte, error) {
	var b bytes.Buffer
	enc := json.NewEncoder(&b)
	enc.SetEscapeHTML(false)
	if err := enc.Encode(r); err != nil { // Encode adds the newline
		return nil, err
	}
	return b.Bytes(), nil
}
