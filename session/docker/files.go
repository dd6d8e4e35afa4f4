package docker

import (
	"archive/tar"
	"context"
	"errors"
	"fmt"
	"io"
	"time"

	cerrdefs "github.com/containerd/errdefs"
	"github.com/docker/docker/api/types/container"
)

// maxReadFile bounds files read out of a container (passwd, group).
const maxReadFile = 4 << 20

// readFile reads one regular file from a (possibly not started) container.
// A missing file reads as empty: minimal images may lack /etc/group.
func (d *Docker) readFile(ctx context.Context, id, p string) ([]byte, error) {
	rc, _, err := d.cli.CopyFromContainer(ctx, id, p)
	if cerrdefs.IsNotFound(err) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("read %s from container: %w", p, err)
	}
	defer rc.Close()
	tr := tar.NewReader(rc)
	for {
		hdr, err := tr.Next()
		if errors.Is(err, io.EOF) {
			return nil, nil
		}
		if err != nil {
			return nil, fmt.Errorf("read %s from container: %w", p, err)
		}
		if hdr.Typeflag == tar.TypeReg {
			return io.ReadAll(io.LimitReader(tr, maxReadFile))
		}
	}
}

// ImageFiles reads files out of an image through a created, never
// started, container: the engine has no API to read an image's files.
func (d *Docker) ImageFiles(ctx context.Context, image string, paths ...string) (map[string][]byte, error) {
	created, err := d.cli.ContainerCreate(ctx, &container.Config{Image: image, Entrypoint: []string{}, Cmd: []string{"true"},
		Labels: map[string]string{"ds01.scratch": "1"}}, &container.HostConfig{NetworkMode: "none"}, nil, nil, "")
	if err != nil {
		return nil, fmt.Errorf("read files of %s: %w", image, err)
	}
	defer func() {
		rmCtx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 30*time.Second)
		defer cancel()
		if err := d.cli.ContainerRemove(rmCtx, created.ID, container.RemoveOptions{Force: true}); err != nil {
			d.log.Warn("remove scratch container", "container", created.ID, "err", err)
		}
	}()
	out := make(map[string][]byte, len(paths))
	for _, p := range paths {
		data, err := d.readFile(ctx, created.ID, p)
		if err != nil {
			return nil, err
		}
		out[p] = data
	}
	return out, nil
}
