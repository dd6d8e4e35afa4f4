package session

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"os/user"
	"path/filepath"
	"strings"
	"time"

	"github.com/ds01/ds01-gateway/session/image"
	"github.com/ds01/ds01-gateway/store"
)

// Workspace returns the host directory of a user's project.
func (m *Manager) Workspace(u store.User, project string) string {
	root, _ := ExpandRoot(m.cfg.WorkspaceRoot, u.Name)
	return filepath.Join(root, project)
}

// ExpandRoot fills {user} and {home} (the user's home on the host, or
// /home/<user> when the host has no such account) in a workspace root. It
// also returns the shared directory above the user's part: directories
// created below it belong to the user, those above it to root.
func ExpandRoot(root, userName string) (expanded, shared string) {
	i := strings.Index(root, "{")
	if i < 0 {
		return root, root
	}
	shared = root[:i]
	if strings.HasSuffix(shared, "/") {
		shared = filepath.Clean(shared)
	} else {
		shared = filepath.Dir(shared)
	}
	if strings.Contains(root, "{home}") {
		home := "/home/" + userName
		if hu, err := user.Lookup(userName); err == nil && hu.HomeDir != "" && hu.HomeDir != "/" {
			home = hu.HomeDir
		}
		if strings.HasPrefix(root, "{home}") {
			shared = filepath.Dir(home)
		}
		root = strings.ReplaceAll(root, "{home}", home)
	}
	return strings.ReplaceAll(root, "{user}", userName), shared
}

// EnsureWorkspace creates the project on first use, without building its
// image: the workspace owned by the user, the default Dockerfile, the store
// record. File transfers use it directly (a transfer never needs the
// image); a login builds the image afterwards.
func (m *Manager) EnsureWorkspace(ctx context.Context, u store.User, project string) (string, error) {
	ws, _, err := m.ensureWorkspace(ctx, u, project)
	return ws, err
}

func (m *Manager) ensureWorkspace(ctx context.Context, u store.User, project string) (ws string, isNew bool, err error) {
	if err := ValidateProject(project, ""); err != nil {
		return "", false, err
	}
	root, shared := ExpandRoot(m.cfg.WorkspaceRoot, u.Name)
	ws = filepath.Join(root, project)
	_, err = m.store.GetProject(ctx, u.Name, project)
	isNew = errors.Is(err, store.ErrNotFound)
	if err != nil && !isNew {
		return "", false, fmt.Errorf("look up project: %w", err)
	}
	if err := os.MkdirAll(shared, 0o755); err != nil {
		return "", false, fmt.Errorf("create workspace root: %w", err)
	}
	if err := mkdirOwned(ws, u.UID, u.GID); err != nil {
		return "", false, fmt.Errorf("create workspace: %w", err)
	}
	df := filepath.Join(ws, image.DockerfileName)
	if _, err := os.Lstat(df); errors.Is(err, fs.ErrNotExist) {
		err := writeOwned(df, image.DefaultDockerfile(m.cfg.BaseImage, u.Name, project), u.UID, u.GID)
		if err != nil && !errors.Is(err, fs.ErrExist) { // a concurrent first use wrote it
			return "", false, fmt.Errorf("write Dockerfile: %w", err)
		}
	}
	now := time.Now()
	if isNew {
		created, err := m.store.CreateProject(ctx, store.Project{User: u.Name, Name: project, Workspace: ws, CreatedAt: now, LastUsed: now})
		if err != nil {
			return "", false, fmt.Errorf("record project: %w", err)
		}
		if created {
			m.event(ctx, store.Event{Type: "project.create", User: u.Name, Project: project, Details: ws})
		}
	} else if err := m.store.TouchProject(ctx, u.Name, project, now); err != nil {
		m.log.Warn("touch project", "project", project, "err", err)
	}
	return ws, isNew, nil
}

// ensureProject creates the project on first use and builds its image if
// missing, through the same path as image-create and image-update.
func (m *Manager) ensureProject(ctx context.Context, u store.User, project string, notice io.Writer) (ws, imageID string, err error) {
	ws, isNew, err := m.ensureWorkspace(ctx, u, project)
	if err != nil {
		return "", "", err
	}
	ref := image.Ref(u.UID, project)
	id, err := m.builder.ImageID(ctx, ref)
	if err != nil {
		return "", "", err
	}
	if id != "" {
		return ws, id, nil
	}
	if isNew {
		fmt.Fprintf(notice, "ds01: new project %s: workspace %s, building image %s ...\n", project, displayPath(ws, u), strings.TrimSuffix(ref, ":latest"))
	} else {
		fmt.Fprintf(notice, "ds01: building image %s from %s ...\n", strings.TrimSuffix(ref, ":latest"), displayPath(filepath.Join(ws, image.DockerfileName), u))
	}
	res, err := m.UpdateImage(ctx, u, project, Change{Reason: "login", IfMissing: true}, notice)
	if err != nil {
		return "", "", fmt.Errorf("%w (fix /workspace/Dockerfile, then connect again)", err)
	}
	return ws, res.ImageID, nil
}

func displayPath(p string, u store.User) string {
	if hu, err := user.Lookup(u.Name); err == nil && hu.HomeDir != "" && hu.HomeDir != "/" {
		if rel, err := filepath.Rel(hu.HomeDir, p); err == nil && !strings.HasPrefix(rel, "..") {
			return "~/" + rel
		}
	}
	return p
}

// mkdirOwned creates dir and any missing parents, giving each directory it
// creates to uid:gid.
func mkdirOwned(dir string, uid, gid int) error {
	var missing []string
	for d := dir; ; d = filepath.Dir(d) {
		if _, err := os.Lstat(d); err == nil {
			break
		} else if !errors.Is(err, fs.ErrNotExist) {
			return err
		}
		missing = append(missing, d)
		if d == filepath.Dir(d) {
			break
		}
	}
	for i := len(missing) - 1; i >= 0; i-- {
		if err := os.Mkdir(missing[i], 0o750); err != nil && !errors.Is(err, fs.ErrExist) {
			return err
		}
		if err := os.Lchown(missing[i], uid, gid); err != nil {
			return err
		}
	}
	st, err := os.Lstat(dir)
	if err != nil {
		return err
	}
	if !st.IsDir() {
		return fmt.Errorf("%s exists and is not a directory", dir)
	}
	return nil
}

// writeOwned creates a new file (never following or replacing a symlink).
func writeOwned(path string, data []byte, uid, gid int) error {
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o644)
	if err != nil {
		return err
	}
	if _, err := f.Write(data); err != nil {
		f.Close()
		return err
	}
	if err := f.Chown(uid, gid); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}
