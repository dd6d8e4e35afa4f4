package transfer

import (
	"errors"
	"io"
	"os"
	"syscall"
	"unsafe"

	"golang.org/x/sys/unix"
)

// The child's hot system calls (its stdin read, a READ's pread, a
// WRITE's pwrite, the reply's write) go through RawSyscall, which skips
// the runtime's entersyscall/exitsyscall. With those, every request that
// found the child idle woke the runtime's sysmon thread, which then
// polled every 20 µs until the child was idle again: ~7 futex and
// nanosleep calls, each a context switch, per small file (perf: a fifth
// of the child's CPU on a get of small files). A raw call holds the
// child's only P while it runs, which is what we want here: the pipes
// are non-blocking (polled), so a wait for the peer parks on the poller
// instead; and fastFiles runs file I/O only while pkg/sftp has nothing
// to do (limitsRWC.acquire).

// rawPipe reads and writes a non-blocking pipe with raw system calls,
// waiting on the poller when it is empty or full.
type rawPipe struct {
	f  *os.File
	rc syscall.RawConn
}

// newRawPipe returns f as a rawPipe if f is non-blocking; else nil.
func newRawPipe(f *os.File) *rawPipe {
	fl, err := unix.FcntlInt(f.Fd(), unix.F_GETFL, 0)
	if err != nil || fl&unix.O_NONBLOCK == 0 {
		return nil
	}
	rc, err := f.SyscallConn()
	if err != nil {
		return nil
	}
	return &rawPipe{f: f, rc: rc}
}

func (p *rawPipe) Read(b []byte) (int, error) {
	if len(b) == 0 {
		return 0, nil
	}
	var n int
	var rerr error
	err := p.rc.Read(func(fd uintptr) bool {
		n, rerr = rawRW(unix.SYS_READ, fd, b, 0, false)
		return !errors.Is(rerr, unix.EAGAIN)
	})
	if err != nil {
		return 0, err
	}
	if rerr != nil {
		return 0, &os.PathError{Op: "read", Path: p.f.Name(), Err: rerr}
	}
	if n == 0 {
		return 0, io.EOF
	}
	return n, nil
}

// Write writes all of b, waiting on the poller while the pipe is full.
func (p *rawPipe) Write(b []byte) (int, error) {
	done := 0
	var werr error
	err := p.rc.Write(func(fd uintptr) bool {
		for done < len(b) {
			n, err := rawRW(unix.SYS_WRITE, fd, b[done:], 0, false)
			if errors.Is(err, unix.EAGAIN) {
				return false
			}
			if err != nil {
				werr = err
				return true
			}
			done += n
		}
		return true
	})
	if err != nil {
		return done, err
	}
	if werr != nil {
		return done, &os.PathError{Op: "write", Path: p.f.Name(), Err: werr}
	}
	return done, nil
}

func (p *rawPipe) Close() error { return p.f.Close() }

// rawRW is read(2)/write(2) (positioned: pread64/pwrite64) with
// RawSyscall, retried on EINTR.
func rawRW(trap, fd uintptr, b []byte, off int64, positioned bool) (int, error) {
	if len(b) == 0 {
		return 0, nil
	}
	for {
		var r uintptr
		var e syscall.Errno
		p := uintptr(unsafe.Pointer(&b[0])) //nolint:gosec // the buffer outlives the call
		if positioned {
			r, _, e = unix.RawSyscall6(trap, fd, p, uintptr(len(b)), uintptr(off), 0, 0) //nolint:gosec // off >= 0
		} else {
			r, _, e = unix.RawSyscall(trap, fd, p, uintptr(len(b)))
		}
		if e == unix.EINTR {
			continue
		}
		if e != 0 {
			return 0, e
		}
		return int(r), nil //nolint:gosec // at most len(b)
	}
}

// preadFull reads len(b) bytes at off from f, or up to the end of the
// file (io.EOF then), as os.File.ReadAt does.
func preadFull(f *os.File, b []byte, off int64) (int, error) {
	rc, err := f.SyscallConn()
	if err != nil {
		return 0, err
	}
	n := 0
	var rerr error
	err = rc.Control(func(fd uintptr) {
		for n < len(b) {
			k, err := rawRW(unix.SYS_PREAD64, fd, b[n:], off+int64(n), true)
			if err != nil {
				rerr = &os.PathError{Op: "read", Path: f.Name(), Err: err}
				return
			}
			if k == 0 {
				rerr = io.EOF
				return
			}
			n += k
		}
	})
	if err != nil {
		return n, err
	}
	return n, rerr
}

// pwriteFull writes all of b at off to f, as os.File.WriteAt does.
func pwriteFull(f *os.File, b []byte, off int64) (int, error) {
	rc, err := f.SyscallConn()
	if err != nil {
		return 0, err
	}
	n := 0
	var werr error
	err = rc.Control(func(fd uintptr) {
		for n < len(b) {
			k, err := rawRW(unix.SYS_PWRITE64, fd, b[n:], off+int64(n), true)
			if err != nil {
				werr = &os.PathError{Op: "write", Path: f.Name(), Err: err}
				return
			}
			if k == 0 {
				werr = io.ErrShortWrite
				return
			}
			n += k
		}
	})
	if err != nil {
		return n, err
	}
	return n, werr
}
