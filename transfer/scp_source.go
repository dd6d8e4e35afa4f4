package transfer

import (
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path"
	"sort"
	"strings"
	"syscall"
)

// maxPath is where recursion stops, like scp's PATH_MAX buffer; it also
// ends symlink loops that os.Root lets through.
const maxPath = 4096

// source sends files (scp -f), mirroring OpenSSH's source(): the client
// acks once to start, then every record and every file is acked.
func (s *scpSession) source(paths []string) error {
	if err := s.response(); err != nil {
		return err
	}
	for _, p := range paths {
		name := p
		for len(name) > 1 && strings.HasSuffix(name, "/") {
			name = name[:len(name)-1]
		}
		t := s.targetAt(name)
		if t.err != nil {
			if err := s.runErr("%s: %s", name, strerror(t.err)); err != nil {
				return err
			}
			continue
		}
		if err := s.send(t.n, name); err != nil {
			return err
		}
	}
	return nil
}

// send sends one file, or with -r one directory tree. Per-file problems
// are reported in-band and skipped; the error returned ends the session.
func (s *scpSession) send(n node, name string) error {
	if strings.ContainsRune(name, '\n') {
		return s.runErr("%s: skipping, filename contains a newline", strings.ReplaceAll(name, "\n", "\\n"))
	}
	if err := n.missing(); err != nil {
		return s.runErr("%s: %s", name, strerror(err))
	}
	if n.virtual() {
		return s.runErr("%s: not a regular file", name)
	}
	// O_NONBLOCK: opening a planted FIFO must not hang the session.
	f, err := n.root.OpenFile(n.rel, os.O_RDONLY|syscall.O_NONBLOCK, 0)
	if err != nil {
		return s.runErr("%s: %s", name, strerror(err))
	}
	fi, err := f.Stat()
	if err != nil {
		f.Close()
		return s.runErr("%s: %s", name, strerror(err))
	}
	switch {
	case fi.Mode().IsRegular():
		defer f.Close()
		return s.sendFile(f, fi, path.Base(n.path), name)
	case fi.IsDir() && s.o.recursive:
		names, err := f.Readdirnames(-1)
		f.Close() // before descending: deep trees must not pile up fds
		if err != nil {
			return s.runErr("%s: %s", name, strerror(err))
		}
		return s.sendDir(n, fi, names, name)
	}
	f.Close()
	return s.runErr("%s: not a regular file", name)
}

func (s *scpSession) sendFile(f *os.File, fi fs.FileInfo, base, name string) error {
	if s.o.preserve {
		if err := s.sendTimes(fi); err != nil {
			return skipWarned(err)
		}
	}
	if _, err := fmt.Fprintf(s.out, "C%04o %d %s\n", modeBits(fi), fi.Size(), base); err != nil {
		return err
	}
	if err := s.response(); err != nil {
		return skipWarned(err)
	}
	// Exactly Size bytes go out whatever happens to the file meanwhile:
	// after a read error the rest is zeros and the error is reported.
	size := fi.Size()
	buf := s.buffer()
	var haderr error
	for off := int64(0); off < size; {
		k := int64(len(buf))
		if size-off < k {
			k = size - off
		}
		m := 0
		if haderr == nil {
			m, haderr = f.ReadAt(buf[:k], off)
			if int64(m) == k {
				haderr = nil
			} else if haderr == nil || errors.Is(haderr, io.EOF) {
				haderr = errors.New("file changed size while being sent")
			}
			s.n.out.Add(int64(m))
		}
		clear(buf[m:k])
		if _, err := s.out.Write(buf[:k]); err != nil {
			return err
		}
		off += k
	}
	if haderr != nil {
		if err := s.runErr("%s: %s", name, strerror(haderr)); err != nil {
			return err
		}
	} else if err := s.ack(); err != nil {
		return err
	}
	return skipWarned(s.response())
}

func (s *scpSession) sendDir(n node, fi fs.FileInfo, names []string, name string) error {
	if s.o.preserve {
		if err := s.sendTimes(fi); err != nil {
			return skipWarned(err)
		}
	}
	if _, err := fmt.Fprintf(s.out, "D%04o 0 %s\n", modeBits(fi), path.Base(n.path)); err != nil {
		return err
	}
	if err := s.response(); err != nil {
		return skipWarned(err)
	}
	sort.Strings(names)
	for _, e := range names {
		child := name + "/" + e
		if len(child) >= maxPath {
			if err := s.runErr("%s: name too long", child); err != nil {
				return err
			}
			continue
		}
		if err := s.send(n.child(e), child); err != nil {
			return err
		}
	}
	if _, err := io.WriteString(s.out, "E\n"); err != nil {
		return err
	}
	return skipWarned(s.response())
}

func (s *scpSession) sendTimes(fi fs.FileInfo) error {
	mtime, atime := fi.ModTime().Unix(), fi.ModTime().Unix()
	if st, ok := fi.Sys().(*syscall.Stat_t); ok {
		atime = st.Atim.Sec
	}
	if _, err := fmt.Fprintf(s.out, "T%d 0 %d 0\n", mtime, atime); err != nil {
		return err
	}
	return s.response()
}

// skipWarned: a client that refused one file still wants the next.
func skipWarned(err error) error {
	if errors.Is(err, errWarned) {
		return nil
	}
	return err
}
