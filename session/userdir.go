package session

import (
	"fmt"
	"os"
	"path/filepath"
	"strconv"

	"github.com/ds01/ds01-gateway/session/runtime"
	"github.com/ds01/ds01-gateway/session/workspace"
	"github.com/ds01/ds01-gateway/store"
)

// The container is temporary and so is $HOME in it, as DS01 teaches: a
// package installed there is gone with the container. One directory is
// the exception: ~/.vscode-server, where VS Code keeps its server. Without
// it every new container would download the server again, and with no
// internet it cannot. It lives on the host in <UserDir>/<uid>/, belongs to
// the user, and is mounted into each of their containers and into their
// file transfers at the same path.

// vscodeServer is the persistent directory's name in the user's home.
const vscodeServer = ".vscode-server"

// userDirs opens the user's persistent home directories, creating them on
// first use, with where the container shows each.
func (d *dirs) userDirs(u store.User) ([]FileMount, error) {
	if d.cfg.UserDir == "" {
		return nil, nil
	}
	// 0711: users pass through to their own directory, and see nothing.
	if err := os.MkdirAll(d.cfg.UserDir, 0o711); err != nil { //nolint:gosec // see above
		return nil, fmt.Errorf("user directory: %w", err)
	}
	dir := filepath.Join(d.cfg.UserDir, strconv.Itoa(u.UID), vscodeServer)
	wd, err := workspace.Open(d.cfg.UserDir, dir, workspace.Owner{UID: u.UID, GID: u.GID}, true)
	if err != nil {
		return nil, fmt.Errorf("user directory: %w", err)
	}
	return []FileMount{{Path: filepath.Join(homeDir(u), vscodeServer), Dir: wd}}, nil
}

// userMounts returns the user's persistent home directories as mounts at
// their paths in the container. They live in the gateway's data directory,
// where no user can reach the path above them, so the path itself is safe
// to hand to the runtime.
func (d *dirs) userMounts(u store.User) ([]runtime.Mount, error) {
	fms, err := d.userDirs(u)
	if err != nil {
		return nil, err
	}
	mounts := make([]runtime.Mount, len(fms))
	for i, fm := range fms {
		mounts[i] = runtime.Mount{Source: fm.Dir.Path(), Target: fm.Path}
		fm.Dir.Close()
	}
	return mounts, nil
}

// FileMount is a directory a file transfer may reach, open, and the path
// at which the user sees it.
type FileMount struct {
	Path string
	Dir  *workspace.Dir
}
