// Package docker implements the session runtime on a local Docker engine.
package docker

import (
	"context"
	"fmt"
	"log/slog"
	"net/netip"
	"sync"

	"github.com/docker/docker/client"

	"github.com/ds01/ds01-gateway/session/runtime"
)

// Docker talks to the engine named by the usual DOCKER_HOST environment.
type Docker struct {
	cli *client.Client
	log *slog.Logger

	// networks remembers networks known to exist, so a warm launch does
	// not pay an inspect per login.
	networks sync.Map
	netMu    sync.Mutex

	// pool is where per-user networks get their subnets.
	pool netip.Prefix

	// cg places builds under per-user cgroups; learned from the engine
	// on the first build.
	cgMu sync.Mutex
	cg   *buildCgroups

	// ioDirs maps a container ID to the host side of its FIFO directory,
	// or "" for containers without one.
	ioDirs sync.Map

	// inits maps a container ID to its pidfd-pinned init (pty.go);
	// ptyFallback logs once why a terminal fell back to the engine's.
	inits       sync.Map
	ptyFallback sync.Once

	// readers maps a container ID to its *cgroup.Reader (usage.go).
	readers sync.Map

	// leftovers maps an image reference to the images its last build
	// committed before failing (disk.go).
	leftovers sync.Map

	// pushes holds a *sync.Mutex per remote reference (push.go).
	pushes sync.Map
}

// ioMountPoint is where a container sees its FIFO directory; labelIODir
// records the host side, so containers adopted after a restart keep the
// fast path.
const (
	ioMountPoint = runtime.IOMountPoint
	labelIODir   = "ds01.io"
)

var (
	_ runtime.Runtime = (*Docker)(nil)
	_ runtime.Builder = (*Docker)(nil)
)

// New connects to the Docker engine and checks that it answers. Networks
// the gateway creates take their subnets from pool.
func New(ctx context.Context, log *slog.Logger, pool netip.Prefix) (*Docker, error) {
	cli, err := client.NewClientWithOpts(client.FromEnv, client.WithAPIVersionNegotiation())
	if err != nil {
		return nil, fmt.Errorf("docker client: %w", err)
	}
	if _, err := cli.Ping(ctx); err != nil {
		cli.Close()
		return nil, fmt.Errorf("docker engine not reachable (is dockerd running?): %w", err)
	}
	cli.NegotiateAPIVersion(ctx)
	return &Docker{cli: cli, log: log, pool: pool}, nil
}

// Close releases the client's connections.
func (d *Docker) Close() error { return d.cli.Close() }
