package lifecycle

import (
	"fmt"
	"strings"
	"time"
)

// The notice texts. Each is one line starting "ds01: " that says why and
// what to do; tests elsewhere match on "idle", "maximum runtime",
// "stopped", ".keep-alive" and "waiting".

const (
	noticePrefix = "ds01: "
	infoPrefix   = "(info) "
	saveHint     = "Save checkpoints to /workspace"
	freshHint    = "Your workspace is kept; connect again for a fresh container"
	askHint      = "for longer runs ask an admin for an exemption"
)

// notes builds the texts for one container.
type notes struct {
	in  Input
	now time.Time
}

func (n notes) keepHint() string {
	if n.in.KeepHint != "" {
		return n.in.KeepHint
	}
	return "container-keep " + n.in.Project
}

// unused names the signals that stayed quiet.
func (n notes) unused() string {
	if n.in.HasGPU {
		return "(GPU, CPU and terminal unused)"
	}
	return "(CPU and terminal unused)"
}

func (n notes) exempt(key string) string {
	e := n.in.Exempt
	s := "you are exempt from " + key
	if !e.Until.IsZero() {
		s += " until " + e.Until.Format(time.DateOnly)
	}
	if e.Reason != "" {
		s += ": " + e.Reason
	}
	return s
}

// idleWarning: a real warning says when it stops and how to keep it; an
// exempt user's says it would stop, as information.
func (n notes) idleWarning(idleFor time.Duration, stopAt time.Time, waiting bool) string {
	var b strings.Builder
	b.WriteString(noticePrefix)
	if n.in.Exempt.Idle {
		b.WriteString(infoPrefix)
	}
	fmt.Fprintf(&b, "%s: idle for %s %s", n.in.Project, ShortDuration(idleFor), n.unused())
	if waiting {
		b.WriteString(" while someone is waiting for a GPU")
	}
	if n.in.Exempt.Idle {
		fmt.Fprintf(&b, "; it would stop at %s, but %s", n.when(stopAt), n.exempt("idle_timeout_h"))
		return b.String()
	}
	fmt.Fprintf(&b, "; it stops at %s unless used. %s; to keep it: touch /workspace/.keep-alive or %s",
		n.when(stopAt), saveHint, n.keepHint())
	return b.String()
}

func (n notes) runtimeWarning(maxRuntime time.Duration, stopAt time.Time) string {
	if n.in.Exempt.Runtime {
		return fmt.Sprintf("%s%s%s: reaches its maximum runtime of %s at %s, but %s; it keeps running",
			noticePrefix, infoPrefix, n.in.Project, ShortDuration(maxRuntime), n.when(stopAt), n.exempt("max_runtime_h"))
	}
	return fmt.Sprintf("%s%s: reaches its maximum runtime of %s at %s; it stops then whatever it does. %s; %s",
		noticePrefix, n.in.Project, ShortDuration(maxRuntime), n.when(stopAt), saveHint, askHint)
}

func (n notes) idleStop(idleFor time.Duration) string {
	return fmt.Sprintf("%s%s: stopped: idle for %s %s. %s. Next time touch /workspace/.keep-alive or run %s to keep an idle container",
		noticePrefix, n.in.Project, ShortDuration(idleFor), n.unused(), freshHint, n.keepHint())
}

func (n notes) runtimeStop(maxRuntime time.Duration) string {
	return fmt.Sprintf("%s%s: stopped: maximum runtime %s reached. %s; %s",
		noticePrefix, n.in.Project, ShortDuration(maxRuntime), freshHint, askHint)
}

// pressure tells an idle GPU holder that someone waits. stopAt is zero when
// no idle stop is coming (no timeout, or exempt).
func (n notes) pressure(idleFor time.Duration, stopAt time.Time) string {
	if !stopAt.IsZero() {
		return fmt.Sprintf("%s%s: someone is waiting for a GPU; your container is idle and stops at %s unless used",
			noticePrefix, n.in.Project, n.when(stopAt))
	}
	prefix := noticePrefix
	if n.in.Exempt.Idle {
		prefix += infoPrefix
	}
	return fmt.Sprintf("%s%s: someone is waiting for a GPU; your container has been idle for %s; please end it if you no longer need it",
		prefix, n.in.Project, ShortDuration(idleFor))
}

// when is "16:40 UTC (in 6m)", with the date when it is not today (UTC).
func (n notes) when(t time.Time) string {
	t, now := t.UTC(), n.now.UTC()
	layout := "15:04 UTC"
	if y, m, d := t.Date(); y != now.Year() || m != now.Month() || d != now.Day() {
		layout = "Jan 2 15:04 UTC"
	}
	return t.Format(layout) + " (in " + ShortDuration(t.Sub(now)) + ")"
}

// ShortDuration is "45s", "1m30s", "6m", "1h30m", "24h": seconds only
// where they matter (short test timeouts), minutes otherwise.
func ShortDuration(d time.Duration) string {
	if d < 0 {
		d = 0
	}
	if d < 2*time.Minute {
		d = d.Round(time.Second)
	} else {
		d = d.Round(time.Minute)
	}
	h, m, s := d/time.Hour, d%time.Hour/time.Minute, d%time.Minute/time.Second
	var b strings.Builder
	if h > 0 {
		fmt.Fprintf(&b, "%dh", h)
	}
	if m > 0 {
		fmt.Fprintf(&b, "%dm", m)
	}
	if s > 0 || b.Len() == 0 {
		fmt.Fprintf(&b, "%ds", s)
	}
	return b.String()
}
