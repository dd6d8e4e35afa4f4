package session

import (
	"context"

	"github.com/ds01/ds01-gateway/session/image"
	"github.com/ds01/ds01-gateway/store"
)

// The gateway runs as root and the workspace belongs to the user, who may
// put a symlink, a FIFO or a hard link to someone else's file anywhere in
// it. Every file the gateway reads or writes there goes through
// package workspace: opened without following symlinks above the
// workspace, and read or written with the user's own file-system
// credentials, so the kernel allows exactly what it allows the user.

// maxRequirements bounds a requirements file read from the workspace: its
// packages go into the Dockerfile, which has this bound.
const maxRequirements = image.MaxDockerfile

// ReadProjectFile reads a small regular file (a requirements list) from the
// project's workspace, as the user.
func (w *Workspaces) ReadProjectFile(ctx context.Context, u store.User, project, name string) ([]byte, error) {
	d, err := w.open(ctx, u, project, false)
	if err != nil {
		return nil, err
	}
	defer d.Close()
	return d.ReadFile(name, maxRequirements)
}

// readDockerfile reads the project's Dockerfile as the user.
func (w *Workspaces) readDockerfile(ctx context.Context, u store.User, project string) ([]byte, error) {
	d, err := w.open(ctx, u, project, false)
	if err != nil {
		return nil, err
	}
	defer d.Close()
	return d.ReadFile(image.DockerfileName, maxDockerfile)
}
