package transfer

import (
	"io/fs"
	"os"
	"syscall"
)

// openFlags are an OPEN request's pflags.
type openFlags struct {
	read, write, append, creat, trunc, excl bool
}

func decodeOpenFlags(v uint32) openFlags {
	return openFlags{
		read: v&0x01 != 0, write: v&0x02 != 0, append: v&0x04 != 0,
		creat: v&0x08 != 0, trunc: v&0x10 != 0, excl: v&0x20 != 0,
	}
}

// accessMode is the open(2) access mode pkg/sftp's request server chose
// for pf: any of write, append, create or truncate opens for writing,
// with reading too if asked; read alone for reading; neither is refused.
func (pf openFlags) accessMode() (int, bool) {
	switch {
	case pf.write, pf.append, pf.creat, pf.trunc:
		if pf.read {
			return os.O_RDWR, true
		}
		return os.O_WRONLY, true
	case pf.read:
		return os.O_RDONLY, true
	}
	return 0, false
}

// open opens the regular file at the visible path p as OPEN asks; perm
// is the mode the client sent with it, if hasMode.
func (h *sftpHandlers) open(p string, pf openFlags, perm fs.FileMode, hasMode bool) (*file, error) {
	flag, ok := pf.accessMode()
	if !ok {
		return nil, &fs.PathError{Op: "open", Path: p, Err: syscall.EINVAL}
	}
	n, err := h.t.lookup(p)
	if err != nil {
		return nil, err
	}
	if flag != os.O_RDONLY || pf.creat || pf.trunc {
		if err := n.writable("open"); err != nil {
			return nil, err
		}
	} else if err := n.missing(); err != nil {
		return nil, err
	} else if n.virtual() {
		return nil, &fs.PathError{Op: "read", Path: n.path, Err: syscall.EISDIR}
	}
	if pf.creat {
		flag |= os.O_CREATE
	}
	if pf.trunc {
		flag |= os.O_TRUNC
	}
	if pf.excl {
		flag |= os.O_EXCL
	}
	if !hasMode {
		// Else the client's mode, like sftp-server; the kernel applies
		// the umask.
		perm = 0o666
	}
	// O_NONBLOCK: opening a FIFO planted in the workspace must not hang
	// the child's read loop, which serves every open. It changes nothing
	// for regular files, the only kind served.
	f, err := n.root.OpenFile(n.rel, flag|syscall.O_NONBLOCK, perm)
	if err != nil {
		return nil, err
	}
	fi, err := f.Stat()
	switch {
	case err != nil:
	case fi.IsDir():
		err = &fs.PathError{Op: "open", Path: n.path, Err: syscall.EISDIR}
	case !fi.Mode().IsRegular():
		err = &fs.PathError{Op: "open", Path: n.path, Err: syscall.EINVAL}
	}
	if err != nil {
		f.Close()
		return nil, err
	}
	fl := &file{f: f, n: &h.n, path: n.path, appendAt: -1,
		readable: flag&(os.O_WRONLY|os.O_RDWR) != os.O_WRONLY, writable: flag&(os.O_WRONLY|os.O_RDWR) != os.O_RDONLY}
	if pf.append {
		fl.appendAt = fi.Size()
	}
	return fl, nil
}

// file is an open handle: positioned reads and writes straight on the
// *os.File (pread/pwrite), with no buffering of the content.
type file struct {
	f    *os.File
	n    *counters
	path string // the visible path it was opened as
	// What it was opened for: pkg/sftp answered a read on a handle
	// opened for writing alone (and the converse) with a failure.
	readable, writable bool

	// appendAt is the size at open of a file opened with SSH_FXF_APPEND,
	// else -1. Writes stay positioned, as they were when pkg/sftp's
	// request server ran them in parallel (true O_APPEND would have put
	// them in whatever order its workers ran), so a client sees the same
	// files as before. OpenSSH's reput sends offsets from the
	// end of the file, which land as they are; a client that counts its
	// offsets from 0 gets them moved past the old content, which an append
	// never overwrites.
	appendAt int64
}

func (f *file) ReadAt(p []byte, off int64) (int, error) {
	n, err := preadFull(f.f, p, off)
	f.n.out.Add(int64(n))
	return n, err
}

func (f *file) WriteAt(p []byte, off int64) (int, error) {
	if off < f.appendAt {
		off += f.appendAt
	}
	n, err := pwriteFull(f.f, p, off)
	f.n.in.Add(int64(n))
	return n, err
}

func (f *file) Close() error { return f.f.Close() }
