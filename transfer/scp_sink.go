package transfer

import (
	"errors"
	"io"
	"io/fs"
	"os"
	"path"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// umask is what ChildMain sets; the sink applies it to modes from C and D
// lines unless -p asks for them as sent, as scp does.
const umask = 0o022

// target is where a record lands: the node, or why it cannot exist, and
// the name to use in messages (the client's words, not host paths).
type target struct {
	n    node
	err  error
	name string
}

func (s *scpSession) targetAt(name string) target {
	n, err := s.t.lookup(s.t.scpPath(name))
	return target{n: n, err: err, name: name}
}

// join is the target for a record named name inside directory d.
func (s *scpSession) join(d target, name string) target {
	t := d.name + "/" + name
	if d.err != nil {
		return target{err: d.err, name: t}
	}
	n, err := s.t.lookup(path.Join(d.n.path, name))
	return target{n: n, err: err, name: t}
}

// times holds a T record until the file or directory it is for arrives.
type times struct{ atime, mtime time.Time }

// sink receives files into targ (scp -t). It mirrors OpenSSH's sink():
// each call acks first, then reads records until E (end of this
// directory) or until the client closes its side.
func (s *scpSession) sink(targ target, top bool) error {
	isDir := false
	if targ.err == nil {
		if fi, err := targ.n.stat(); err == nil && fi.IsDir() {
			isDir = true
		}
	}
	if top && s.o.targetDir && !isDir {
		return s.fatal("%s: %s", targ.name, strerror(syscall.ENOTDIR))
	}
	if err := s.ack(); err != nil {
		return err
	}
	var tm *times
	for first := true; ; first = false {
		line, err := s.readLine()
		if errors.Is(err, io.EOF) {
			return nil
		}
		if err != nil {
			return err
		}
		if line == "" {
			return s.fatal("protocol error: unexpected <newline>")
		}
		switch line[0] {
		case 1, 2:
			// The client could not read a file; a fatal one ends it all.
			s.errs++
			if line[0] == 2 {
				return errFatal
			}
			continue
		case 'E':
			return s.ack()
		case 'T':
			if tm, err = parseTimes(line); err != nil {
				return s.fatal("protocol error: %v", err)
			}
			if err := s.ack(); err != nil {
				return err
			}
			continue
		case 'C', 'D':
		default:
			if first {
				return s.fatal("%s", line)
			}
			return s.fatal("protocol error: expected control record")
		}
		mode, size, name, err := parseRecord(line)
		if err != nil {
			return s.fatal("protocol error: %v", err)
		}
		// A name is one path element: "../x" or "a/b" from a hostile
		// client would otherwise write outside the target.
		if name == "" || name == "." || name == ".." || strings.ContainsRune(name, '/') {
			return s.fatal("error: unexpected filename: %s", name)
		}
		if !s.o.preserve {
			mode &^= umask
		}
		np := targ
		if isDir {
			np = s.join(targ, name)
		}
		if line[0] == 'D' {
			if !s.o.recursive {
				return s.fatal("protocol error: received directory without -r")
			}
			err = s.sinkDir(np, mode, tm)
		} else {
			err = s.sinkFile(np, mode, size, tm)
		}
		tm = nil
		if err != nil {
			return err
		}
	}
}

func (s *scpSession) sinkDir(np target, mode uint32, tm *times) error {
	if np.err != nil {
		return s.runErr("%s: %s", np.name, strerror(np.err))
	}
	created := false
	if fi, err := np.n.stat(); err == nil {
		if !fi.IsDir() {
			return s.runErr("%s: %s", np.name, strerror(syscall.ENOTDIR))
		}
		if s.o.preserve && np.n.writable("chmod") == nil {
			_ = np.n.root.Chmod(np.n.rel, unixMode(mode)) // best effort, as scp
		}
	} else {
		err := np.n.writable("mkdir")
		if err == nil {
			// Writable by its owner until its content has arrived.
			err = np.n.root.Mkdir(np.n.rel, fs.FileMode(mode|0o700)&fs.ModePerm)
		}
		if err != nil {
			return s.runErr("%s: %s", np.name, strerror(err))
		}
		created = true
	}
	if err := s.sink(np, false); err != nil {
		return err
	}
	if tm != nil {
		if err := np.n.root.Chtimes(np.n.rel, tm.atime, tm.mtime); err != nil {
			if err := s.runErr("%s: set times: %s", np.name, strerror(err)); err != nil {
				return err
			}
		}
	}
	if created {
		if err := np.n.root.Chmod(np.n.rel, unixMode(mode)); err != nil {
			return s.runErr("%s: set mode: %s", np.name, strerror(err))
		}
	}
	return nil
}

func (s *scpSession) sinkFile(np target, mode uint32, size int64, tm *times) error {
	f, existed, err := s.create(np, mode)
	if err != nil {
		// Refusing the C line: the client sends no data for it.
		return s.runErr("%s: %s", np.name, strerror(err))
	}
	if err := s.ack(); err != nil {
		f.Close()
		return err
	}
	wrerr := s.receive(f, size)
	if wrerr == errLost {
		f.Close()
		return lostConn(io.EOF)
	}
	if wrerr == nil && (existed == nil || existed.Mode().IsRegular()) {
		wrerr = f.Truncate(size)
	}
	if wrerr == nil {
		// open(2) took the mode only for a new file, and with u+w added.
		if s.o.preserve && (existed != nil || mode&0o200 == 0 || mode&^0o777 != 0) {
			wrerr = f.Chmod(unixMode(mode))
		} else if existed == nil && (mode&0o200 == 0 || mode&^0o777 != 0) {
			wrerr = f.Chmod(unixMode(mode &^ umask))
		}
	}
	if err := f.Close(); wrerr == nil {
		wrerr = err
	}
	if err := s.response(); err != nil && !errors.Is(err, errWarned) {
		return err
	}
	if tm != nil && wrerr == nil {
		wrerr = np.n.root.Chtimes(np.n.rel, tm.atime, tm.mtime)
	}
	if wrerr != nil {
		return s.runErr("%s: %s", np.name, strerror(wrerr))
	}
	return s.ack()
}

// create opens np for writing without truncating it: scp truncates to the
// new size once the data is in. existed describes the file if it was there.
func (s *scpSession) create(np target, mode uint32) (f *os.File, existed fs.FileInfo, err error) {
	if np.err != nil {
		return nil, nil, np.err
	}
	if err := np.n.writable("open"); err != nil {
		return nil, nil, err
	}
	existed, _ = np.n.stat()
	// O_NONBLOCK: a FIFO planted as the target must not hang the session.
	f, err = np.n.root.OpenFile(np.n.rel, os.O_WRONLY|os.O_CREATE|syscall.O_NONBLOCK, fs.FileMode(mode|0o200)&fs.ModePerm)
	return f, existed, err
}

// errLost: the client closed the stream in the middle of a file.
var errLost = errors.New("lost connection")

// receive copies size bytes of file data into f. After a write error it
// keeps reading, so the stream stays in step, and reports the error.
func (s *scpSession) receive(f *os.File, size int64) error {
	var wrerr error
	buf := s.buffer()
	var off int64
	for off < size {
		k := int64(len(buf))
		if size-off < k {
			k = size - off
		}
		m, err := io.ReadFull(s.in, buf[:k])
		if wrerr == nil && m > 0 {
			var w int
			// Write, not WriteAt: the target may be a FIFO or a device.
			w, wrerr = f.Write(buf[:m])
			s.n.in.Add(int64(w))
		}
		off += int64(m)
		if err != nil {
			return errLost
		}
	}
	return wrerr
}

// parseRecord reads "C0644 1234 name" (or D): four octal digits, a
// decimal size, a name.
func parseRecord(line string) (mode uint32, size int64, name string, err error) {
	if len(line) < 6 {
		return 0, 0, "", errors.New("bad mode")
	}
	m, err := strconv.ParseUint(line[1:5], 8, 32)
	if err != nil {
		return 0, 0, "", errors.New("bad mode")
	}
	if line[5] != ' ' {
		return 0, 0, "", errors.New("mode not delimited")
	}
	sz, rest, ok := strings.Cut(line[6:], " ")
	if !ok {
		return 0, 0, "", errors.New("size not delimited")
	}
	size, err = strconv.ParseInt(sz, 10, 64)
	if err != nil || size < 0 || strings.ContainsAny(sz, "+-") {
		return 0, 0, "", errors.New("size out of range")
	}
	return uint32(m), size, rest, nil
}

// parseTimes reads "T<mtime> <usec> <atime> <usec>".
func parseTimes(line string) (*times, error) {
	f := strings.Split(line[1:], " ")
	if len(f) != 4 {
		return nil, errors.New("bad time record")
	}
	var v [4]int64
	for i, s := range f {
		n, err := strconv.ParseInt(s, 10, 64)
		if err != nil || n < 0 || strings.ContainsAny(s, "+-") {
			return nil, errors.New("bad time record")
		}
		v[i] = n
	}
	if v[1] > 999999 || v[3] > 999999 {
		return nil, errors.New("bad time record")
	}
	return &times{
		mtime: time.Unix(v[0], v[1]*1000),
		atime: time.Unix(v[2], v[3]*1000),
	}, nil
}
