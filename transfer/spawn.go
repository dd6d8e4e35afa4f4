package transfer

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"strings"
	"syscall"

	"golang.org/x/sys/unix"
)

// Spec says what child Spawn starts.
type Spec struct {
	Self   string // the gateway binary, re-executed as the child
	Mode   string // "sftp" or "scp"
	Mounts []Mount
	UID    int
	GID    int
	Args   []string // scp's arguments (the words after "scp")
}

// Spawn runs `Self transfer Mode ...` as UID:GID with no supplementary
// groups and waits for it. stdin, stdout and stderr are the SSH channel's
// streams; the child sees EOF when stdin ends. When ctx is done the child
// is killed. It returns the child's exit code and what it transferred.
//
// Spawn returns once the child has exited and its output has been
// delivered (or ctx is done). A stdin that is not an *os.File is read by
// a goroutine that ends at its next Read after that: the caller closes
// the channel when Spawn returns, which ends it.
func Spawn(ctx context.Context, spec Spec, stdin io.Reader, stdout, stderr io.Writer) (exitCode int, stats Stats, err error) {
	args, err := childArgs(spec)
	if err != nil {
		return 0, Stats{}, err
	}
	var p pipes
	defer p.closeAll()
	childIn, err := p.reader(stdin)
	if err != nil {
		return 0, Stats{}, err
	}
	childOut, outDone, err := p.writer(stdout)
	if err != nil {
		return 0, Stats{}, err
	}
	childErr, errDone, err := p.writer(stderr)
	if err != nil {
		return 0, Stats{}, err
	}
	statsR, statsW, err := p.pipe()
	if err != nil {
		return 0, Stats{}, err
	}
	p.childEnds = append(p.childEnds, statsW)
	p.ours = append(p.ours, statsR)

	// The mount directories are opened here, as root, and handed over as
	// descriptors: the user may lack search permission on the path above
	// the workspace (a 0700 parent), which a Docker bind mount does not
	// need either.
	dirs, opened, err := openMounts(spec.Mounts)
	if err != nil {
		return 0, Stats{}, err
	}
	defer func() {
		for _, d := range opened {
			d.Close()
		}
	}()
	for i, m := range spec.Mounts {
		args = append(args, "--mount", fmt.Sprintf("%s=/proc/self/fd/%d", m.Path, firstMountFD+i))
	}
	if len(spec.Args) > 0 || spec.Mode == "scp" {
		args = append(append(args, "--"), spec.Args...)
	}
	cmd := exec.Command(spec.Self, args...) //nolint:gosec // the gateway's own binary, with arguments it built
	cmd.Stdin, cmd.Stdout, cmd.Stderr = childIn, childOut, childErr
	cmd.ExtraFiles = append([]*os.File{statsW}, dirs...) // fd 3, then the mounts
	cmd.Dir = "/"
	cmd.Env = []string{"PATH=/usr/bin:/bin", "LANG=C.UTF-8"}
	if v, ok := os.LookupEnv("GORACE"); ok {
		cmd.Env = append(cmd.Env, "GORACE="+v) // race-built test binaries
	}
	cmd.SysProcAttr = &syscall.SysProcAttr{
		// childArgs refused negative ids.
		Credential: &syscall.Credential{Uid: uint32(spec.UID), Gid: uint32(spec.GID), Groups: []uint32{}}, //nolint:gosec // see above
	}
	if err := cmd.Start(); err != nil {
		return 0, Stats{}, fmt.Errorf("start transfer child: %w", err)
	}
	// The child holds its ends now; ours must go, or the readers never
	// see EOF.
	p.closeChildEnds()
	p.start()
	// Kill fails only if the child has gone already.
	stop := context.AfterFunc(ctx, func() { _ = cmd.Process.Kill() })
	waitErr := cmd.Wait()
	stop()

	// Let the output reach the client before the caller sends the exit
	// status, unless the session is already over.
	for _, done := range []<-chan struct{}{outDone, errDone} {
		select {
		case <-done:
		case <-ctx.Done():
		}
	}
	stats = readStats(statsR)

	if ctx.Err() != nil {
		return -1, stats, context.Cause(ctx)
	}
	var ee *exec.ExitError
	if errors.As(waitErr, &ee) && ee.Exited() {
		return ee.ExitCode(), stats, nil
	}
	if waitErr != nil {
		return -1, stats, fmt.Errorf("transfer child: %w", waitErr)
	}
	return 0, stats, nil
}

func childArgs(spec Spec) ([]string, error) {
	if spec.Mode != "sftp" && spec.Mode != "scp" {
		return nil, fmt.Errorf("transfer mode %q: want sftp or scp", spec.Mode)
	}
	if spec.Self == "" {
		return nil, errors.New("transfer: no gateway binary to run")
	}
	if spec.UID < 0 || spec.GID < 0 {
		return nil, fmt.Errorf("transfer: bad uid %d gid %d", spec.UID, spec.GID)
	}
	if len(spec.Mounts) == 0 {
		return nil, errors.New("transfer: no mounts")
	}
	for _, m := range spec.Mounts {
		if strings.Contains(m.Path, "=") {
			return nil, fmt.Errorf("transfer: mount path %q contains '='", m.Path)
		}
	}
	return []string{"transfer", spec.Mode}, nil
}

// copyBuf is the read size from the child's output and from the caller's
// input, and pipeSize the
// kernel buffer of its pipes: fewer, fuller SSH packets, fewer wake-ups.
const (
	copyBuf  = 256 << 10
	pipeSize = 1 << 20
)

// firstMountFD is the child's descriptor of the first mount directory.
const firstMountFD = statsFD + 1

// openMounts returns the mount directories to hand to the child, and the
// ones it opened itself, to close after.
func openMounts(mounts []Mount) (dirs, opened []*os.File, err error) {
	for _, m := range mounts {
		if m.File != nil {
			dirs = append(dirs, m.File)
			continue
		}
		d, err := os.OpenFile(m.Dir, os.O_RDONLY|syscall.O_DIRECTORY|syscall.O_CLOEXEC, 0)
		if err != nil {
			for _, d := range opened {
				d.Close()
			}
			return nil, nil, fmt.Errorf("transfer: open %s: %w", m.Path, err)
		}
		dirs = append(dirs, d)
		opened = append(opened, d)
	}
	return dirs, opened, nil
}

func readStats(r *os.File) Stats {
	var st Stats
	b, _ := io.ReadAll(io.LimitReader(r, 4096))
	_ = json.Unmarshal(b, &st) // a child killed early has written nothing
	return st
}

// pipes connects the child's stdio to the caller's streams with our own
// copy loops, so that Spawn decides when to stop waiting for them; an
// *os.File is handed to the child as it is.
type pipes struct {
	childEnds []*os.File // closed in the parent once the child has started
	ours      []*os.File // closed when Spawn returns
	feeds     []*os.File // stdin write ends: the copier closes them, if started
	copiers   []func()
	started   bool
}

func (p *pipes) pipe() (r, w *os.File, err error) {
	r, w, err = os.Pipe()
	if err != nil {
		return nil, nil, fmt.Errorf("transfer pipe: %w", err)
	}
	if sc, err := w.SyscallConn(); err == nil {
		// A bigger buffer is an optimisation: the default one works too.
		sc.Control(func(fd uintptr) { _, _ = unix.FcntlInt(fd, unix.F_SETPIPE_SZ, pipeSize) })
	}
	return r, w, nil
}

func (p *pipes) reader(src io.Reader) (*os.File, error) {
	if f, ok := src.(*os.File); ok {
		return f, nil
	}
	r, w, err := p.pipe()
	if err != nil {
		return nil, err
	}
	p.childEnds = append(p.childEnds, r)
	p.feeds = append(p.feeds, w)
	p.copiers = append(p.copiers, func() {
		// Closing w is the child's stdin EOF. Once the child is gone the
		// write fails and the loop ends at the next Read. Big reads: what
		// the channel holds goes in one write, not 32 KiB ones (os.File's
		// ReadFrom would copy with 32 KiB; hide it).
		io.CopyBuffer(struct{ io.Writer }{w}, src, make([]byte, copyBuf))
		w.Close()
	})
	return r, nil
}

func (p *pipes) writer(dst io.Writer) (*os.File, <-chan struct{}, error) {
	done := make(chan struct{})
	if f, ok := dst.(*os.File); ok {
		close(done)
		return f, done, nil
	}
	r, w, err := p.pipe()
	if err != nil {
		return nil, nil, err
	}
	p.childEnds = append(p.childEnds, w)
	p.ours = append(p.ours, r)
	p.copiers = append(p.copiers, func() {
		defer close(done)
		// Big reads: the child writes an SFTP reply as a 13-byte header
		// and 32 KiB of data; read apart, each becomes an SSH packet of its
		// own. io.Copy would use os.File's 32 KiB WriteTo; hide it.
		io.CopyBuffer(dst, struct{ io.Reader }{r}, make([]byte, copyBuf))
		// If the client went away, the child must not block on a full
		// pipe: closing our end makes its next write fail.
		r.Close()
	})
	return w, done, nil
}

func (p *pipes) start() {
	p.started = true
	for _, c := range p.copiers {
		go c()
	}
}

func (p *pipes) closeChildEnds() {
	for _, f := range p.childEnds {
		f.Close()
	}
	p.childEnds = nil
}

func (p *pipes) closeAll() {
	p.closeChildEnds()
	for _, f := range p.ours {
		f.Close()
	}
	if !p.started {
		for _, f := range p.feeds {
			f.Close()
		}
	}
}
