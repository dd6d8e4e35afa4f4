package docker

import (
	"archive/tar"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"path"
	"strings"
	"time"

	"github.com/docker/docker/api/types/container"
	"github.com/docker/docker/client"

	"github.com/ds01/ds01-gateway/session/runtime"
)

// maxReadFile bounds files read out of a container (passwd, group).
const maxReadFile = 4 << 20

// readFile reads one regular file from a (possibly not started) container.
// A missing file reads as empty: minimal images may lack /etc/group.
func (d *Docker) readFile(ctx context.Context, id, p string) ([]byte, error) {
	rc, _, err := d.cli.CopyFromContainer(ctx, id, p)
	if client.IsErrNotFound(err) {
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

// writeFiles places files into the container's root filesystem with the
// ownership and modes given in their tar headers.
func (d *Docker) writeFiles(ctx context.Context, id string, files []runtime.File) error {
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	now := time.Now()
	for _, f := range files {
		name := strings.TrimPrefix(path.Clean(f.Path), "/")
		hdr := &tar.Header{Name: name, Mode: f.Mode, Uid: f.UID, Gid: f.GID, ModTime: now, Typeflag: tar.TypeReg, Size: int64(len(f.Data))}
		if f.Dir {
			hdr.Typeflag, hdr.Size, hdr.Name = tar.TypeDir, 0, name+"/"
		}
		if err := tw.WriteHeader(hdr); err != nil {
			return fmt.Errorf("tar %s: %w", f.Path, err)
		}
		if !f.Dir {
			if _, err := tw.Write(f.Data); err != nil {
				return fmt.Errorf("tar %s: %w", f.Path, err)
			}
		}
	}
	if err := tw.Close(); err != nil {
		return fmt.Errorf("tar: %w", err)
	}
	if err := d.cli.CopyToContainer(ctx, id, "/", &buf, container.CopyToContainerOptions{}); err != nil {
		return fmt.Errorf("copy files into container: %w", err)
	}
	return nil
}
