package transfer

import (
	"io/fs"
	"math"
	"os"
	"syscall"
	"time"

	"github.com/pkg/sftp"
)

// Filecmd runs the requests that change the tree.
func (h *sftpHandlers) Filecmd(r *sftp.Request) error {
	switch r.Method {
	case "Setstat":
		return toSFTP("setstat", r.Filepath, h.setstat(r.Filepath, r.AttrFlags(), r.Attributes()))
	case "Rename":
		return toSFTP("rename", r.Filepath, h.rename(r.Filepath, r.Target, false))
	case "Rmdir":
		return toSFTP("rmdir", r.Filepath, h.remove(r.Filepath, true))
	case "Remove":
		return toSFTP("remove", r.Filepath, h.remove(r.Filepath, false))
	case "Mkdir":
		return toSFTP("mkdir", r.Filepath, h.mkdir(r))
	case "Symlink":
		// pkg/sftp passes the link's text raw in Filepath and the new
		// link's path in Target.
		return toSFTP("symlink", r.Target, h.symlink(r.Filepath, r.Target))
	case "Link":
		return toSFTP("link", r.Target, h.link(r.Filepath, r.Target))
	}
	return sftp.ErrSSHFxOpUnsupported
}

// PosixRename is posix-rename@openssh.com: rename that replaces the target.
func (h *sftpHandlers) PosixRename(r *sftp.Request) error {
	return toSFTP("rename", r.Filepath, h.rename(r.Filepath, r.Target, true))
}

// setstat is SETSTAT, and FSETSTAT on the path the handle was opened as
// (what pkg/sftp's request server did with it).
func (h *sftpHandlers) setstat(p string, flags sftp.FileAttrFlags, a *sftp.FileStat) error {
	n, err := h.t.lookup(p)
	if err != nil {
		return err
	}
	if err := n.writable("setstat"); err != nil {
		return err
	}
	// The order is sftp-server's: size, mode, times, owner.
	if flags.Size {
		if a.Size > math.MaxInt64 {
			return toSFTP("setstat", p, syscall.EFBIG)
		}
		if err := truncate(n, int64(a.Size)); err != nil {
			return err
		}
	}
	if flags.Permissions {
		mode := a.FileMode() & (fs.ModePerm | fs.ModeSetuid | fs.ModeSetgid | fs.ModeSticky)
		if err := n.root.Chmod(n.rel, mode); err != nil {
			return err
		}
	}
	if flags.Acmodtime {
		if err := n.root.Chtimes(n.rel, time.Unix(int64(a.Atime), 0), time.Unix(int64(a.Mtime), 0)); err != nil {
			return err
		}
	}
	if flags.UidGid {
		// As the user, the kernel allows only what chown(2) allows them.
		if err := n.root.Chown(n.rel, int(a.UID), int(a.GID)); err != nil {
			return err
		}
	}
	return nil
}

// truncate opens the file to truncate it, since os.Root has no Truncate.
// O_NONBLOCK keeps a planted FIFO from hanging the session.
func truncate(n node, size int64) error {
	f, err := n.root.OpenFile(n.rel, os.O_WRONLY|syscall.O_NONBLOCK, 0)
	if err != nil {
		return err
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return err
	}
	if !fi.Mode().IsRegular() {
		return &fs.PathError{Op: "truncate", Path: n.path, Err: syscall.EINVAL}
	}
	return f.Truncate(size)
}

// rename moves old to new inside one mount. Plain SFTP rename must not
// replace an existing target (sftp-server's behaviour); posix-rename does.
func (h *sftpHandlers) rename(oldp, newp string, replace bool) error {
	o, n, err := h.pair("rename", oldp, newp)
	if err != nil {
		return err
	}
	if !replace {
		if _, err := n.root.Lstat(n.rel); err == nil {
			return &os.LinkError{Op: "rename", Old: o.path, New: n.path, Err: syscall.EEXIST}
		}
	}
	return o.root.Rename(o.rel, n.rel)
}

// remove unlinks a file (dir false) or removes an empty directory (dir
// true); os.Root.Remove would do either, SFTP keeps them apart.
func (h *sftpHandlers) remove(p string, dir bool) error {
	n, err := h.t.lookup(p)
	if err != nil {
		return err
	}
	if err := n.writable("remove"); err != nil {
		return err
	}
	fi, err := n.root.Lstat(n.rel)
	if err != nil {
		return err
	}
	switch {
	case dir && !fi.IsDir():
		return &fs.PathError{Op: "rmdir", Path: n.path, Err: syscall.ENOTDIR}
	case !dir && fi.IsDir():
		return &fs.PathError{Op: "remove", Path: n.path, Err: syscall.EISDIR}
	}
	return n.root.Remove(n.rel)
}

func (h *sftpHandlers) mkdir(r *sftp.Request) error {
	mode, hasMode := h.book.take(fxpMkdir, r.Filepath)
	n, err := h.t.lookup(r.Filepath)
	if err != nil {
		return err
	}
	if err := n.writable("mkdir"); err != nil {
		return err
	}
	perm := fs.FileMode(0o777)
	if hasMode {
		perm = mode
	}
	return n.root.Mkdir(n.rel, perm)
}

// symlink stores target as the link's text, whatever it says: following
// the link later happens only through os.Root, which refuses targets that
// lead out of the mount.
func (h *sftpHandlers) symlink(target, linkp string) error {
	n, err := h.t.lookup(linkp)
	if err != nil {
		return err
	}
	if err := n.writable("symlink"); err != nil {
		return err
	}
	return n.root.Symlink(target, n.rel)
}

// link is hardlink@openssh.com, inside one mount.
func (h *sftpHandlers) link(oldp, newp string) error {
	o, n, err := h.pair("link", oldp, newp)
	if err != nil {
		return err
	}
	return o.root.Link(o.rel, n.rel)
}

// StatVFS is statvfs@openssh.com (sftp's df).
func (h *sftpHandlers) StatVFS(r *sftp.Request) (*sftp.StatVFS, error) {
	n, err := h.t.lookup(r.Filepath)
	if err != nil {
		return nil, toSFTP("statvfs", r.Filepath, err)
	}
	if err := n.missing(); err != nil {
		return nil, toSFTP("statvfs", r.Filepath, err)
	}
	root, rel := n.root, n.rel
	if n.virtual() {
		root, rel = h.t.mounts[0].root, "."
	}
	f, err := root.OpenFile(rel, os.O_RDONLY|syscall.O_NONBLOCK, 0)
	if err != nil {
		return nil, toSFTP("statvfs", r.Filepath, err)
	}
	defer f.Close()
	var st syscall.Statfs_t
	if err := syscall.Fstatfs(int(f.Fd()), &st); err != nil {
		return nil, toSFTP("statvfs", r.Filepath, err)
	}
	// The kernel's sizes, flags and name length are never negative.
	bsize, frsize := uint64(st.Bsize), uint64(st.Frsize)   //nolint:gosec // see above
	flags, namemax := uint64(st.Flags), uint64(st.Namelen) //nolint:gosec // see above
	return &sftp.StatVFS{
		Bsize: bsize, Frsize: frsize,
		Blocks: st.Blocks, Bfree: st.Bfree, Bavail: st.Bavail,
		Files: st.Files, Ffree: st.Ffree, Favail: st.Ffree,
		Flag: flags, Namemax: namemax,
	}, nil
}

// pair resolves the two paths of a rename or link, which must lie in one
// mount: a move across mounts would be a copy between os.Roots.
func (h *sftpHandlers) pair(op, oldp, newp string) (node, node, error) {
	o, err := h.t.lookup(oldp)
	if err != nil {
		return node{}, node{}, err
	}
	n, err := h.t.lookup(newp)
	if err != nil {
		return node{}, node{}, err
	}
	if err := sameMount(op, o, n); err != nil {
		return node{}, node{}, err
	}
	return o, n, nil
}
