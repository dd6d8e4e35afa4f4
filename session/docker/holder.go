package docker

import (
	"context"
	"time"

	"github.com/docker/docker/api/types/container"

	"github.com/ds01/ds01-gateway/session/runtime"
)

// A network holder owns one project's network namespace on the user's
// network, so that the project's container can join it (NetworkMode
// container:<holder>) and start with no network setup: on a user-defined
// network Docker's start spends most of its time on the embedded DNS
// resolver (a re-exec and a dozen iptables calls in the new namespace).
// The holder shares nothing else with the project's container: Docker
// gives the joined container its own pid, mount and ipc namespaces, and
// copies the holder's hostname into its own UTS namespace (Docker refuses
// a Hostname of its own with container: mode, so it is set here).

// Holder limits: docker-init and sleep need next to nothing; the limits
// bound what a compromise of either could do.
const (
	holderPids     = 8
	holderMemory   = 32 << 20
	holderNanoCPUs = 50_000_000 // 0.05 CPU
	holderUser     = "65534:65534"
)

var _ runtime.NetworkHolders = (*Docker)(nil)

// LaunchHolder creates and starts a locked-down holder on spec.Network,
// which it creates if needed.
func (d *Docker) LaunchHolder(ctx context.Context, spec runtime.HolderSpec) (string, error) {
	t0 := time.Now()
	if err := d.ensureNetwork(ctx, spec.Network, spec.NetworkLabels); err != nil {
		return "", err
	}
	cfg, host := holderConfig(spec)
	id, err := d.createStart(ctx, cfg, host, spec.Name)
	if d.networkGone(ctx, err, spec.Network, spec.NetworkLabels) {
		id, err = d.createStart(ctx, cfg, host, spec.Name)
	}
	if err != nil {
		return "", err
	}
	d.log.Debug("holder launched", "container", id[:min(12, len(id))], "took", time.Since(t0))
	return id, nil
}

// holderConfig is a holder's container: nobody, no capabilities, no
// privilege gain, a read-only root, no mounts, no logs and tiny limits.
func holderConfig(spec runtime.HolderSpec) (*container.Config, *container.HostConfig) {
	init := true
	pids := int64(holderPids)
	cfg := &container.Config{
		Image:      spec.Image,
		Hostname:   spec.Hostname,
		Labels:     withLabel(spec.Labels, labelIODir, ""),
		User:       holderUser,
		Entrypoint: []string{},
		Cmd:        idleCmd,
		WorkingDir: "/",
	}
	host := &container.HostConfig{
		NetworkMode:    container.NetworkMode(spec.Network),
		Init:           &init,
		CapDrop:        []string{"ALL"},
		SecurityOpt:    []string{"no-new-privileges:true"},
		ReadonlyRootfs: true,
		LogConfig:      container.LogConfig{Type: "none"},
		Resources: container.Resources{
			Memory:    holderMemory,
			NanoCPUs:  holderNanoCPUs,
			PidsLimit: &pids,
		},
	}
	return cfg, host
}
