package docker

import (
	"context"
	"fmt"
	"time"

	cerrdefs "github.com/containerd/errdefs"
	"github.com/docker/docker/api/types/container"
	"github.com/docker/docker/api/types/filters"
	"github.com/docker/docker/api/types/mount"

	"github.com/ds01/ds01-gateway/session/runtime"
)

// idleCmd keeps a project container alive between sessions; docker-init
// (Init) runs as PID 1 in front of it so orphans of exec'd processes get
// reaped and SIGTERM stops the container at once.
var idleCmd = []string{"sleep", "infinity"}

// stopGrace is how long processes get between SIGTERM and SIGKILL on retire.
const stopGrace = 2

// Launch creates the container, places spec.Files, and starts it.
func (d *Docker) Launch(ctx context.Context, spec runtime.ContainerSpec) (string, error) {
	t0 := time.Now()
	network := container.NetworkMode(spec.Network)
	if spec.NetworkHolder != "" {
		// The holder's namespace is on the network already; Docker
		// refuses a hostname of our own here (the holder's is used).
		network = container.NetworkMode("container:" + spec.NetworkHolder)
		spec.Hostname = ""
	} else if err := d.ensureNetwork(ctx, spec.Network, spec.NetworkLabels); err != nil {
		return "", err
	}
	tNet := time.Since(t0)
	init := true
	cfg := &container.Config{
		Image:      spec.Image,
		Hostname:   spec.Hostname,
		Labels:     spec.Labels,
		User:       spec.User,
		Env:        spec.Env,
		WorkingDir: spec.Workdir,
		Entrypoint: []string{},
		Cmd:        idleCmd,
	}
	mounts := make([]mount.Mount, 0, len(spec.Mounts)+1)
	for _, m := range spec.Mounts {
		mounts = append(mounts, mount.Mount{Type: mount.TypeBind, Source: m.Source, Target: m.Target, ReadOnly: m.ReadOnly})
	}
	// The label is set even when empty: an image's own ds01.io label
	// would otherwise name the host directory the gateway makes FIFOs in.
	cfg.Labels = withLabel(cfg.Labels, labelIODir, spec.IODir)
	if spec.IODir != "" {
		// Read-only: processes open the FIFOs in it, nobody creates files.
		mounts = append(mounts, mount.Mount{Type: mount.TypeBind, Source: spec.IODir, Target: ioMountPoint, ReadOnly: true})
	}
	pids := spec.Limits.PidsLimit
	host := &container.HostConfig{
		NetworkMode: network,
		Mounts:      mounts,
		Init:        &init,
		CapDrop:     []string{"ALL"},
		SecurityOpt: []string{"no-new-privileges:true"},
		ShmSize:     spec.Limits.ShmSize,
		LogConfig:   container.LogConfig{Type: "none"},
		Resources: container.Resources{
			Memory:   spec.Limits.Memory,
			NanoCPUs: spec.Limits.NanoCPUs,
		},
	}
	if pids > 0 {
		host.PidsLimit = &pids
	}
	if len(spec.GPUs) > 0 {
		// Exactly these devices, by UUID, through the NVIDIA runtime hook.
		host.DeviceRequests = []container.DeviceRequest{{
			Driver: "nvidia", DeviceIDs: spec.GPUs, Capabilities: [][]string{{"gpu"}},
		}}
	}
	id, err := d.createStart(ctx, cfg, host, spec.Name)
	if spec.NetworkHolder == "" && d.networkGone(ctx, err, spec.Network, spec.NetworkLabels) {
		// The engine lost the network we had just ensured (or someone
		// removed it): it is there again now; try once more.
		d.log.Info("launch: network not found, retrying once", "network", spec.Network)
		id, err = d.createStart(ctx, cfg, host, spec.Name)
	}
	if err != nil {
		return "", err
	}
	if spec.IODir != "" {
		d.ioDirs.Store(id, spec.IODir)
	}
	d.log.Debug("launch timings", "container", id[:min(12, len(id))], "network", tNet, "create_start", time.Since(t0)-tNet, "joined", spec.NetworkHolder != "")
	return id, nil
}

// createStart creates the container and starts it; a container that was
// created but did not start is removed again.
func (d *Docker) createStart(ctx context.Context, cfg *container.Config, host *container.HostConfig, name string) (string, error) {
	t0 := time.Now()
	created, err := d.cli.ContainerCreate(ctx, cfg, host, nil, nil, name)
	if err != nil {
		return "", fmt.Errorf("create container: %w", err)
	}
	id := created.ID
	tCreate := time.Since(t0)
	defer func() { d.log.Debug("container create and start", "create", tCreate, "start", time.Since(t0)-tCreate) }()
	if err := d.cli.ContainerStart(ctx, id, container.StartOptions{}); err != nil {
		// Remove on a fresh context: the caller's may be what failed.
		rmCtx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 30*time.Second)
		defer cancel()
		if rmErr := d.cli.ContainerRemove(rmCtx, id, container.RemoveOptions{Force: true, RemoveVolumes: true}); rmErr != nil && !cerrdefs.IsNotFound(rmErr) {
			d.log.Warn("remove failed container", "container", id, "err", rmErr)
		}
		return "", fmt.Errorf("start container: %w", err)
	}
	return id, nil
}

func withLabel(labels map[string]string, k, v string) map[string]string {
	out := make(map[string]string, len(labels)+1)
	for lk, lv := range labels {
		out[lk] = lv
	}
	out[k] = v
	return out
}

// Running reports whether the container exists and runs.
func (d *Docker) Running(ctx context.Context, id string) (bool, error) {
	info, err := d.cli.ContainerInspect(ctx, id)
	if cerrdefs.IsNotFound(err) {
		return false, nil
	}
	if err != nil {
		return false, fmt.Errorf("inspect container: %w", err)
	}
	return info.State != nil && info.State.Running, nil
}

// Retire stops the container with a short grace and removes it, with its
// anonymous volumes (an image's VOLUME makes one per container, holding
// whatever was written there). A container that is already gone is not an
// error.
func (d *Docker) Retire(ctx context.Context, id string) error {
	grace := stopGrace
	err := d.cli.ContainerStop(ctx, id, container.StopOptions{Timeout: &grace})
	if err != nil && !cerrdefs.IsNotFound(err) {
		d.log.Warn("stop container", "container", id, "err", err)
	}
	d.ioDirs.Delete(id)
	d.forgetInit(id)
	d.Forget(id)
	err = d.cli.ContainerRemove(ctx, id, container.RemoveOptions{Force: true, RemoveVolumes: true})
	if cerrdefs.IsConflict(err) {
		// "removal already in progress": another remover (user remove
		// --purge beside the gateway, the gateway's own watch) got there
		// first; the container is as good as gone once theirs ends.
		err = d.waitRemoved(ctx, id, err)
	}
	if err != nil && !cerrdefs.IsNotFound(err) {
		return fmt.Errorf("remove container: %w", err)
	}
	return nil
}

// removeWait bounds waitRemoved: a removal takes well under a second,
// unless the engine is stuck.
const removeWait = 30 * time.Second

// waitRemoved waits until the container id, which another caller is
// removing, is gone; if it is still there after removeWait, or ctx ends,
// it returns conflict, the error that said so.
func (d *Docker) waitRemoved(ctx context.Context, id string, conflict error) error {
	deadline := time.Now().Add(removeWait)
	for time.Now().Before(deadline) {
		if _, err := d.cli.ContainerInspect(ctx, id); cerrdefs.IsNotFound(err) {
			return nil
		}
		select {
		case <-ctx.Done():
			return conflict
		case <-time.After(100 * time.Millisecond):
		}
	}
	return conflict
}

// List returns all containers, running or not, that carry every label given.
func (d *Docker) List(ctx context.Context, labels map[string]string) ([]runtime.Container, error) {
	args := filters.NewArgs()
	for k, v := range labels {
		if v == "" {
			args.Add("label", k)
		} else {
			args.Add("label", k+"="+v)
		}
	}
	list, err := d.cli.ContainerList(ctx, container.ListOptions{All: true, Filters: args})
	if err != nil {
		return nil, fmt.Errorf("list containers: %w", err)
	}
	out := make([]runtime.Container, 0, len(list))
	for _, c := range list {
		name := ""
		if len(c.Names) > 0 {
			name = c.Names[0]
			if len(name) > 0 && name[0] == '/' {
				name = name[1:]
			}
		}
		out = append(out, runtime.Container{
			ID:      c.ID,
			Name:    name,
			Labels:  c.Labels,
			ImageID: c.ImageID,
			Running: c.State == "running",
			Created: time.Unix(c.Created, 0).UTC(),
		})
	}
	return out, nil
}
