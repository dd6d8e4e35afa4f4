package session

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"

	"github.com/ds01/ds01-gateway/session/runtime"
	"github.com/ds01/ds01-gateway/session/workspace"
	"github.com/ds01/ds01-gateway/store"
)

// dirs keeps the host directories of containers: each container's run
// directory, and what persists of each user's home (userdir.go).
type dirs struct {
	*deps
	// identities caches, per image ID, the image's passwd and group files.
	identities sync.Map
}

// Each container gets a run directory on the host, <RunDir>/<container
// name>, bind-mounted into it: /etc/passwd and /etc/group (the image's,
// with the user's entry), the user's home, and the FIFO directory for
// fast streams. Preparing files on the host instead of copying them into a
// created container keeps a cold launch to two engine calls, create and
// start, like `docker run`. The directory goes with the container.

type runDir struct {
	mounts []runtime.Mount
	io     string
	home   string
	shell  string
}

type identityFiles struct {
	passwd, group []byte
}

func (d *dirs) prepareRun(ctx context.Context, name string, u store.User, imageID string) (runDir, error) {
	id, err := d.imageIdentity(ctx, imageID)
	if err != nil {
		return runDir{}, err
	}
	passwd, shell := mergePasswd(id.passwd, u)
	group := mergeGroup(id.group, u)
	dir := filepath.Join(d.cfg.RunDir, name)
	r := runDir{home: homeDir(u), shell: shell, io: filepath.Join(dir, "io")}
	// The container's user reads passwd and group and enters io: they
	// are world-readable, as in any image. The data directory above is
	// root's alone (0700), so no one on the host reaches them.
	err = func() error {
		if err := os.MkdirAll(dir, 0o755); err != nil { //nolint:gosec // see above
			return err
		}
		if err := os.WriteFile(filepath.Join(dir, "passwd"), passwd, 0o644); err != nil { //nolint:gosec // see above
			return err
		}
		if err := os.WriteFile(filepath.Join(dir, "group"), group, 0o644); err != nil { //nolint:gosec // see above
			return err
		}
		if err := os.Mkdir(r.io, 0o755); err != nil { //nolint:gosec // see above
			return err
		}
		home := filepath.Join(dir, "home")
		if err := os.Mkdir(home, 0o700); err != nil {
			return err
		}
		return os.Lchown(home, u.UID, u.GID)
	}()
	if err != nil {
		d.removeRun(name)
		return runDir{}, fmt.Errorf("run directory: %w", err)
	}
	r.mounts = []runtime.Mount{
		{Source: filepath.Join(dir, "passwd"), Target: "/etc/passwd", ReadOnly: true},
		{Source: filepath.Join(dir, "group"), Target: "/etc/group", ReadOnly: true},
		{Source: filepath.Join(dir, "home"), Target: r.home},
	}
	return r, nil
}

// imageIdentity returns the image's own passwd and group, read once per
// image ID.
func (d *dirs) imageIdentity(ctx context.Context, imageID string) (identityFiles, error) {
	if v, ok := d.identities.Load(imageID); ok {
		return v.(identityFiles), nil
	}
	files, err := d.builder.ImageFiles(ctx, imageID, "/etc/passwd", "/etc/group")
	if err != nil {
		return identityFiles{}, err
	}
	id := identityFiles{passwd: files["/etc/passwd"], group: files["/etc/group"]}
	d.identities.Store(imageID, id)
	return id, nil
}

// stagedWorkspace is where, in a run directory, the workspace is
// bind-mounted while its container starts (see stageWorkspace).
const stagedWorkspace = "workspace"

// removeRun removes a container's run directory. The staging mount
// point of its workspace is taken down first, and if that fails nothing
// is removed: a recursive remove through a bind mount of a workspace
// would delete the user's files.
func (d *dirs) removeRun(name string) {
	if name == "" || strings.ContainsAny(name, "/\x00") || name == "." || name == ".." {
		return
	}
	dir := filepath.Join(d.cfg.RunDir, name)
	if err := workspace.Unbind(filepath.Join(dir, stagedWorkspace)); err != nil {
		d.log.Error("run directory still holds a workspace mount; left in place", "name", name, "err", err)
		return
	}
	if err := os.RemoveAll(dir); err != nil {
		d.log.Warn("remove run directory", "name", name, "err", err)
	}
}

// mkdirPrivate makes an empty directory only root can enter.
func mkdirPrivate(dir string) error {
	if err := os.Mkdir(dir, 0o700); err != nil && !errors.Is(err, os.ErrExist) {
		return err
	}
	return os.Chmod(dir, 0o700) //nolint:gosec // a directory: 0700 is the private mode
}

// runShell recovers the login shell of a container's user from its run
// directory's passwd, for containers adopted after a restart.
func (d *dirs) runShell(name string, uid int) string {
	data, err := os.ReadFile(filepath.Join(d.cfg.RunDir, name, "passwd"))
	if err != nil {
		return ""
	}
	for _, line := range lines(data) {
		if f := strings.Split(line, ":"); len(f) >= 7 && f[2] == strconv.Itoa(uid) {
			return f[6]
		}
	}
	return ""
}

// sweepRun removes run directories whose container is gone.
func (d *dirs) sweepRun(live map[string]bool) {
	entries, err := os.ReadDir(d.cfg.RunDir)
	if errors.Is(err, os.ErrNotExist) {
		return
	}
	if err != nil {
		d.log.Warn("sweep run directories", "err", err)
		return
	}
	for _, e := range entries {
		if !live[e.Name()] {
			d.removeRun(e.Name())
		}
	}
}

// stageWorkspace bind-mounts the opened workspace into the container's run
// directory and returns that path for the runtime to mount: a path only
// root can change, naming exactly the directory opened. unstage removes
// the staging mount (the container keeps its own).
func (d *dirs) stageWorkspace(name string, ws *workspace.Dir) (string, func(), error) {
	target := filepath.Join(d.cfg.RunDir, name, stagedWorkspace)
	if err := mkdirPrivate(target); err != nil {
		return "", nil, fmt.Errorf("stage workspace: %w", err)
	}
	if err := ws.BindTo(target); err != nil {
		return "", nil, errors.Join(err, workspace.Unbind(target))
	}
	return target, func() {
		if err := workspace.Unbind(target); err != nil {
			d.log.Warn("unstage workspace", "container", name, "err", err)
		}
	}, nil
}
