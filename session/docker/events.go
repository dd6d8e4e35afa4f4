package docker

import (
	"context"
	"errors"
	"fmt"
	"io"

	"github.com/docker/docker/api/types/events"
	"github.com/docker/docker/api/types/filters"

	"github.com/ds01/ds01-gateway/session/runtime"
)

var _ runtime.StopWatcher = (*Docker)(nil)

// stopActions are the container events that may end one: die (its init
// exited, killed or not), destroy (docker rm -f, which may come without a
// die the gateway saw), and oom, which the caller checks, since a container
// whose init survives an OOM kill of a child still runs.
var stopActions = []events.Action{events.ActionDie, events.ActionDestroy, events.ActionOOM}

// WatchStops follows the engine's event stream, filtered by the engine to
// the labelled containers' stop actions: an idle engine sends nothing, so
// watching costs nothing until a container ends.
func (d *Docker) WatchStops(ctx context.Context, labels map[string]string, ready func(), stopped func(id string)) error {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel() // ends the client's reading goroutine
	args := filters.NewArgs(filters.Arg("type", string(events.ContainerEventType)))
	for _, a := range stopActions {
		args.Add("event", string(a))
	}
	for k, v := range labels {
		if v == "" {
			args.Add("label", k)
		} else {
			args.Add("label", k+"="+v)
		}
	}
	// Events returns once the engine has answered the request (or it
	// failed, which the error channel tells next): events from then on are
	// delivered, so what ready's sweep misses the stream has.
	msgs, errs := d.cli.Events(ctx, events.ListOptions{Filters: args})
	ready()
	for {
		select {
		case m := <-msgs:
			if m.Actor.ID != "" {
				stopped(m.Actor.ID)
			}
		case err, ok := <-errs:
			if ctx.Err() != nil {
				return ctx.Err()
			}
			if !ok || err == nil || errors.Is(err, io.EOF) {
				return errors.New("container events: the engine closed the stream")
			}
			return fmt.Errorf("container events: %w", err)
		}
	}
}
