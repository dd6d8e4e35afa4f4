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
	suffixes := []string{".in", ".out", ".err"}
	removeFIFOs := func() {
		for _, s := range suffixes {
			os.Remove(host + s)
		}
	}
	for _, s := range suffixes {
		// Owned by the user, 0600: only the user's processes can open them.
		if err := unix.Mkfifo(host+s, 0o600); err != nil {
			removeFIFOs()
			return nil, fmt.Errorf("exec: make fifo: %w", err)
		}
		if err := os.Lchown(host+s, uid, gid); err != nil {
			removeFIFOs()
			return nil, fmt.Errorf("exec: chown fifo: %w", err)
		}
	}
	// The shell opens the FIFOs in order and replaces itself with the
	// command, which keeps the exec's PID for signals.
	cmd := append([]string{"/bin/sh", "-c", `exec "$@" <"$0.in" >"$0.out" 2>"$0.err"`, ioMountPoint + "/" + name}, spec.Cmd...)
	created, err := d.cli.ContainerExecCreate(ctx, id, container.ExecOptions{
		User: spec.User, Env: spec.Env, WorkingDir: spec.Dir, Cmd: cmd,
	})
	if err != nil {
		removeFIFOs()
		if isNotRunning(err) {
			return nil, fmt.Errorf("exec: %w", runtime.ErrNotRunning)
		}
		return nil, fmt.Errorf("exec create: %w", err)
	}
	// Opening a FIFO blocks until the other side opens it too, so our ends
	// are opened concurrently with the process opening its own.
	ends := []struct {
		flag int
		c    chan openResult
	}{{os.O_WRONLY, make(chan openResult, 1)}, {os.O_RDONLY, make(chan openResult, 1)}, {os.O_RDONLY, make(chan openResult, 1)}}
	for i, e := range ends {
		go func() {
			f, err := os.OpenFile(host+suffixes[i], e.flag, 0)
			e.c <- openResult{f, err}
		}()
	}
	p := &fifoProcess{execRef: execRef{d: d, id: created.ID}}
	startErr := d.cli.ContainerExecStart(ctx, created.ID, container.ExecStartOptions{Detach: true})
	files := make([]*os.File, len(ends))
	var openErr error
	for i, e := range ends {
		r, err := p.awaitOpen(ctx, e.c, host+suffixes[i], e.flag, startErr != nil)
		files[i] = r
		openErr = errors.Join(openErr, err)
	}
	removeFIFOs() // the open descriptors are all that is needed now
	if err := errors.Join(startErr, openErr); err != nil {
		for _, f := range files {
			if f != nil {
				f.Close()
			}
		}
		return nil, fmt.Errorf("exec start: %w", err)
	}
	p.in, p.out, p.err = files[0], files[1], files[2]
	setPipeSize(p.in)
	setPipeSize(p.out)
	return p, nil
}

type openResult struct {
	f   *os.File
	err error
}

// awaitOpen waits for our end of a FIFO to open. If the process is gone
// before opening its end (it failed to start), our end is released by
// opening the other end ourselves, so it cannot block forever.
func (p *fifoProcess) awaitOpen(ctx context.Context, c chan openResult, path string, flag int, failed bool) (*os.File, error) {
	tick := time.NewTicker(50 * time.Millisecond)
	defer tick.Stop()
	for {
		if failed || ctx.Err() != nil {
			unblockFIFO(path, flag)
			r := <-c
			return r.f, r.err
		}
		select {
		case r := <-c:
			return r.f, r.err
		case <-tick.C:
			failed = !p.running()
		case <-ctx.Done():
		}
	}
}

// unblockFIFO completes a pending open of path by opening the other end.
func unblockFIFO(path string, flag int) {
	other := os.O_RDONLY
	if flag == os.O_RDONLY {
		other = os.O_WRONLY
	}
	if f, err := os.OpenFile(path, other|unix.O_NONBLOCK, 0); err == nil {
		f.Close()
	}
}

func setPipeSize(f *os.File) {
	if sc, err := f.SyscallConn(); err == nil {
		sc.Control(func(fd uintptr) { unix.FcntlInt(fd, unix.F_SETPIPE_SZ, fifoPipeSize) })
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
	in, out, err *os.File
	closeOnce    sync.Once
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
		// Hide os.File's WriteTo, which would copy in 32 KiB pieces.
		_, outErr = io.CopyBuffer(stdout, struct{ io.Reader }{p.out}, make([]byte, streamBuf))
	}()
	go func() {
		defer wg.Done()
		_, errErr = io.CopyBuffer(stderr, p.err, make([]byte, 32<<10))
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
	delay := 100 * time.Millisecond
	for {
		select {
		case <-done:
			return
		case <-time.After(delay):
		}
		if !p.running() {
			deadline := time.Now().Add(drainAfterExit)
			p.out.SetReadDeadline(deadline)
			p.err.SetReadDeadline(deadline)
			return
		}
		if delay < time.Second {
			delay *= 2
		}
	}
}

func (p *fifoProcess) Resize(context.Context, uint32, uint32) error { return nil }

func (p *fifoProcess) Close() error {
	p.closeOnce.Do(func() {
		p.in.Close()
		p.out.Close()
		p.err.Close()
	})
	return nil
}
