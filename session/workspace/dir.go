// Package workspace opens users' workspaces for the gateway, which runs as
// root, without letting a user turn that into root's access.
//
// A workspace is <anchor>/<user's part>/<project>: the anchor is the
// root-owned directory above everything a user controls (/home for
// {home}/workspace, /srv/ds01 for /srv/ds01/{user}), and every directory
// below it may belong to the user, who can replace any of them with a
// symlink at any time. So:
//
//   - the way down from the anchor is walked one component at a time with
//     O_NOFOLLOW: a symlink anywhere below the anchor is refused, never
//     followed (openat2's RESOLVE_NO_SYMLINKS, portably);
//   - what happens inside the workspace (reading the Dockerfile, writing it,
//     the build context) runs with the user's file-system credentials, so the
//     kernel checks it as the user's own access: a hard link to a file the
//     user cannot read stays unreadable, and new files are the user's;
//   - an open Dir names exactly one directory however the path changes
//     later, for bind mounts (see BindTo) and for the transfer child.
package workspace

import (
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"time"

	"golang.org/x/sys/unix"
)

// ErrSymlink is returned when a directory on the way to a workspace is a
// symlink (or not a directory at all).
var ErrSymlink = errors.New("is a symlink or not a directory; the gateway follows no symlinks above a workspace")

// ErrNotRegular is returned when a file the gateway must read is not a
// regular file (a FIFO, a device, a socket, a directory).
var ErrNotRegular = errors.New("not a regular file")

// Owner is the user a workspace belongs to.
type Owner struct{ UID, GID int }

// Dir is an open workspace directory.
type Dir struct {
	f     *os.File
	root  *os.Root
	owner Owner
	path  string
}

// Open opens dir, which must lie below anchor, without following a symlink
// anywhere below anchor. With create, missing directories are made (0750)
// and given to the owner; the anchor itself must exist.
func Open(anchor, dir string, owner Owner, create bool) (*Dir, error) {
	if owner.UID <= 0 || owner.GID <= 0 {
		return nil, fmt.Errorf("workspace %s: refusing uid %d gid %d", dir, owner.UID, owner.GID)
	}
	rel, err := filepath.Rel(anchor, dir)
	if err != nil || rel == ".." || strings.HasPrefix(rel, "../") || filepath.IsAbs(rel) {
		return nil, fmt.Errorf("workspace %s is not below %s", dir, anchor)
	}
	cur, err := unix.Open(anchor, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		return nil, fmt.Errorf("workspace root %s: %w", anchor, err)
	}
	at := anchor
	if rel != "." {
		for _, name := range strings.Split(rel, string(filepath.Separator)) {
			next, err := step(cur, at, name, owner, create)
			unix.Close(cur)
			if err != nil {
				return nil, err
			}
			cur, at = next, filepath.Join(at, name)
		}
	}
	f := os.NewFile(uintptr(cur), dir)
	// The descriptor is the directory; /proc/self/fd names it exactly, so
	// the Root opened through it is that directory whatever its path
	// becomes.
	root, err := os.OpenRoot(fmt.Sprintf("/proc/self/fd/%d", cur))
	if err != nil {
		f.Close()
		return nil, fmt.Errorf("workspace %s: %w", dir, err)
	}
	return &Dir{f: f, root: root, owner: owner, path: dir}, nil
}

// step opens name in the directory parent (at path at) without following
// a symlink, creating it first if asked.
func step(parent int, at, name string, owner Owner, create bool) (int, error) {
	p := filepath.Join(at, name)
	if name == "" || name == "." || name == ".." {
		return -1, fmt.Errorf("workspace path %s: bad component %q", p, name)
	}
	const flags = unix.O_RDONLY | unix.O_DIRECTORY | unix.O_NOFOLLOW | unix.O_CLOEXEC
	fd, err := unix.Openat(parent, name, flags, 0)
	made := false
	if errors.Is(err, unix.ENOENT) && create {
		if err := unix.Mkdirat(parent, name, 0o750); err != nil && !errors.Is(err, unix.EEXIST) {
			return -1, fmt.Errorf("create %s: %w", p, err)
		} else if err == nil {
			made = true
		}
		fd, err = unix.Openat(parent, name, flags, 0)
	}
	switch {
	case errors.Is(err, unix.ELOOP), errors.Is(err, unix.ENOTDIR):
		return -1, fmt.Errorf("%s %w", p, ErrSymlink)
	case errors.Is(err, unix.ENOENT):
		return -1, fmt.Errorf("%s: %w", p, fs.ErrNotExist)
	case err != nil:
		return -1, fmt.Errorf("open %s: %w", p, err)
	}
	if made {
		// What was made here is the user's; if the user raced us and put
		// a directory of their own in its place, it is theirs anyway.
		if err := unix.Fchown(fd, owner.UID, owner.GID); err != nil {
			unix.Close(fd)
			return -1, fmt.Errorf("chown %s: %w", p, err)
		}
		if err := unix.Fchmod(fd, 0o750); err != nil {
			unix.Close(fd)
			return -1, fmt.Errorf("chmod %s: %w", p, err)
		}
	}
	return fd, nil
}

// Path is the path the directory was opened at, for messages.
func (d *Dir) Path() string { return d.path }

// File is the open directory, for handing it to a child process. It stays
// owned by d.
func (d *Dir) File() *os.File { return d.f }

// Close releases the directory.
func (d *Dir) Close() error {
	return errors.Join(d.root.Close(), d.f.Close())
}

// Do runs fn with the workspace as an os.Root and the user's file-system
// credentials: everything fn does below the workspace is checked by the
// kernel as the user's own access. fn runs on a thread of its own; it must
// do its file work itself, not hand it to other goroutines.
func (d *Dir) Do(fn func(root *os.Root) error) error {
	return asUser(d.owner.UID, d.owner.GID, func() error { return fn(d.root) })
}

// ReadFile reads the regular file name as the user, refusing anything
// larger than max bytes. A FIFO, device or socket is refused, not opened
// for reading: opening is non-blocking, so nothing the user puts there can
// hold a gateway thread.
func (d *Dir) ReadFile(name string, max int64) ([]byte, error) {
	var data []byte
	err := d.Do(func(root *os.Root) error {
		f, st, err := OpenRegular(root, name)
		if err != nil {
			return err
		}
		defer f.Close()
		if st.Size() > max {
			return &fs.PathError{Op: "read", Path: name, Err: TooLarge(max)}
		}
		data, err = io.ReadAll(io.LimitReader(f, max+1))
		if err == nil && int64(len(data)) > max {
			return &fs.PathError{Op: "read", Path: name, Err: TooLarge(max)}
		}
		return err
	})
	return data, err
}

// OpenRegular opens name below root for reading if it is a regular file,
// and fails with ErrNotRegular otherwise. It opens without blocking (a
// FIFO would wait for a writer forever) and checks the type on the open
// file, so a file swapped for a FIFO or a device after a directory walk
// fails too. Everything a user may put in a workspace is read this way.
func OpenRegular(root *os.Root, name string) (*os.File, fs.FileInfo, error) {
	f, err := root.OpenFile(name, os.O_RDONLY|unix.O_NONBLOCK|unix.O_NOCTTY, 0)
	if err != nil {
		return nil, nil, err
	}
	st, err := f.Stat()
	if err == nil && !st.Mode().IsRegular() {
		err = &fs.PathError{Op: "read", Path: name, Err: ErrNotRegular}
	}
	if err != nil {
		f.Close()
		return nil, nil, err
	}
	return f, st, nil
}

// TooLarge is the error for a file over a size limit.
type TooLarge int64

func (t TooLarge) Error() string {
	if t >= 1<<20 && t%(1<<20) == 0 {
		return fmt.Sprintf("larger than %d MiB", int64(t)>>20)
	}
	return fmt.Sprintf("larger than %d KiB", int64(t)>>10)
}

// WriteFile replaces name with data as the user: a new file written
// beside it and renamed over it, so a reader (or a crash) sees either
// version whole, and a symlink at name is replaced, never followed.
func (d *Dir) WriteFile(name string, data []byte, mode os.FileMode) error {
	return d.Do(func(root *os.Root) error {
		tmp := filepath.Join(filepath.Dir(name), "."+filepath.Base(name)+".ds01-"+randomSuffix())
		f, err := root.OpenFile(tmp, os.O_WRONLY|os.O_CREATE|os.O_EXCL, mode)
		if err != nil {
			return err
		}
		_, err = f.Write(data)
		if err == nil {
			err = f.Chmod(mode) // whatever the gateway's umask
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
			_ = root.Remove(tmp) // the write's error is the one to report
		}
		return err
	})
}

// CreateFile writes a new file as the user; it fails with fs.ErrExist if
// name exists (as anything, a dangling symlink included).
func (d *Dir) CreateFile(name string, data []byte, mode os.FileMode) error {
	return d.Do(func(root *os.Root) error {
		f, err := root.OpenFile(name, os.O_WRONLY|os.O_CREATE|os.O_EXCL, mode)
		if err != nil {
			return err
		}
		_, err = f.Write(data)
		if err == nil {
			err = f.Chmod(mode)
		}
		if cerr := f.Close(); err == nil {
			err = cerr
		}
		return err
	})
}

// Remove removes name as the user; a missing file is not an error.
func (d *Dir) Remove(name string) error {
	return d.Do(func(root *os.Root) error {
		if err := root.Remove(name); err != nil && !errors.Is(err, fs.ErrNotExist) {
			return err
		}
		return nil
	})
}

// AppendFile appends data to the regular file name as the user, creating it
// with mode if it is missing. A symlink at name is not followed and a FIFO
// or device is refused (opened without blocking, checked on the open
// file), so a user cannot point the gateway's writes anywhere else.
func (d *Dir) AppendFile(name string, data []byte, mode os.FileMode) error {
	return d.Do(func(root *os.Root) error {
		f, err := root.OpenFile(name, os.O_WRONLY|os.O_APPEND|os.O_CREATE|unix.O_NOFOLLOW|unix.O_NONBLOCK|unix.O_NOCTTY, mode)
		if err != nil {
			return err
		}
		st, err := f.Stat()
		if err == nil && !st.Mode().IsRegular() {
			err = &fs.PathError{Op: "append", Path: name, Err: ErrNotRegular}
		}
		if err == nil {
			_, err = f.Write(data)
		}
		if cerr := f.Close(); err == nil {
			err = cerr
		}
		return err
	})
}

// ModTime is the modification time of name as the user sees it, without
// following a symlink at name; a missing file is the zero time.
func (d *Dir) ModTime(name string) (time.Time, error) {
	var t time.Time
	err := d.Do(func(root *os.Root) error {
		st, err := root.Lstat(name)
		if errors.Is(err, fs.ErrNotExist) {
			return nil
		}
		if err != nil {
			return err
		}
		t = st.ModTime()
		return nil
	})
	return t, err
}
