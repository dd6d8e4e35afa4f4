package transfer

import (
	"io"
	"io/fs"
	"os"
	"syscall"

	"github.com/pkg/sftp"
)

// Filelist answers opendir ("List") and stat ("Stat").
func (h *sftpHandlers) Filelist(r *sftp.Request) (sftp.ListerAt, error) {
	n, err := h.t.lookup(r.Filepath)
	if err != nil {
		return nil, toSFTP(r.Method, r.Filepath, err)
	}
	switch r.Method {
	case "List":
		l, err := h.list(n)
		return l, toSFTP("opendir", r.Filepath, err)
	case "Stat":
		fi, err := n.stat()
		if err != nil {
			return nil, toSFTP("stat", r.Filepath, err)
		}
		return infoList{fi}, nil
	}
	return nil, sftp.ErrSSHFxOpUnsupported
}

// Lstat answers lstat: a symlink is described, not followed.
func (h *sftpHandlers) Lstat(r *sftp.Request) (sftp.ListerAt, error) {
	n, err := h.t.lookup(r.Filepath)
	if err != nil {
		return nil, toSFTP("lstat", r.Filepath, err)
	}
	fi, err := n.lstat()
	if err != nil {
		return nil, toSFTP("lstat", r.Filepath, err)
	}
	return infoList{fi}, nil
}

// Readlink returns a link's text as stored, even one pointing outside.
func (h *sftpHandlers) Readlink(p string) (string, error) {
	n, err := h.t.lookup(p)
	if err != nil {
		return "", toSFTP("readlink", p, err)
	}
	if n.virtual() {
		if err := n.missing(); err != nil {
			return "", toSFTP("readlink", p, err)
		}
		return "", toSFTP("readlink", p, syscall.EINVAL)
	}
	s, err := n.root.Readlink(n.rel)
	return s, toSFTP("readlink", p, err)
}

func (h *sftpHandlers) list(n node) (sftp.ListerAt, error) {
	if err := n.missing(); err != nil {
		return nil, err
	}
	if n.virtual() {
		var l infoList
		for _, name := range h.t.virtualChildren(n.path) {
			c, err := h.t.lookup(n.path + "/" + name)
			if err != nil {
				continue
			}
			fi, err := c.stat()
			if err != nil {
				// A mount the user cannot stat is still listed.
				fi = virtualDir(name)
			}
			l = append(l, fi)
		}
		return l, nil
	}
	f, err := n.root.Open(n.rel)
	if err != nil {
		return nil, err
	}
	fi, err := f.Stat()
	if err == nil && !fi.IsDir() {
		err = &fs.PathError{Op: "opendir", Path: n.path, Err: syscall.ENOTDIR}
	}
	if err != nil {
		f.Close()
		return nil, err
	}
	return &dirLister{f: f}, nil
}

// infoList is a ListerAt over FileInfos already at hand.
type infoList []fs.FileInfo

func (l infoList) ListAt(dst []fs.FileInfo, off int64) (int, error) {
	if off >= int64(len(l)) {
		return 0, io.EOF
	}
	n := copy(dst, l[off:])
	if off+int64(n) >= int64(len(l)) {
		return n, io.EOF
	}
	return n, nil
}

// dirLister reads a directory in batches as the client asks, so a huge
// directory is never held in memory at once. Entries come from lstat,
// with Sys() a *syscall.Stat_t: `ls -l` shows the real owner.
type dirLister struct {
	f    *os.File
	done int64
}

func (d *dirLister) ListAt(dst []fs.FileInfo, off int64) (int, error) {
	if off != d.done {
		// The request server only reads forward.
		return 0, syscall.EINVAL
	}
	fis, err := d.f.Readdir(len(dst))
	n := copy(dst, fis)
	d.done += int64(n)
	if err == nil && n < len(dst) {
		err = io.EOF
	}
	return n, err
}

func (d *dirLister) Close() error { return d.f.Close() }
