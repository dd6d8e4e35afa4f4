package session

import (
	"context"
	"fmt"
	"io"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"

	"github.com/ds01/ds01-gateway/session/image"
	"github.com/ds01/ds01-gateway/session/workspace"
	"github.com/ds01/ds01-gateway/store"
)

// Images builds the projects' images from their Dockerfiles (build.go),
// one build per project at a time that anyone may follow (build_slot.go),
// vets what a build may use (build_check.go), and retires images.
type Images struct {
	*deps
	limits     userLimits
	workspaces *Workspaces
	catalog    *Catalog
	containers *Manager

	mu     sync.Mutex
	builds map[key]*buildSlot
	// cachePruning is set while a prune of the build cache runs.
	cachePruning atomic.Bool
}

// ensureProject creates the project on first use and builds its image if
// missing, through the same path as image-create and image-update. The
// caller closes the returned workspace.
func (im *Images) ensureProject(ctx context.Context, u store.User, project string, notice io.Writer) (_ *workspace.Dir, imageID string, err error) {
	ws, isNew, err := im.workspaces.ensure(ctx, u, project)
	if err != nil {
		return nil, "", err
	}
	defer func() {
		if err != nil {
			ws.Close()
		}
	}()
	ref := image.Ref(u.UID, project)
	id, err := im.builder.ImageID(ctx, ref)
	if err != nil {
		return nil, "", err
	}
	if id != "" {
		return ws, id, nil
	}
	if isNew {
		fmt.Fprintf(notice, "ds01: new project %s: workspace %s, building image %s ...\n", project, displayPath(ws.Path(), u), strings.TrimSuffix(ref, ":latest"))
	} else {
		fmt.Fprintf(notice, "ds01: building image %s from %s ...\n", strings.TrimSuffix(ref, ":latest"), displayPath(filepath.Join(ws.Path(), image.DockerfileName), u))
	}
	res, err := im.UpdateImage(ctx, u, project, Change{Reason: "login", IfMissing: true}, notice)
	if err != nil {
		return nil, "", fmt.Errorf("%w (fix /workspace/Dockerfile, then connect again)", err)
	}
	return ws, res.ImageID, nil
}

// RetireImage removes the project's image; the Dockerfile and workspace
// stay, and the next login builds it again.
func (im *Images) RetireImage(ctx context.Context, u store.User, project string) error {
	if _, err := im.catalog.Project(ctx, u, project); err != nil {
		return err
	}
	_, release, _, err := im.acquireBuild(ctx, key{u.UID, project}, project, io.Discard)
	if err != nil {
		return err
	}
	defer release()
	if c, ok := im.containers.container(u, project); ok {
		return fmt.Errorf("container %s is running: retire it first (container-retire %s)", c.Project, c.Project)
	}
	ref := image.Ref(u.UID, project)
	id, err := im.builder.ImageID(ctx, ref)
	if err != nil {
		return err
	}
	if id == "" {
		return fmt.Errorf("project %s has no image", project)
	}
	if err := im.builder.RemoveImage(ctx, ref); err != nil {
		return err
	}
	im.event(ctx, store.Event{Type: "image.retire", User: u.Name, Project: project, Details: id})
	return nil
}

// Dockerfile returns the project's Dockerfile.
func (im *Images) Dockerfile(ctx context.Context, u store.User, project string) ([]byte, error) {
	if _, err := im.catalog.Project(ctx, u, project); err != nil {
		return nil, err
	}
	return im.workspaces.readDockerfile(ctx, u, project)
}

// Builds returns the project's last builds, newest first.
func (im *Images) Builds(ctx context.Context, u store.User, project string, limit int) ([]store.Build, error) {
	if _, err := im.catalog.Project(ctx, u, project); err != nil {
		return nil, err
	}
	return im.store.ListBuilds(ctx, u.Name, project, limit)
}
