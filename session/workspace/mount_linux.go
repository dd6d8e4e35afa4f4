package workspace

import (
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"os"

	"golang.org/x/sys/unix"
)

// BindTo bind-mounts the directory onto target, an empty directory in a
// tree only root can write (a container's run directory), and makes that
// mount private so it propagates nowhere. A container runtime resolves a
// bind source by path, as root, when it starts the container: given the
// workspace's own path, a user who swaps a directory on it for a symlink
// at the right moment would have root mount whatever the symlink names.
// Given target, it mounts exactly the directory opened here. Once the
// container has started it holds its own mount, and target can go (Unbind).
func (d *Dir) BindTo(target string) error {
	src := fmt.Sprintf("/proc/self/fd/%d", d.f.Fd())
	if err := unix.Mount(src, target, "", unix.MS_BIND, ""); err != nil {
		return fmt.Errorf("bind workspace %s: %w", d.path, err)
	}
	if err := unix.Mount("", target, "", unix.MS_PRIVATE, ""); err != nil {
		return errors.Join(fmt.Errorf("bind workspace %s: private: %w", d.path, err), Unbind(target))
	}
	return nil
}

// Unbind removes a mount made by BindTo (lazily, should anything still use
// it) and the empty directory under it. It never removes anything inside:
// if the directory is not empty, something is still mounted there and it
// is left alone.
func Unbind(target string) error {
	err := unix.Unmount(target, unix.MNT_DETACH)
	if errors.Is(err, unix.EINVAL) || errors.Is(err, unix.ENOENT) {
		err = nil // not mounted (any more)
	}
	if rerr := os.Remove(target); rerr != nil && !errors.Is(rerr, os.ErrNotExist) {
		err = errors.Join(err, rerr)
	}
	return err
}

func randomSuffix() string {
	var b [6]byte
	rand.Read(b[:])
	return hex.EncodeToString(b[:])
}
