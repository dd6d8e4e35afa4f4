package docker

import (
	"context"
	"fmt"

	"github.com/docker/docker/api/types/network"
	"github.com/docker/docker/client"
	"github.com/docker/docker/errdefs"
)

// ensureNetwork creates a bridge network if it does not exist. Docker keeps
// separate bridge networks from reaching each other, which is what isolates
// one user's containers from another's.
func (d *Docker) ensureNetwork(ctx context.Context, name string, labels map[string]string) error {
	if name == "" {
		return nil
	}
	if _, ok := d.networks.Load(name); ok {
		return nil
	}
	d.netMu.Lock()
	defer d.netMu.Unlock()
	if _, ok := d.networks.Load(name); ok {
		return nil
	}
	_, err := d.cli.NetworkInspect(ctx, name, network.InspectOptions{})
	if client.IsErrNotFound(err) {
		_, err = d.cli.NetworkCreate(ctx, name, network.CreateOptions{
			Driver: "bridge",
			Labels: labels,
		})
		if errdefs.IsConflict(err) {
			err = nil // created by another gateway process meanwhile
		}
	}
	if err != nil {
		return fmt.Errorf("network %s: %w", name, err)
	}
	d.networks.Store(name, true)
	return nil
}
