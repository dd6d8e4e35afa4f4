package session

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"os/user"
	"path/filepath"
	"strings"
	"time"

	"github.com/ds01/ds01-gateway/session/image"
	"github.com/ds01/ds01-gateway/session/workspace"
	"github.com/ds01/ds01-gateway/store"
)

// ErrNoWorkspace is wrapped when a project's workspace cannot be opened.
var ErrNoWorkspace = errors.New("workspace unavailable")

// ExpandRoot fills {user} and {home} (the user's home on the host, or
// /home/<user> when the host has no such account) in a workspace root. It
// also returns the shared directory above the user's part: directories
// created below it belong to the user, those above it to root. A lookup
// that fails for another reason than "no such user" falls back too; the
// gateway itself uses expandRoot, which refuses it.
func ExpandRoot(root, userName string) (expanded, shared string) {
	expanded, shared, _ = expandRoot(root, userName)
	return expanded, shared
}

func expandRoot(root, userName string) (expanded, shared string, err error) {
	i := strings.Index(root, "{")
	if i < 0 {
		return root, root, nil
	}
	shared = root[:i]
	if strings.HasSuffix(shared, "/") {
		shared = filepath.Clean(shared)
	} else {
		shared = filepath.Dir(shared)
	}
	if strings.Contains(root, "{home}") {
		home := "/home/" + userName
		hu, lerr := user.Lookup(userName)
		var unknown user.UnknownUserError
		switch {
		case lerr == nil && hu.HomeDir != "" && hu.HomeDir != "/":
			home = hu.HomeDir
		case lerr != nil && !errors.As(lerr, &unknown):
			// An LDAP or NSS outage must not put a user's project in
			// a fresh, empty directory.
			err = fmt.Errorf("look up the home of %s: %w", userName, lerr)
		}
		if strings.HasPrefix(root, "{home}") {
			shared = filepath.Dir(home)
		}
		root = strings.ReplaceAll(root, "{home}", home)
	}
	return strings.ReplaceAll(root, "{user}", userName), shared, err
}

// Workspaces opens and creates the projects' workspaces, and records the
// projects in the store. Every file of a workspace the gateway touches is
// reached through it (see wsfile.go).
type Workspaces struct{ *deps }

// location is where a project's workspace is: dir, reached from anchor,
// the root-owned directory above the user's part of the path.
type location struct{ dir, anchor string }

// locate finds the project's workspace: the one recorded when the project
// was created (it stays there whatever happens to the configuration or to
// user lookups later), or, for a new project, the configured root's.
func (w *Workspaces) locate(ctx context.Context, u store.User, project string) (loc location, p store.Project, isNew bool, err error) {
	p, err = w.store.GetProject(ctx, u.Name, project)
	isNew = errors.Is(err, store.ErrNotFound)
	if err != nil && !isNew {
		return location{}, p, false, fmt.Errorf("look up project: %w", err)
	}
	if !isNew && p.Workspace != "" && p.WorkspaceAnchor != "" {
		return location{p.Workspace, p.WorkspaceAnchor}, p, false, nil
	}
	root, shared, err := expandRoot(w.cfg.WorkspaceRoot, u.Name)
	if err != nil {
		return location{}, p, isNew, fmt.Errorf("%w: %w", ErrNoWorkspace, err)
	}
	loc = location{filepath.Join(root, project), shared}
	if !isNew && p.Workspace != "" {
		// Recorded before anchors were: the configuration's anchor, if
		// the recorded path is below it.
		if rel, rerr := filepath.Rel(shared, p.Workspace); rerr != nil || rel == ".." || strings.HasPrefix(rel, "../") {
			return location{}, p, false, fmt.Errorf("%w: %s is not below the workspace root's %s", ErrNoWorkspace, p.Workspace, shared)
		}
		loc.dir = p.Workspace
		if err := w.store.SetWorkspaceAnchor(ctx, u.Name, project, shared); err != nil {
			w.log.Warn("record workspace anchor", "project", project, "err", err)
		}
	}
	return loc, p, isNew, nil
}

// open opens the project's workspace, creating it if create is
// set, without following any symlink below its anchor.
func (w *Workspaces) open(ctx context.Context, u store.User, project string, create bool) (*workspace.Dir, error) {
	if err := ValidateProject(project, ""); err != nil {
		return nil, err
	}
	loc, _, _, err := w.locate(ctx, u, project)
	if err != nil {
		return nil, err
	}
	return w.openAt(loc, u, create)
}

func (w *Workspaces) openAt(loc location, u store.User, create bool) (*workspace.Dir, error) {
	if create {
		// Like /home: users' own directories are below it.
		if err := os.MkdirAll(loc.anchor, 0o755); err != nil { //nolint:gosec // see above
			return nil, fmt.Errorf("create workspace root: %w", err)
		}
	}
	d, err := workspace.Open(loc.anchor, loc.dir, workspace.Owner{UID: u.UID, GID: u.GID}, create)
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrNoWorkspace, err)
	}
	return d, nil
}

// Ensure creates the project on first use, without building its
// image: the workspace owned by the user, the default Dockerfile, the store
// record. File transfers use it directly (a transfer never needs the
// image); a login builds the image afterwards. The caller closes the
// returned directory.
func (w *Workspaces) Ensure(ctx context.Context, u store.User, project string) (*workspace.Dir, error) {
	d, _, err := w.ensure(ctx, u, project)
	return d, err
}

func (w *Workspaces) ensure(ctx context.Context, u store.User, project string) (d *workspace.Dir, isNew bool, err error) {
	if err := ValidateProject(project, ""); err != nil {
		return nil, false, err
	}
	if err := checkUID(u); err != nil {
		return nil, false, err
	}
	loc, _, isNew, err := w.locate(ctx, u, project)
	if err != nil {
		return nil, false, err
	}
	d, err = w.openAt(loc, u, true)
	if err != nil {
		return nil, false, err
	}
	err = d.CreateFile(image.DockerfileName, image.DefaultDockerfile(w.cfg.BaseImage, u.Name, project), 0o644)
	if err != nil && !errors.Is(err, fs.ErrExist) { // the user's own, or a concurrent first use wrote it
		d.Close()
		return nil, false, fmt.Errorf("write Dockerfile: %w", err)
	}
	now := time.Now()
	if isNew {
		created, err := w.store.CreateProject(ctx, store.Project{User: u.Name, Name: project, Workspace: loc.dir, WorkspaceAnchor: loc.anchor, CreatedAt: now, LastUsed: now})
		if err != nil {
			d.Close()
			return nil, false, fmt.Errorf("record project: %w", err)
		}
		if created {
			w.event(ctx, store.Event{Type: "project.create", User: u.Name, Project: project, Details: loc.dir})
		}
	} else if err := w.store.TouchProject(ctx, u.Name, project, now); err != nil {
		w.log.Warn("touch project", "project", project, "err", err)
	}
	return d, isNew, nil
}

// errRootUser refuses accounts that would run containers or file
// transfers as root: the store may hold one from before uid 0 was refused
// at `user add`.
var errRootUser = errors.New("accounts with uid or gid 0 cannot have containers; ask the admin to give this account its own uid")

func checkUID(u store.User) error {
	if u.UID <= 0 || u.GID <= 0 {
		return fmt.Errorf("%w: %s", errRootUser, u.Name)
	}
	return nil
}

func displayPath(p string, u store.User) string {
	if hu, err := user.Lookup(u.Name); err == nil && hu.HomeDir != "" && hu.HomeDir != "/" {
		if rel, err := filepath.Rel(hu.HomeDir, p); err == nil && !strings.HasPrefix(rel, "..") {
			return "~/" + rel
		}
	}
	return p
}
