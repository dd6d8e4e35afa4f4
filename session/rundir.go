package session

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"

	"github.com/ds01/ds01-gateway/session/runtime"
	"github.com/ds01/ds01-gateway/session/workspace"
	"github.com/ds01/ds01-gateway/store"
)

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

func (m *Manager) prepareRunDir(ctx context.Context, name string, u store.User, imageID string) (runDir, error) {
	id, err := m.imageIdentity(ctx, imageID)
	if err != nil {
		return runDir{}, err
	}
	passwd, shell := mergePasswd(id.passwd, u)
	group := mergeGroup(id.group, u)
	dir := filepath.Join(m.cfg.RunDir, name)
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
		m.removeRunDir(name)
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
func (m *Manager) imageIdentity(ctx context.Context, imageID string) (identityFiles, error) {
	if v, ok := m.identities.Load(imageID); ok {
		return v.(identityFiles), nil
	}
	files, err := m.builder.ImageFiles(ctx, imageID, "/etc/passwd", "/etc/group")
	if err != nil {
		return identityFiles{}, err
	}
	id := identityFiles{passwd: files["/etc/passwd"], group: files["/etc/group"]}
	m.identities.Store(imageID, id)
	return id, nil
}

// stagedWorkspace is where, in a run directory, the workspace is
// bind-mounted while its container starts (see stageWorkspace).
const stagedWorkspace = "workspace"

// removeRunDir removes a container's run directory. The staging mount
// point of its workspace is taken down first, and if that fails nothing
// is removed: a recursive remove through a bind mount of a workspace
// would delete the user's files.
func (m *Manager) removeRunDir(name string) {
	if name == "" || strings.ContainsAny(name, "/\x00") || name == "." || name == ".." {
		return
	}
	dir := filepath.Join(m.cfg.RunDir, name)
	if err := workspace.Unbind(filepath.Join(dir, stagedWorkspace)); err != nil {
		m.log.Error("run directory still holds a workspace mount; left in place", "name", name, "err", err)
		return
	}
	if err := os.RemoveAll(dir); err != nil {
		m.log.Warn("remove run directory", "name", name, "err", err)
	}
}

// mkdirPrivate makes an empty directory only root can enter.
func mkdirPrivate(dir string) error {
	if err := os.Mkdir(dir, 0o700); err != nil && !errors.Is(err, os.ErrExist) {
		return err
	}
	return os.Chmod(dir, 0o700) //nolint:gosec // a directory: 0700 is the private mode
}

// runDirShell recovers the login shell of a container's user from its run
// directory's passwd, for containers adopted after a restart.
func (m *Manager) runDirShell(name string, uid int) string {
	data, err := os.ReadFile(filepath.Join(m.cfg.RunDir, name, "passwd"))
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

// sweepRunDirs removes run directories whose container is gone.
func (m *Manager) sweepRunDirs(live map[string]bool) {
	entries, err := os.ReadDir(m.cfg.RunDir)
	if errors.Is(err, os.ErrNotExist) {
		return
	}
	if err != nil {
		m.log.Warn("sweep run directories", "err", err)
		return
	}
	for _, e := range entries {
		if !live[e.Name()] {
			m.removeRunDir(e.Name())
		}
	}
}
