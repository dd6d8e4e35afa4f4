package commands

import (
	"context"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/ds01/ds01-gateway/observe/eventlog"
	"github.com/ds01/ds01-gateway/store"
)

// Event listing bounds: a default that fits a screen, and a cap so one
// command cannot ask the store for its whole history.
const (
	defaultEvents = 50
	maxEvents     = 10000
)

func events() *command {
	return &command{
		name: "events", flags: []flagSpec{
			{name: "--since", kind: valueFlag, arg: "DURATION|TIME", help: "only events after this: 1h, 2d, or 2026-12-01T09:00:00Z"},
			{name: "--limit", short: "-n", kind: valueFlag, arg: "N", help: fmt.Sprintf("the last N events (default %d, at most %d)", defaultEvents, maxEvents)},
			{name: "--all", short: "-a", kind: boolFlag, help: "every user's events (admins)", admin: true},
			{name: "--user", kind: valueFlag, arg: "NAME", help: "one user's events (admins)", admin: true},
			{name: "--format", kind: valueFlag, arg: "table|json", help: "json: one DS01 event envelope per line, as in the events file"},
		},
		summary: "Show your events (builds, containers started and stopped, GPUs), oldest first.",
		run: func(ctx context.Context, env *Env, p *parsed) error {
			f := store.EventFilter{User: env.User.Name, Limit: defaultEvents}
			if v := p.value("--limit"); v != "" {
				n, err := strconv.Atoi(v)
				if err != nil || n < 1 || n > maxEvents {
					return usagef("--limit: want a number from 1 to %d, got %q", maxEvents, v)
				}
				f.Limit = n
			}
			if v := p.value("--since"); v != "" {
				t, err := parseSince(v, time.Now())
				if err != nil {
					return err
				}
				f.Since = t
			}
			all, who := p.bools["--all"], p.value("--user")
			if all && who != "" {
				return usagef("give --all or --user, not both")
			}
			switch {
			case all:
				f.User = ""
			case who != "":
				f.User = who
			}
			if f.User != env.User.Name {
				env.Service.Audit(ctx, env.User, "events", map[string]any{"user": orAll(f.User)})
			}
			es, err := env.Service.ListEvents(ctx, f)
			if err != nil {
				return err
			}
			slices.Reverse(es) // the store gives newest first; a log reads oldest first
			if isJSON(p) {
				// The events file's lines, DS01 names and all.
				for _, e := range es {
					if _, err := env.Stdout.Write(eventlog.Line(e)); err != nil { // newline included
						return err
					}
				}
				return nil
			}
			if len(es) == 0 {
				env.notef("no events")
				return nil
			}
			tw := table(env.Stdout)
			fmt.Fprintln(tw, "TIME\tUSER\tEVENT\tPROJECT\tDETAILS")
			for _, e := range es {
				fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\n", e.Time.Local().Format("2006-01-02 15:04:05"), orDash(e.User), e.Type, orDash(e.Project), eventDetails(e))
			}
			return tw.Flush()
		},
	}
}

func orAll(user string) string {
	if user == "" {
		return "*"
	}
	return user
}

// parseSince reads --since: a duration back from now (90m, 1h, 2d) or a
// time (RFC 3339, or a date).
func parseSince(v string, now time.Time) (time.Time, error) {
	if d, ok := strings.CutSuffix(v, "d"); ok {
		if n, err := strconv.Atoi(d); err == nil && n > 0 && n <= 3660 {
			return now.Add(-time.Duration(n) * 24 * time.Hour), nil
		}
	}
	if d, err := time.ParseDuration(v); err == nil && d > 0 {
		return now.Add(-d), nil
	}
	for _, layout := range []string{time.RFC3339Nano, "2006-01-02T15:04", "2006-01-02"} {
		if t, err := time.ParseInLocation(layout, v, time.Local); err == nil {
			return t, nil
		}
	}
	return time.Time{}, usagef("--since: want a duration like 1h or 2d, or a time like 2026-12-01T09:00:00Z, got %q", v)
}

// eventDetails is an event's details on one table line.
func eventDetails(e store.Event) string {
	var parts []string
	if e.Duration > 0 {
		parts = append(parts, e.Duration.Round(time.Second).String())
	}
	if d := strings.Join(strings.Fields(e.Details), " "); d != "" {
		parts = append(parts, d)
	}
	if len(parts) == 0 {
		return "-"
	}
	return strings.Join(parts, ", ")
}
