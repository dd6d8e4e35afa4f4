package session

import (
	"fmt"
	"os"
	"path/filepath"
	"strconv"

	"github.com/ds01/ds01-gateway/session/runtime"
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

// userMounts returns the user's persistent home directories as mounts at
// their paths in the container, creating them on first use.
func (m *Manager) userMounts(u store.User) ([]runtime.Mount, error) {
	if m.cfg.UserDir == "" {
		return nil, nil
	}
	if err := os.MkdirAll(m.cfg.UserDir, 0o711); err != nil {
		return nil, fmt.Errorf("user directory: %w", err)
	}
	dir := filepath.Join(m.cfg.UserDir, strconv.Itoa(u.UID), vscodeServer)
	if err := mkdirOwned(dir, u.UID, u.GID); err != nil {
		return nil, fmt.Errorf("user directory: %w", err)
	}
	return []runtime.Mount{{Source: dir, Target: filepath.Join(homeDir(u), vscodeServer)}}, nil
}

// FileMounts is what a file transfer of the user's may reach: the
// project's workspace at /workspace (the start directory), then the
// persistent part of their home, at the paths the container shows.
func (m *Manager) FileMounts(u store.User, ws string) ([]runtime.Mount, error) {
	home, err := m.userMounts(u)
	if err != nil {
		return nil, err
	}
	return append([]runtime.Mount{{Source: ws, Target: "/workspace"}}, home...), nil
}
