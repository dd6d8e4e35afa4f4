// Command usagebench measures the gateway's lifecycle sampling against
// real containers: the CPU time of one sweep of runtime.Sampler.Usage over
// every container carrying a label, as the gateway's sweep calls it.
// bench/usage.sh starts the containers and runs it; see there.
//
// It prints one line of key=value pairs (seconds), for the script.
package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net/netip"
	"os"
	"strings"
	"time"

	"golang.org/x/sys/unix"

	"github.com/ds01/ds01-gateway/session/docker"
)

func main() {
	label := flag.String("label", "", "key=value of the containers to sample")
	sweeps := flag.Int("sweeps", 20, "sweeps to average over")
	flag.Parse()
	if err := run(*label, *sweeps); err != nil {
		fmt.Fprintln(os.Stderr, "usagebench:", err)
		os.Exit(1)
	}
}

func run(label string, sweeps int) error {
	k, v, ok := strings.Cut(label, "=")
	if !ok || sweeps < 1 {
		return fmt.Errorf("want --label key=value and --sweeps >= 1")
	}
	ctx := context.Background()
	d, err := docker.New(ctx, slog.New(slog.NewTextHandler(io.Discard, nil)), netip.MustParsePrefix("10.201.0.0/16"))
	if err != nil {
		return err
	}
	defer d.Close()
	list, err := d.List(ctx, map[string]string{k: v})
	if err != nil {
		return err
	}
	ids := make([]string, 0, len(list))
	for _, c := range list {
		if c.Running {
			ids = append(ids, c.ID)
		}
	}
	if len(ids) == 0 {
		return fmt.Errorf("no running container labelled %s", label)
	}
	sweep := func() error {
		for _, id := range ids {
			if _, err := d.Usage(ctx, id); err != nil {
				return err
			}
		}
		return nil
	}
	// The first sweep opens each container's reader: one engine inspect
	// each, once per container's life.
	open, openWall, err := measure(sweep)
	if err != nil {
		return err
	}
	var cpu, wall time.Duration
	for range sweeps {
		c, w, err := measure(sweep)
		if err != nil {
			return err
		}
		cpu += c
		wall += w
	}
	n := time.Duration(sweeps)
	fmt.Printf("containers=%d sweep_cpu=%.6f sweep_wall=%.6f first_sweep_cpu=%.6f first_sweep_wall=%.6f\n",
		len(ids), (cpu / n).Seconds(), (wall / n).Seconds(), open.Seconds(), openWall.Seconds())
	return nil
}

// measure returns the CPU time (user + system, every thread) and the wall
// time fn took.
func measure(fn func() error) (cpu, wall time.Duration, err error) {
	c0, t0 := cpuTime(), time.Now()
	err = fn()
	return cpuTime() - c0, time.Since(t0), err
}

func cpuTime() time.Duration {
	var ru unix.Rusage
	if err := unix.Getrusage(unix.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}
