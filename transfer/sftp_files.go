package transfer

import (
	"io"
	"io/fs"
	"os"
	"syscall"

	"github.com/pkg/sftp"
)

// Fileread opens a file for reading (get, reget).
func (h *sftpHandlers) Fileread(r *sftp.Request) (io.ReaderAt, error) {
	f, err := h.open(r, os.O_RDONLY)
	if err != nil {
		return nil, toSFTP("open", r.Filepath, err)
	}
	return f, nil
}

// Filewrite opens a file for writing (put, reput).
func (h *sftpHandlers) Filewrite(r *sftp.Request) (io.WriterAt, error) {
	f, err := h.open(r, os.O_WRONLY)
	if err != nil {
		return nil, toSFTP("open", r.Filepath, err)
	}
	return f, nil
}

// OpenFile opens a file for reading and writing on one handle.
func (h *sftpHandlers) OpenFile(r *sftp.Request) (sftp.WriterAtReaderAt, error) {
	f, err := h.open(r, os.O_RDWR)
	if err != nil {
		return nil, toSFTP("open", r.Filepath, err)
	}
	return f, nil
}

func (h *sftpHandlers) open(r *sftp.Request, flag int) (*file, error) {
	mode, hasMode := h.book.take(fxpOpen, r.Filepath)
	n, err := h.t.lookup(r.Filepath)
	if err != nil {
		return nil, err
	}
	pf := r.Pflags()
	if flag != os.O_RDONLY || pf.Creat || pf.Trunc {
		if err := n.writable("open"); err != nil {
			return nil, err
		}
	} else if err := n.missing(); err != nil {
		return nil, err
	} else if n.virtual() {
		return nil, &fs.PathError{Op: "read", Path: n.path, Err: syscall.EISDIR}
	}
	if pf.Creat {
		flag |= os.O_CREATE
	}
	if pf.Trunc {
		flag |= os.O_TRUNC
	}
	if pf.Excl {
		flag |= os.O_EXCL
	}
	perm := fs.FileMode(0o666)
	if hasMode {
		// The client's mode, like sftp-server; the kernel applies the umask.
		perm = mode
	}
	// O_NONBLOCK: opening a FIFO planted in the workspace must not hang
	// the request server's only command worker. It changes nothing for
	// regular files, the only kind served.
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
	fl := &file{f: f, n: &h.n, appendAt: -1}
	if pf.Append {
		fl.appendAt = fi.Size()
	}
	return fl, nil
}

// file is an open handle: positioned reads and writes straight on the
// *os.File (pread/pwrite), safe for the request server's parallel
// workers, with no buffering of the content.
type file struct {
	f *os.File
	n *counters
	// appendAt is the size at open of a file opened with SSH_FXF_APPEND,
	// else -1. The request server runs writes in parallel, so true
	// O_APPEND would put them in whatever order the workers run; writes
	// stay positioned instead. OpenSSH's reput sends offsets from the
	// end of the file, which land as they are; a client that counts its
	// offsets from 0 gets them moved past the old content, which an append
	// never overwrites.
	appendAt int64
}

func (f *file) ReadAt(p []byte, off int64) (int, error) {
	n, err := f.f.ReadAt(p, off)
	f.n.out.Add(int64(n))
	return n, err
}

func (f *file) WriteAt(p []byte, off int64) (int, error) {
	if off < f.appendAt {
		off += f.appendAt
	}
	n, err := f.f.WriteAt(p, off)
	f.n.in.Add(int64(n))
	return n, err
}

func (f *file) Close() error { return f.f.Close() }
