package docker

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"golang.org/x/sys/unix"

	"github.com/ds01/ds01-gateway/session/ptymodes"
	"github.com/ds01/ds01-gateway/session/runtime"
)

// A terminal exec through the engine (Tty: true) has every byte of its
// output copied by runc's console, containerd's shim and dockerd before it
// reaches the gateway. Instead the gateway opens a pty in the container's
// own devpts instance, keeps the master, and starts the exec without a
// terminal, with a shell that opens /dev/pts/N as its stdin, stdout and
// stderr. runc makes every exec a session leader without a controlling
// terminal, so that open makes the pty its controlling terminal, as
// sshd's child gets one. Output then goes from the process through the
// pty straight to the gateway; a resize is an ioctl on the master; closing
// the master hangs the terminal up, with the kernel's SIGHUP to the
// session leader and the foreground job, exactly as under sshd.

const (
	ptyMajor  = 5 // the pty multiplexer /dev/ptmx and /dev/pts/ptmx are 5:2
	ptmxMinor = 2
	ttyGID    = 5 // the "tty" group devpts is mounted with in containers
)

// initRef is a container's init process, pinned by a pidfd: its PID can
// only name it while the pidfd does not read ready.
type initRef struct {
	pid   int
	pidfd int
}

// exited reports whether the init has exited (its PID may be reused).
func (r *initRef) exited() bool {
	fds := []unix.PollFd{{Fd: int32(r.pidfd), Events: unix.POLLIN}} //nolint:gosec // a descriptor number fits
	for {
		n, err := unix.Poll(fds, 0)
		if err == unix.EINTR {
			continue
		}
		return err != nil || n > 0
	}
}

// containerInit returns the container's running init, cached per container.
func (d *Docker) containerInit(ctx context.Context, id string) (*initRef, error) {
	if v, ok := d.inits.Load(id); ok {
		r := v.(*initRef)
		if !r.exited() {
			return r, nil
		}
		d.forgetInit(id) // stopped or restarted: look again
	}
	info, err := d.cli.ContainerInspect(ctx, id)
	if err != nil {
		return nil, fmt.Errorf("inspect container: %w", err)
	}
	if info.State == nil || !info.State.Running || info.State.Pid <= 0 {
		return nil, errors.New("container has no running init")
	}
	pid := info.State.Pid
	fd, err := unix.PidfdOpen(pid, unix.PIDFD_NONBLOCK)
	if err != nil {
		return nil, fmt.Errorf("pidfd open %d: %w", pid, err)
	}
	r := &initRef{pid: pid, pidfd: fd}
	// The PID was read before the pidfd was opened: had the init exited in
	// between, the number could name another process. Still running with
	// the same PID now means the pidfd is the init's.
	again, err := d.cli.ContainerInspect(ctx, id)
	if err != nil || again.State == nil || !again.State.Running || again.State.Pid != pid || r.exited() {
		unix.Close(fd)
		return nil, errors.New("container init changed while looking it up")
	}
	if prev, loaded := d.inits.LoadOrStore(id, r); loaded {
		unix.Close(fd)
		return prev.(*initRef), nil
	}
	return r, nil
}

// forgetInit drops the cached init of a retired container.
func (d *Docker) forgetInit(id string) {
	if v, ok := d.inits.LoadAndDelete(id); ok {
		unix.Close(v.(*initRef).pidfd)
	}
}

// openContainerPTMX opens a new pty master in the devpts instance seen at
// /dev/pts inside the root of process pid, which must still be r's init.
func openContainerPTMX(r *initRef) (*os.File, error) {
	root, err := unix.Open("/proc/"+strconv.Itoa(r.pid)+"/root", unix.O_PATH|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		return nil, fmt.Errorf("open container root: %w", err)
	}
	defer unix.Close(root)
	// Alive after the open: the PID named the init when it was opened.
	if r.exited() {
		return nil, errors.New("container init exited")
	}
	return openPTMXIn(root)
}

// openPTMXIn opens dev/pts/ptmx under the directory root as if root were
// "/", following no symlink at all, and checks that what it opened is a
// pty multiplexer on a devpts file system: a device node the user's image
// brought along (mknod in a build) is refused.
func openPTMXIn(root int) (*os.File, error) {
	fd, err := unix.Openat2(root, "dev/pts/ptmx", &unix.OpenHow{
		Flags:   unix.O_RDWR | unix.O_NOCTTY | unix.O_CLOEXEC | unix.O_NONBLOCK,
		Resolve: unix.RESOLVE_IN_ROOT | unix.RESOLVE_NO_SYMLINKS | unix.RESOLVE_NO_MAGICLINKS,
	})
	if err != nil {
		return nil, fmt.Errorf("open dev/pts/ptmx: %w", err)
	}
	var st unix.Stat_t
	var fs unix.Statfs_t
	switch {
	case unix.Fstat(fd, &st) != nil || st.Mode&unix.S_IFMT != unix.S_IFCHR ||
		unix.Major(st.Rdev) != ptyMajor || unix.Minor(st.Rdev) != ptmxMinor:
		unix.Close(fd)
		return nil, errors.New("dev/pts/ptmx is not the pty multiplexer")
	case unix.Fstatfs(fd, &fs) != nil || fs.Type != unix.DEVPTS_SUPER_MAGIC:
		unix.Close(fd)
		return nil, errors.New("dev/pts/ptmx is not on a devpts file system")
	}
	return os.NewFile(uintptr(fd), "ptmx"), nil
}

// newPty unlocks master's pty, makes its secondary side the user's, mode
// 0620 as sshd does, and returns it opened (the peer) and its number.
func newPty(master *os.File, uid int) (peer *os.File, n int, err error) {
	rc, err := master.SyscallConn()
	if err != nil {
		return nil, 0, err
	}
	var pfd int
	cerr := rc.Control(func(fd uintptr) {
		if err = unix.IoctlSetPointerInt(int(fd), unix.TIOCSPTLCK, 0); err != nil {
			err = fmt.Errorf("unlockpt: %w", err)
			return
		}
		if n, err = unix.IoctlGetInt(int(fd), unix.TIOCGPTN); err != nil {
			err = fmt.Errorf("ptsname: %w", err)
			return
		}
		// O_NOCTTY: the gateway must never get a controlling terminal.
		r, _, errno := unix.Syscall(unix.SYS_IOCTL, fd, unix.TIOCGPTPEER, unix.O_RDWR|unix.O_NOCTTY|unix.O_CLOEXEC)
		if errno != 0 {
			err = fmt.Errorf("open pty peer: %w", errno)
			return
		}
		pfd = int(r)
	})
	if err = errors.Join(cerr, err); err != nil {
		return nil, 0, err
	}
	if err := unix.Fchown(pfd, uid, ttyGID); err != nil {
		unix.Close(pfd)
		return nil, 0, fmt.Errorf("chown pty: %w", err)
	}
	if err := unix.Fchmod(pfd, 0o620); err != nil {
		unix.Close(pfd)
		return nil, 0, fmt.Errorf("chmod pty: %w", err)
	}
	return os.NewFile(uintptr(pfd), "pts/"+strconv.Itoa(n)), n, nil
}

func setWinsize(f *os.File, rows, cols uint32) error {
	rc, err := f.SyscallConn()
	if err != nil {
		return err
	}
	ws := &unix.Winsize{Row: uint16(min(rows, 0xffff)), Col: uint16(min(cols, 0xffff))}
	var ierr error
	if err := rc.Control(func(fd uintptr) { ierr = unix.IoctlSetWinsize(int(fd), unix.TIOCSWINSZ, ws) }); err != nil {
		return err
	}
	return ierr
}

// setModes applies a client's terminal modes to the pty of peer, starting
// from the terminal's own settings, as sshd does before the session starts.
func setModes(peer *os.File, m ptymodes.Modes) error {
	rc, err := peer.SyscallConn()
	if err != nil {
		return err
	}
	var ierr error
	if err := rc.Control(func(fd uintptr) {
		var t *unix.Termios
		if t, ierr = unix.IoctlGetTermios(int(fd), unix.TCGETS); ierr != nil {
			return
		}
		ptymodes.Apply(t, m)
		ierr = unix.IoctlSetTermios(int(fd), unix.TCSETS, t)
	}); err != nil {
		return err
	}
	return ierr
}

// openSessionPty makes a pty for a session of the container, sized, with
// its secondary side owned by uid. Errors mean the engine's own terminal
// should be used instead.
func (d *Docker) openSessionPty(ctx context.Context, id string, uid int, rows, cols uint32) (master, peer *os.File, n int, err error) {
	var r *initRef
	for attempt := 0; attempt < 2; attempt++ {
		if r, err = d.containerInit(ctx, id); err != nil {
			return nil, nil, 0, err
		}
		if master, err = openContainerPTMX(r); err == nil {
			break
		}
		if !r.exited() {
			return nil, nil, 0, err
		}
	}
	if err != nil {
		return nil, nil, 0, err
	}
	if peer, n, err = newPty(master, uid); err != nil {
		master.Close()
		return nil, nil, 0, err
	}
	if rows > 0 && cols > 0 {
		if err := setWinsize(master, rows, cols); err != nil {
			master.Close()
			peer.Close()
			return nil, nil, 0, fmt.Errorf("set window size: %w", err)
		}
	}
	return master, peer, n, nil
}

// execPty starts spec on a pty of the gateway's. ok is false when no such
// pty could be had, and the caller should use the engine's terminal.
func (d *Docker) execPty(ctx context.Context, id string, spec runtime.ExecSpec) (p runtime.Process, ok bool, err error) {
	uid, _, err := parseUser(spec.User)
	if err != nil {
		return nil, false, err
	}
	master, peer, n, err := d.openSessionPty(ctx, id, uid, spec.Rows, spec.Cols)
	if err != nil {
		d.ptyFallback.Do(func() { d.log.Debug("pty: using the engine's terminal", "container", id, "err", err) })
		return nil, false, nil
	}
	fail := func(err error) (runtime.Process, bool, error) {
		master.Close()
		peer.Close()
		return nil, true, err
	}
	if len(spec.Modes) > 0 {
		// As in sshd: a terminal that refuses the modes is still a terminal.
		if err := setModes(peer, spec.Modes); err != nil {
			d.log.Debug("pty modes", "container", id, "err", err)
		}
	}
	// The shell opens the terminal, which becomes its controlling one, and
	// replaces itself with the command, which keeps the exec's PID.
	cmd := append([]string{ttyShell(spec.Cmd), "-c", `exec "$@" <>"$0" >&0 2>&0`, "/dev/pts/" + strconv.Itoa(n)}, spec.Cmd...)
	execID, err := d.startDetached(ctx, id, spec, cmd)
	if err != nil {
		return fail(err)
	}
	return &ptyProcess{execRef: execRef{d: d, id: execID}, master: master, peer: peer}, true, nil
}

// engineTTYCmd is cmd for the engine's terminal: behind a stty of the
// size (rows > 0: for engines that ignore the size given at start) and of
// the client's modes, which the gateway cannot set on a terminal it does
// not hold. Without either, cmd as it is.
func engineTTYCmd(cmd []string, rows, cols uint32, modes ptymodes.Modes) []string {
	w, f := ptymodes.SttyWords(rows, cols, modes)
	if w == "" {
		return cmd
	}
	return append([]string{"/bin/sh", "-c", `w=$1; f=$2; shift 2; ` + ptymodes.SttyShell + `; exec "$@"`, "ds01-tty", w, f}, cmd...)
}

// posixShells are shells that run ttyShell's script.
var posixShells = map[string]bool{"sh": true, "bash": true, "dash": true, "zsh": true, "ksh": true, "mksh": true, "ash": true, "yash": true}

// ttyShell is the shell that opens the terminal: the session's own shell
// when it is a POSIX one, else /bin/sh. The image decides what /bin/sh is
// (one whose /bin/sh never runs must still give its users a terminal
// login), while the session's shell is the one its user logs in with.
func ttyShell(cmd []string) string {
	if len(cmd) > 0 && strings.HasPrefix(cmd[0], "/") && posixShells[path.Base(cmd[0])] {
		return cmd[0]
	}
	return "/bin/sh"
}

// ptyProcess is a terminal exec on a pty whose master the gateway holds.
type ptyProcess struct {
	execRef
	master *os.File
	// peer is the gateway's own open of the secondary side, held until the
	// process has exited: reading a master whose secondary side nobody
	// has open fails (EIO), which would end the stream before the process
	// has opened its terminal.
	peer      *os.File
	peerOnce  sync.Once
	closeOnce sync.Once
}

func (p *ptyProcess) Stdin() io.WriteCloser { return ptyStdin{p.master} }

type ptyStdin struct{ f *os.File }

func (s ptyStdin) Write(b []byte) (int, error) { return s.f.Write(b) }

// Close does nothing: a terminal has no end-of-file but the ^D its user
// types, and sshd, too, leaves a pty session's terminal alone on EOF.
func (s ptyStdin) Close() error { return nil }

func (p *ptyProcess) closePeer() { p.peerOnce.Do(func() { p.peer.Close() }) }

func (p *ptyProcess) Stream(stdout, _ io.Writer) error {
	done := make(chan struct{})
	defer close(done)
	go func() {
		if p.waitExit(done) {
			// Once the process is gone, its terminal ends when the last
			// secondary fd closes (EIO); a background child that keeps
			// it open gets drainAfterExit, as on the FIFO path.
			p.closePeer()
			p.master.SetReadDeadline(time.Now().Add(drainAfterExit))
		}
	}()
	// Hide os.File's WriteTo, which would copy in 32 KiB pieces.
	_, err := io.CopyBuffer(stdout, struct{ io.Reader }{p.master}, make([]byte, streamBuf))
	if errors.Is(err, syscall.EIO) || errors.Is(err, os.ErrDeadlineExceeded) || errors.Is(err, os.ErrClosed) {
		return nil
	}
	return err
}

func (p *ptyProcess) Resize(_ context.Context, rows, cols uint32) error {
	if err := setWinsize(p.master, rows, cols); err != nil {
		return fmt.Errorf("resize pty: %w", err)
	}
	return nil
}

// Hangup closes the master: the kernel hangs the terminal up, sending
// SIGHUP (and SIGCONT) to the session leader and SIGHUP to the foreground
// job, which is what sshd's close of the pty gives. Nothing else is
// signalled then, so a shell's HUP trap runs once. A process that never
// got the terminal (its shell never opened it) gets the engine path's
// SIGHUP to its process group instead.
func (p *ptyProcess) Hangup() error {
	onTTY := p.onTTY()
	p.Close()
	if onTTY {
		return nil
	}
	return p.execRef.Hangup()
}

// onTTY reports whether the exec's process has a controlling terminal.
func (p *ptyProcess) onTTY() bool {
	pid, err := p.hostPID()
	if err != nil {
		return false
	}
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return false
	}
	return statTTY(string(b)) != 0
}

// statTTY is the tty_nr field of a /proc/PID/stat line; the command name
// before it is in parentheses and may itself hold spaces and parentheses.
func statTTY(stat string) int {
	i := strings.LastIndexByte(stat, ')')
	if i < 0 {
		return 0
	}
	// After the name: state ppid pgrp session tty_nr ...
	f := strings.Fields(stat[i+1:])
	if len(f) < 5 {
		return 0
	}
	n, _ := strconv.Atoi(f[4])
	return n
}

func (p *ptyProcess) Close() error {
	p.closeOnce.Do(func() {
		p.closePeer()
		p.master.Close()
	})
	return nil
}
