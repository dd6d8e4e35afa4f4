package session

import (
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
)

// The gateway runs as root and the workspace belongs to the user, who may
// put a symlink anywhere in it. Every file the gateway reads or writes
// there goes through an os.Root, so it can never reach outside.

// ReadWorkspaceFile reads a small text file (a Dockerfile, a requirements
// list) from the workspace for the gateway, refusing files over 1 MiB.
func ReadWorkspaceFile(ws, name string) ([]byte, error) {
	root, err := os.OpenRoot(ws)
	if err != nil {
		return nil, err
	}
	defer root.Close()
	f, err := root.Open(name)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	data, err := io.ReadAll(io.LimitReader(f, maxDockerfile+1))
	if err != nil {
		return nil, err
	}
	if len(data) > maxDockerfile {
		return nil, fmt.Errorf("%s is larger than %d KiB", name, maxDockerfile>>10)
	}
	return data, nil
}

// writeWorkspaceFile replaces name with data, owned by uid:gid. It writes
// a new file and renames it over the old one, so a reader (or a crash)
// sees either version whole, and a symlink at name is replaced, never
// followed.
func writeWorkspaceFile(ws, name string, data []byte, uid, gid int) error {
	root, err := os.OpenRoot(ws)
	if err != nil {
		return err
	}
	defer root.Close()
	var b [6]byte
	rand.Read(b[:])
	tmp := "." + name + ".ds01-" + hex.EncodeToString(b[:])
	f, err := root.OpenFile(tmp, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o644)
	if err != nil {
		return err
	}
	_, err = f.Write(data)
	if err == nil {
		err = f.Chown(uid, gid)
	}
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = root.Rename(tmp, name)
	}
	if err != nil {
		root.Remove(tmp)
		return err
	}
	return nil
}

func removeWorkspaceFile(ws, name string) {
	root, err := os.OpenRoot(ws)
	if err != nil {
		return
	}
	defer root.Close()
	if err := root.Remove(name); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return
	}
}
