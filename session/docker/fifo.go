package docker

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/docker/docker/api/types/container"
	"golang.org/x/sys/unix"

	"github.com/ds01/ds01-gateway/session/runtime"
)

// The engine relays an exec's output through containerd's shim and
// dockerd, two extra copies that cap a stream well below what SSH can
// carry. For non-terminal sessions the gateway instead makes three FIFOs
// in a directory mounted into the container and has the process open them
// as its stdin, stdout and stderr: the data then goes straight from the
// process to the gateway, as it does from a process to sshd.

// fifoPipeSize is the kernel buffer asked for on the data FIFOs; bigger
// than the 64 KiB default so a fast writer wakes the reader less often.
const fifoPipeSize = 1 << 20

// drainAfterExit is how long output is still read after the process has
// exited while something (a background child) keeps its stdout open. The
// engine's attach gives up 2 s after the exit; sshd would wait for the
// child, which hangs clients that start servers in the background.
const drainAfterExit = 250 * time.Millisecond

// ioDir returns the container's FIFO directory on the host, or "".
func (d *Docker) ioDir(ctx context.Context, id string) string {
	if v, ok := d.ioDirs.Load(id); ok {
		return v.(string)
	}
	info, err := d.cli.ContainerInspect(ctx, id)
	if err != nil || info.Config == nil {
		return ""
	}
	dir := info.Config.Labels[labelIODir]
	d.ioDirs.Store(id, dir)
	return dir
}

func (d *Docker) execFIFO(ctx context.Context, id, dir string, spec runtime.ExecSpec) (runtime.Process, error) {
	uid, gid, err := parseUser(spec.User)
	if err != nil {
		return nil, err
	}
	var b [8]byte
	rand.Read(b[:])
	name := hex.EncodeToString(b[:])
	host := filepath.Join(dir, name)
	paths := []string{host + ".in", host + ".out", host + ".err"}
	removeFIFOs := func() {
		for _, p := range paths {
			os.Remove(p)
		}
	}
	for _, p := range paths {
		// Owned by the user, 0600: only the user's processes can open them.
		if err := unix.Mkfifo(p, 0o600); err != nil {
			removeFIFOs()
			return nil, fmt.Errorf("exec: make fifo: %w", err)
		}
		if err := os.Lchown(p, uid, gid); err != nil {
			removeFIFOs()
			return nil, fmt.Errorf("exec: chown fifo: %w", err)
		}
	}
	// Our ends never block in open(2). A blocking open waits for the other
	// side, and the other side is a process in the user's image, whose
	// /bin/sh may never open it: each such wait would hold an OS thread for
	// as long as the session lasts (Go aborts at 10,000). The read ends
	// open with O_NONBLOCK, which returns at once, and their reads wait in
	// the poller (awaitWriter); the write end of stdin is retried until the
	// process has opened its read end (fifoStdin).
	out, err := os.OpenFile(paths[1], os.O_RDONLY|unix.O_NONBLOCK, 0)
	if err != nil {
		removeFIFOs()
		return nil, fmt.Errorf("exec: open fifo: %w", err)
	}
	errf, err := os.OpenFile(paths[2], os.O_RDONLY|unix.O_NONBLOCK, 0)
	if err != nil {
		out.Close()
		removeFIFOs()
		return nil, fmt.Errorf("exec: open fifo: %w", err)
	}
	setPipeSize(out)
	// The shell opens the FIFOs in order and replaces itself with the
	// command, which keeps the exec's PID for signals.
	cmd := append([]string{"/bin/sh", "-c", `exec "$@" <"$0.in" >"$0.out" 2>"$0.err"`, ioMountPoint + "/" + name}, spec.Cmd...)
	fail := func(err error) (runtime.Process, error) {
		out.Close()
		errf.Close()
		removeFIFOs()
		return nil, err
	}
	execID, err := d.startDetached(ctx, id, spec, cmd)
	if err != nil {
		return fail(err)
	}
	p := &fifoProcess{execRef: execRef{d: d, id: execID}, in: newFIFOStdin(paths[0]), out: out, err: errf, paths: paths}
	return p, nil
}

// startDetached starts cmd in the container as spec's user, in spec's
// directory and environment, with no stream attached: the process's
// stdio is what cmd opens itself (the FIFOs, or the gateway's pty).
func (d *Docker) startDetached(ctx context.Context, id string, spec runtime.ExecSpec, cmd []string) (string, error) {
	created, err := d.cli.ContainerExecCreate(ctx, id, container.ExecOptions{
		User: spec.User, Env: spec.Env, WorkingDir: spec.Dir, Cmd: cmd,
	})
	if err != nil {
		if isNotRunning(err) {
			return "", fmt.Errorf("exec: %w", runtime.ErrNotRunning)
		}
		return "", fmt.Errorf("exec create: %w", err)
	}
	if err := d.cli.ContainerExecStart(ctx, created.ID, container.ExecStartOptions{Detach: true}); err != nil {
		return "", fmt.Errorf("exec start: %w", err)
	}
	return created.ID, nil
}

// fifoStdin is our end of the stdin FIFO. Opening a FIFO for writing
// without blocking fails (ENXIO) until a reader has it open, so it is
// retried, on a timer, until the process's shell has opened its end; the
// shell's own open waits for us meanwhile. Writes and EOF wait for it.
type fifoStdin struct {
	path  string
	ready chan struct{} // closed once f or err is set
	f     *os.File
	err   error

	stop     chan struct{} // closed by abort
	stopOnce sync.Once
	eofOnce  sync.Once
}

// The shell's open of its end waits for ours, so the session's start waits
// for the next attempt: attempts are a millisecond apart while a shell
// normally gets there (stdinEager), then back off up to stdinRetry for one
// that is slow or never comes.
const (
	stdinEager = 30
	stdinRetry = 50 * time.Millisecond
)

func newFIFOStdin(path string) *fifoStdin {
	s := &fifoStdin{path: path, ready: make(chan struct{}), stop: make(chan struct{})}
	go s.open()
	return s
}

func (s *fifoStdin) open() {
	defer close(s.ready)
	delay := time.Millisecond
	for attempt := 1; ; attempt++ {
		f, err := os.OpenFile(s.path, os.O_WRONLY|unix.O_NONBLOCK, 0)
		if err == nil {
			setPipeSize(f)
			s.f = f
			return
		}
		if !errors.Is(err, unix.ENXIO) {
			s.err = err
			return
		}
		t := time.NewTimer(delay)
		select {
		case <-s.stop:
			t.Stop()
			s.err = os.ErrClosed
			return
		case <-t.C:
		}
		if attempt >= stdinEager {
			delay = min(2*delay, stdinRetry)
		}
	}
}

func (s *fifoStdin) Write(b []byte) (int, error) {
	select {
	case <-s.ready:
	case <-s.stop:
		return 0, os.ErrClosed
	}
	if s.err != nil {
		return 0, s.err
	}
	return s.f.Write(b)
}

// Close delivers EOF: once the process has its end open, ours closes.
func (s *fifoStdin) Close() error {
	s.eofOnce.Do(func() {
		go func() {
			<-s.ready
			if s.f != nil {
				s.f.Close()
			}
		}()
	})
	return nil
}

// abort gives up: no more opening, and our end is closed.
func (s *fifoStdin) abort() {
	s.stopOnce.Do(func() { close(s.stop) })
	<-s.ready
	if s.f != nil {
		s.f.Close()
	}
}

// awaitWriter waits, in the poller rather than on a thread, until the
// FIFO's writer has written or come and gone. A read before that would
// return end-of-file at once: for a FIFO no writer yet and no writer any
// more look the same to read(2), but not to poll(2).
func awaitWriter(f *os.File) error { return awaitReadable(f) }

// awaitReadable waits, in the poller rather than on a thread, until f
// polls readable.
func awaitReadable(f *os.File) error {
	rc, err := f.SyscallConn()
	if err != nil {
		return err
	}
	var pollErr error
	err = rc.Read(func(fd uintptr) bool {
		fds := []unix.PollFd{{Fd: int32(fd), Events: unix.POLLIN}} //nolint:gosec // a descriptor number fits
		n, err := unix.Poll(fds, 0)
		if err != nil && err != unix.EINTR {
			pollErr = err
			return true
		}
		return n > 0
	})
	return errors.Join(err, pollErr)
}

func setPipeSize(f *os.File) {
	if sc, err := f.SyscallConn(); err == nil {
		// A bigger buffer is an optimisation: the default one works too.
		sc.Control(func(fd uintptr) { _, _ = unix.FcntlInt(fd, unix.F_SETPIPE_SZ, fifoPipeSize) })
	}
}

func parseUser(u string) (uid, gid int, err error) {
	us, gs, ok := strings.Cut(u, ":")
	if uid, err = strconv.Atoi(us); err == nil && ok {
		gid, err = strconv.Atoi(gs)
	}
	if err != nil || !ok {
		return 0, 0, fmt.Errorf("exec: user %q is not uid:gid", u)
	}
	return uid, gid, nil
}

// fifoProcess is a non-terminal exec whose streams are FIFOs.
type fifoProcess struct {
	execRef
	in        *fifoStdin
	out, err  *os.File
	paths     []string // the FIFOs, removed with the process
	closeOnce sync.Once
}

func (p *fifoProcess) Stdin() io.WriteCloser { return p.in }

func (p *fifoProcess) Stream(stdout, stderr io.Writer) error {
	done := make(chan struct{})
	defer close(done)
	go p.cutAfterExit(done)
	var wg sync.WaitGroup
	var outErr, errErr error
	wg.Add(2)
	go func() {
		defer wg.Done()
		if outErr = awaitWriter(p.out); outErr == nil {
			// Hide os.File's WriteTo, which would copy in 32 KiB pieces.
			_, outErr = io.CopyBuffer(stdout, struct{ io.Reader }{p.out}, make([]byte, streamBuf))
		}
	}()
	go func() {
		defer wg.Done()
		if errErr = awaitWriter(p.err); errErr == nil {
			_, errErr = io.CopyBuffer(stderr, p.err, make([]byte, 32<<10))
		}
	}()
	wg.Wait()
	err := errors.Join(outErr, errErr)
	if errors.Is(err, os.ErrDeadlineExceeded) {
		return nil
	}
	return err
}

// cutAfterExit ends the stream drainAfterExit after the process exits, in
// case a background child still holds its stdout or stderr.
func (p *fifoProcess) cutAfterExit(done <-chan struct{}) {
	if p.waitExit(done) {
		deadline := time.Now().Add(drainAfterExit)
		p.out.SetReadDeadline(deadline)
		p.err.SetReadDeadline(deadline)
	}
}

func (p *fifoProcess) Resize(context.Context, uint32, uint32) error { return nil }

func (p *fifoProcess) Close() error {
	p.closeOnce.Do(func() {
		p.in.abort()
		p.out.Close()
		p.err.Close()
		for _, path := range p.paths {
			os.Remove(path)
		}
	})
	return nil
}
