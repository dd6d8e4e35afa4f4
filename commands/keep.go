package commands

import (
	"context"
	"fmt"
	"time"

	"github.com/ds01/ds01-gateway/session"
	"github.com/ds01/ds01-gateway/session/lifecycle"
	"github.com/ds01/ds01-gateway/store"
)

// defaultKeep is container-keep's lease without --for.
const defaultKeep = 4 * time.Hour

func containerKeep() *command {
	return &command{
		name: "container-keep", aliases: []string{"keep-alive"}, args: "<project>", minArgs: 1, maxArgs: 1,
		summary: "Keep a running container from its idle stop for a while (never past its maximum runtime).",
		flags:   []flagSpec{{name: "--for", kind: valueFlag, arg: "DURATION", help: "how long, e.g. 4h or 90m (default 4h; the admin caps it)"}},
		run: func(ctx context.Context, env *Env, p *parsed) error {
			d := defaultKeep
			if v := p.value("--for"); v != "" {
				var err error
				if d, err = time.ParseDuration(v); err != nil || d <= 0 {
					return usagef("--for: want a duration like 4h or 90m, got %q", v)
				}
			}
			project := p.args[0]
			now := time.Now()
			until, err := env.Service.Keep(ctx, env.User, project, d)
			if err != nil {
				return err
			}
			env.notef("%s is kept from its idle stop until %s (%s)", project, until.UTC().Format("Jan 2 15:04 UTC"), "in "+lifecycle.ShortDuration(until.Sub(now)))
			if until.Before(now.Add(d).Add(-time.Minute)) {
				env.notef("that is less than you asked for: the maximum runtime or someone waiting for a GPU caps it")
			}
			return nil
		},
	}
}

// runState is a container's state for people: attached N, detached
// or retired, and whether it runs an old image.
func runState(c session.ContainerInfo) string {
	if c.State != store.StateRunning {
		return c.State
	}
	s := fmt.Sprintf("attached %d", c.Connections)
	if c.Connections == 0 {
		s = "no connection"
		if c.Life.Detached {
			s = "detached"
		}
	}
	if !c.Current {
		s += " (old image)"
	}
	return s
}

// nextStop is the next deadline with its reason, and what holds it off.
func nextStop(l session.Life) string {
	s := "-"
	if !l.Deadline.IsZero() {
		s = fmt.Sprintf("%s (%s)", when(l.Deadline), l.DeadlineReason)
	}
	if !l.KeepUntil.IsZero() {
		s += ", kept until " + when(l.KeepUntil)
	}
	if l.Exempt != "" {
		s += ", exempt: " + l.Exempt
	}
	return s
}
