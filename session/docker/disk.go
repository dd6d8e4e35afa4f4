package docker

import (
	"context"
	"fmt"
	"math"
	"time"

	cerrdefs "github.com/containerd/errdefs"
	"github.com/docker/docker/api/types"
	"github.com/docker/docker/api/types/build"
	"github.com/docker/docker/api/types/filters"
	"github.com/docker/docker/api/types/image"
	"github.com/docker/docker/api/types/network"
	"github.com/docker/docker/api/types/versions"

	"github.com/ds01/ds01-gateway/session/runtime"
)

// Images lists the images carrying every one of labels, tagged or not,
// intermediate layers left out.
func (d *Docker) Images(ctx context.Context, labels map[string]string) ([]runtime.Image, error) {
	f := filters.NewArgs()
	for k, v := range labels {
		f.Add("label", k+"="+v)
	}
	list, err := d.cli.ImageList(ctx, image.ListOptions{Filters: f})
	if err != nil {
		return nil, fmt.Errorf("list images: %w", err)
	}
	out := make([]runtime.Image, 0, len(list))
	for _, s := range list {
		img := runtime.Image{ID: s.ID, Created: time.Unix(s.Created, 0), Size: s.Size, Labels: s.Labels}
		for _, t := range s.RepoTags {
			if t != "<none>:<none>" {
				img.Tags = append(img.Tags, t)
			}
		}
		out = append(out, img)
	}
	return out, nil
}

// RemoveUnused removes the image id and its untagged parents, but only an
// image that no tag names: removing by ID an image with one tag would
// untag and delete it. The engine itself refuses an image that a
// container of any state uses, or that another image builds on: those
// report false, as does an image already gone.
func (d *Docker) RemoveUnused(ctx context.Context, id string) (bool, error) {
	return d.removeUnused(ctx, id, true)
}

// removeUnused is RemoveUnused; prune also removes the untagged parents
// nothing else uses.
func (d *Docker) removeUnused(ctx context.Context, id string, prune bool) (bool, error) {
	info, err := d.cli.ImageInspect(ctx, id)
	if cerrdefs.IsNotFound(err) {
		return false, nil
	}
	if err != nil {
		return false, fmt.Errorf("inspect image %s: %w", shortID(id), err)
	}
	if len(info.RepoTags) > 0 {
		return false, nil
	}
	_, err = d.cli.ImageRemove(ctx, info.ID, image.RemoveOptions{PruneChildren: prune})
	switch {
	case err == nil:
		return true, nil
	case cerrdefs.IsNotFound(err), cerrdefs.IsConflict(err):
		return false, nil
	}
	return false, fmt.Errorf("remove image %s: %w", shortID(id), err)
}

// PruneBuildCache removes the engine's build cache beyond keep bytes,
// least recently used first, and returns the bytes it freed. Docker 20.10
// (API 1.41) takes keep-storage; API 1.48 renamed it max-used-space.
func (d *Docker) PruneBuildCache(ctx context.Context, keep int64) (int64, error) {
	if keep <= 0 {
		return 0, fmt.Errorf("prune build cache: keep %d bytes: must be positive", keep)
	}
	opts := build.CachePruneOptions{KeepStorage: keep}
	if !versions.LessThan(d.cli.ClientVersion(), "1.48") {
		opts = build.CachePruneOptions{MaxUsedSpace: keep}
	}
	rep, err := d.cli.BuildCachePrune(ctx, opts)
	if err != nil {
		return 0, fmt.Errorf("prune build cache: %w", err)
	}
	return int64(min(rep.SpaceReclaimed, math.MaxInt64)), nil
}

// BuildCacheSize is the engine's build cache, as docker system df counts it.
func (d *Docker) BuildCacheSize(ctx context.Context) (int64, error) {
	du, err := d.cli.DiskUsage(ctx, types.DiskUsageOptions{Types: []types.DiskUsageObject{types.BuildCacheObject}})
	if err != nil {
		return 0, fmt.Errorf("build cache size: %w", err)
	}
	var n int64
	for _, c := range du.BuildCache {
		if c != nil && !c.Shared {
			n += c.Size
		}
	}
	return n, nil
}

func shortID(id string) string {
	if len(id) > 19 {
		return id[:19]
	}
	return id
}

// leftoverTimeout bounds removing a failed build's images.
const leftoverTimeout = time.Minute

// keepLeftovers remembers the images a failed build of ref committed: the
// classic builder keeps them, untagged, and they are the cache that makes
// the user's next attempt fast. Once that next build of ref has ended,
// whichever way, the previous failure's images go, except those it built
// on (the engine refuses an image another one builds on). Only images a
// step of our own build committed are removed, one by one without their
// parents: a parent may be a base nobody tagged.
func (d *Docker) keepLeftovers(ref string, buildErr error, committed []string) {
	prev, _ := d.leftovers.LoadAndDelete(ref)
	if buildErr != nil && len(committed) > 0 {
		d.leftovers.Store(ref, committed)
	}
	ids, _ := prev.([]string)
	if len(ids) == 0 {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), leftoverTimeout)
	defer cancel()
	removed := 0
	for i := len(ids) - 1; i >= 0; i-- {
		ok, err := d.removeUnused(ctx, ids[i], false)
		if err != nil {
			d.log.Warn("remove a failed build's image", "ref", ref, "image", ids[i], "err", err)
			continue
		}
		if ok {
			removed++
		}
	}
	d.log.Info("removed a failed build's images", "ref", ref, "removed", removed, "of", len(ids))
}

// networkGone reports whether err is the engine not finding the network
// name, which this process believed to exist: someone removed it (user
// remove --purge, an admin). It then creates it again, so the caller can
// retry once.
func (d *Docker) networkGone(ctx context.Context, err error, name string, labels map[string]string) bool {
	if !networkMissing(err, name) {
		return false
	}
	d.networks.Delete(name)
	if nerr := d.ensureNetwork(ctx, name, labels); nerr != nil {
		d.log.Warn("recreate network", "network", name, "err", nerr)
		return false
	}
	return true
}

// RemoveNetwork removes the network name if it carries every one of
// labels (so only a network the gateway made), and reports whether it
// did. The engine refuses a network a container is attached to.
func (d *Docker) RemoveNetwork(ctx context.Context, name string, labels map[string]string) (bool, error) {
	n, err := d.cli.NetworkInspect(ctx, name, network.InspectOptions{})
	if cerrdefs.IsNotFound(err) {
		return false, nil
	}
	if err != nil {
		return false, fmt.Errorf("inspect network %s: %w", name, err)
	}
	for k, v := range labels {
		if n.Labels[k] != v {
			return false, fmt.Errorf("network %s is not this gateway's (label %s=%q): left alone", name, k, n.Labels[k])
		}
	}
	if err := d.cli.NetworkRemove(ctx, n.ID); err != nil && !cerrdefs.IsNotFound(err) {
		return false, fmt.Errorf("remove network %s: %w", name, err)
	}
	d.networks.Delete(name)
	return true, nil
}
