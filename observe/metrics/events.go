package metrics

import (
	"strings"

	"github.com/ds01/ds01-gateway/store"
)

// Results of ds01_builds_total and ds01_build_duration_seconds.
const (
	buildOK     = "ok"
	buildFailed = "failed"
)

// maxActionLen bounds an event type used as a label value.
const maxActionLen = 48

// OnEvent counts a recorded event; pass it to (*store.Store).OnEvent. It
// runs on the recording goroutine and only increments counters.
//
// Every event counts in ds01_lifecycle_events_total under its type: types
// are the gateway's own constants, never user input, so they are few. A
// type that does not look like one (the store accepts any string) counts
// as "other", so the label stays bounded whatever a caller records.
// Builds ("image.build", Details "ok ..." or "failed: ...") also count
// by result, with their duration.
func (m *Metrics) OnEvent(e store.Event) {
	m.events.WithLabelValues(action(e.Type)).Inc()
	if e.Type != "image.build" {
		return
	}
	result := buildOK
	if strings.HasPrefix(e.Details, "failed") {
		result = buildFailed
	}
	m.builds.WithLabelValues(result).Inc()
	m.buildSeconds.WithLabelValues(result).Observe(e.Duration.Seconds())
}

// action is the label value for an event type: "word.word" in lowercase
// letters, digits and '_', or "other".
func action(typ string) string {
	if len(typ) == 0 || len(typ) > maxActionLen || strings.Count(typ, ".") != 1 {
		return "other"
	}
	for _, r := range typ {
		if !(r >= 'a' && r <= 'z' || r >= '0' && r <= '9' || r == '_' || r == '.') {
			return "other"
		}
	}
	return typ
}
