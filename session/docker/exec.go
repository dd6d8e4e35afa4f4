package docker

import (
	"context"
	"fmt"
	"io"
	"sync"
	"syscall"
	"time"

	cerrdefs "github.com/containerd/errdefs"
	"github.com/docker/docker/api/types"
	"github.com/docker/docker/api/types/container"
	"github.com/docker/docker/api/types/versions"
	"github.com/docker/docker/pkg/stdcopy"

	"github.com/ds01/ds01-gateway/session/runtime"
)

// Exec starts a process in a running container and attaches to its streams.
func (d *Docker) Exec(ctx context.Context, id string, spec runtime.ExecSpec) (runtime.Process, error) {
	opts := container.ExecOptions{
		User:         spec.User,
		Tty:          spec.Tty,
		AttachStdin:  true,
		AttachStdout: true,
		AttachStderr: true,
		Env:          spec.Env,
		WorkingDir:   spec.Dir,
		Cmd:          spec.Cmd,
	}
	if !spec.Tty {
		if dir := d.ioDir(ctx, id); dir != "" {
			return d.execFIFO(ctx, id, dir, spec)
		}
	} else if p, ok, err := d.execPty(ctx, id, spec); ok || err != nil {
		return p, err
	}
	var size *[2]uint
	var rows, cols uint32
	if spec.Tty && spec.Rows > 0 && spec.Cols > 0 {
		size = &[2]uint{uint(spec.Rows), uint(spec.Cols)}
		opts.ConsoleSize = size
		if versions.LessThan(d.cli.ClientVersion(), "1.42") {
			// Engines before API 1.42 (Debian's Docker 20.10) ignore the
			// size at start, and a resize after start races with the
			// program reading it: set it from inside, before the exec.
			rows, cols = spec.Rows, spec.Cols
		}
	}
	if spec.Tty {
		opts.Cmd = engineTTYCmd(spec.Cmd, rows, cols, spec.Modes)
	}
	created, err := d.cli.ContainerExecCreate(ctx, id, opts)
	if err != nil {
		if isNotRunning(err) {
			return nil, fmt.Errorf("exec: %w", runtime.ErrNotRunning)
		}
		return nil, fmt.Errorf("exec create: %w", err)
	}
	// Attaching starts the exec.
	hj, err := d.cli.ContainerExecAttach(ctx, created.ID, container.ExecAttachOptions{Tty: spec.Tty, ConsoleSize: size})
	if err != nil {
		return nil, fmt.Errorf("exec attach: %w", err)
	}
	return &process{execRef: execRef{d: d, id: created.ID}, tty: spec.Tty, hj: hj}, nil
}

func isNotRunning(err error) bool {
	return cerrdefs.IsNotFound(err) || containsAny(err.Error(), "is not running", "is paused", "is restarting")
}

// execRef is an exec known to the engine: its exit status, its host PID.
type execRef struct {
	d  *Docker
	id string

	pidOnce sync.Once
	pid     int
	pidErr  error
}

// process is an exec whose streams go through the engine's attach
// connection: terminals, and containers without a FIFO directory.
type process struct {
	execRef
	tty bool
	hj  types.HijackedResponse
}

func (p *process) Stdin() io.WriteCloser { return stdin{p} }

type stdin struct{ p *process }

func (s stdin) Write(b []byte) (int, error) { return s.p.hj.Conn.Write(b) }

// Close half-closes the connection so the process reads EOF while its
// output keeps flowing back.
func (s stdin) Close() error { return s.p.hj.CloseWrite() }

// streamBuf is large so bulk output crosses in few, big channel writes.
const streamBuf = 256 << 10

func (p *process) Stream(stdout, stderr io.Writer) error {
	var err error
	if p.tty {
		_, err = io.CopyBuffer(stdout, p.hj.Reader, make([]byte, streamBuf))
	} else {
		_, err = stdcopy.StdCopy(stdout, stderr, p.hj.Reader)
	}
	return err
}

// Wait asks the engine for the exit code. The engine may report the exec as
// running for a moment after its output ended, so it polls briefly.
func (p *execRef) Wait(ctx context.Context) (runtime.ExitStatus, error) {
	delay := time.Millisecond
	for {
		info, err := p.d.cli.ContainerExecInspect(ctx, p.id)
		if err != nil {
			return runtime.ExitStatus{}, fmt.Errorf("exec inspect: %w", err)
		}
		if !info.Running {
			return exitStatus(info.ExitCode), nil
		}
		select {
		case <-ctx.Done():
			return runtime.ExitStatus{}, ctx.Err()
		case <-time.After(delay):
		}
		if delay < 50*time.Millisecond {
			delay *= 2
		}
	}
}

// exitStatus turns the engine's exit code into a status. The engine reports
// a death by signal N as 128+N, like a shell; that is the only signal
// information it gives, so such codes are reported as signals.
func exitStatus(code int) runtime.ExitStatus {
	if code > 128 && code < 128+32 {
		return runtime.ExitStatus{Code: code, Signal: syscall.Signal(code - 128)}
	}
	return runtime.ExitStatus{Code: code}
}

// hostPID is the exec's PID in the host's namespace, which the gateway, as
// root on the Docker host, can signal directly: Docker has no API to signal
// an exec.
func (p *execRef) hostPID() (int, error) {
	p.pidOnce.Do(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		for i := 0; i < 20; i++ {
			info, err := p.d.cli.ContainerExecInspect(ctx, p.id)
			if err != nil {
				p.pidErr = fmt.Errorf("exec inspect: %w", err)
				return
			}
			if info.Pid > 0 {
				p.pid = info.Pid
				return
			}
			time.Sleep(5 * time.Millisecond)
		}
		p.pidErr = fmt.Errorf("exec %s has no pid", p.id)
	})
	return p.pid, p.pidErr
}

func (p *execRef) running() bool {
	running, err := p.state()
	return err == nil && running
}

// state asks the engine whether the exec still runs.
func (p *execRef) state() (running bool, err error) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	info, err := p.d.cli.ContainerExecInspect(ctx, p.id)
	if err != nil {
		return false, fmt.Errorf("exec inspect: %w", err)
	}
	return info.Running, nil
}

func (p *execRef) Signal(sig syscall.Signal) error {
	if !p.running() {
		return nil // never signal a PID that may have been reused
	}
	pid, err := p.hostPID()
	if err != nil {
		return err
	}
	if err := syscall.Kill(pid, sig); err != nil {
		return fmt.Errorf("signal %d: %w", pid, err)
	}
	return nil
}

// Hangup sends SIGHUP to the exec's process group; with a TTY the exec is a
// session leader, so that is its whole job tree on the terminal.
func (p *execRef) Hangup() error {
	if !p.running() {
		return nil // never signal a PID that may have been reused
	}
	pid, err := p.hostPID()
	if err != nil {
		return err
	}
	if err := syscall.Kill(-pid, syscall.SIGHUP); err != nil {
		if err := syscall.Kill(pid, syscall.SIGHUP); err != nil {
			return fmt.Errorf("hangup %d: %w", pid, err)
		}
	}
	return nil
}

func (p *process) Resize(ctx context.Context, rows, cols uint32) error {
	if !p.tty {
		return nil
	}
	err := p.d.cli.ContainerExecResize(ctx, p.id, container.ResizeOptions{Height: uint(rows), Width: uint(cols)})
	if err != nil {
		return fmt.Errorf("exec resize: %w", err)
	}
	return nil
}

func (p *process) Close() error {
	p.hj.Close()
	return nil
}
