package transfer

import (
	"bufio"
	"context"
	"encoding/binary"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"runtime"
	"slices"
	"strings"
	"syscall"

	"golang.org/x/sys/unix"
)

// statsFD is where the parent reads the Stats line (ExtraFiles[0]).
const statsFD = 3

// ChildMain is the body of `<gateway> transfer <sftp|scp> --mount
// /workspace=/host/dir [--mount ...] [-- scp args...]`, run as the user
// (Spawn set the credentials). It serves on stdin/stdout, writes the
// Stats as one JSON line to fd 3 when the parent passed a pipe there, and
// returns the exit code.
func ChildMain(args []string) int {
	return childMain(args, notRoot)
}

// childMain is ChildMain with its root check as a parameter, for the tests
// that run the child as the (root) test user.
func childMain(args []string, check func() error) int {
	// Take fd 3 before anything opens a file: if the parent passed none,
	// the runtime may reuse the number, and that is not ours to write.
	stats := inheritedPipe(statsFD)
	code, st := 1, Stats{}
	if err := check(); err != nil {
		fmt.Fprintf(os.Stderr, "transfer: %v\n", err)
	} else {
		code, st = childRun(args)
	}
	if stats != nil {
		// The parent reads what arrives; a broken pipe means it stopped
		// caring.
		_ = json.NewEncoder(stats).Encode(st)
		stats.Close()
	}
	return code
}

// notRoot refuses to serve with any of root's ids: the child's confinement
// is the kernel checking the user's own rights, and a root child (a user
// registered with uid or gid 0, a bug in Spawn) would be held back by
// os.Root alone. Saved ids and supplementary groups count too, since a
// process can return to them.
func notRoot() error {
	ruid, euid, suid := unix.Getresuid()
	rgid, egid, sgid := unix.Getresgid()
	if ruid == 0 || euid == 0 || suid == 0 {
		return fmt.Errorf("refusing to serve as root (uid %d/%d/%d)", ruid, euid, suid)
	}
	if rgid == 0 || egid == 0 || sgid == 0 {
		return fmt.Errorf("refusing to serve with root's group (gid %d/%d/%d)", rgid, egid, sgid)
	}
	groups, err := unix.Getgroups()
	if err != nil {
		return fmt.Errorf("supplementary groups: %w", err)
	}
	if slices.Contains(groups, 0) {
		return errors.New("refusing to serve with root's group among the supplementary groups")
	}
	return nil
}

func childRun(args []string) (int, Stats) {
	mode, mounts, rest, err := parseChildArgs(args)
	if err != nil {
		fmt.Fprintf(os.Stderr, "transfer: %v\n", err)
		return 2, Stats{}
	}
	// One P: the child's work is a relay of small steps between a few
	// goroutines (pkg/sftp's reader, dispatcher, workers and sender), and
	// with two Ps every step handed over woke another thread. A get of
	// 10,000 small files went from ~137,000 futex calls to ~7,000 and
	// its CPU from 4.7 to 2.7 s; a 1 GiB get or put used no more CPU. The
	// file reads and writes are system calls that release the P.
	runtime.GOMAXPROCS(1)
	// New files get the usual 644/755 whatever umask the gateway runs with.
	syscall.Umask(umask)
	ctx := context.Background()
	in, out := polled(0, "stdin"), polled(1, "stdout")
	switch mode {
	case "sftp":
		var r io.Reader = in
		pw := &packetWriter{out: out, raw: newRawPipe(out)}
		if rp := newRawPipe(in); rp != nil {
			r = rp // rawio.go
		}
		st, err := ServeSFTP(ctx, mounts, stdio{r: bufio.NewReaderSize(r, stdinBuf), w: pw})
		if err != nil {
			fmt.Fprintf(os.Stderr, "sftp: %v\n", err)
			return 1, st
		}
		return 0, st
	default:
		st, code, err := ServeSCP(ctx, mounts, rest, in, out)
		if err != nil {
			fmt.Fprintf(os.Stderr, "scp: %v\n", err)
		}
		return code, st
	}
}

func parseChildArgs(args []string) (mode string, mounts []Mount, rest []string, err error) {
	if len(args) == 0 || (args[0] != "sftp" && args[0] != "scp") {
		return "", nil, nil, fmt.Errorf("usage: transfer sftp|scp --mount PATH=DIR... [-- scp args]")
	}
	fs := flag.NewFlagSet("transfer "+args[0], flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	fs.Func("mount", "visible `PATH=DIR`", func(v string) error {
		p, d, ok := strings.Cut(v, "=")
		if !ok || p == "" || d == "" {
			return fmt.Errorf("bad --mount %q", v)
		}
		mounts = append(mounts, Mount{Path: p, Dir: d})
		return nil
	})
	if err := fs.Parse(args[1:]); err != nil {
		return "", nil, nil, err
	}
	if len(mounts) == 0 {
		return "", nil, nil, fmt.Errorf("no --mount")
	}
	rest = fs.Args()
	if args[0] == "sftp" && len(rest) > 0 {
		return "", nil, nil, fmt.Errorf("unexpected arguments %q", rest)
	}
	return args[0], mounts, rest, nil
}

// polled returns fd as a file the Go runtime waits on with its poller.
// The pipes come blocking (os/exec hands them over so), and a goroutine
// blocked in read(2) holds a thread: every request then woke the reader's
// thread and handed work across threads, and the child spent more time in
// futex and the scheduler's sleeps than in its own work (strace -c of a
// get of 10,000 small files: ~14 futex and ~15 nanosleep calls a file).
// Non-blocking, a waiting goroutine parks and the next runs on the same
// thread.
func polled(fd int, name string) *os.File {
	// Only a pipe: the gateway's are the child's alone, while a terminal
	// (a child run by hand) is shared, and its other users would find it
	// non-blocking too. If it cannot be made non-blocking, it works as it
	// came.
	var st syscall.Stat_t
	if err := syscall.Fstat(fd, &st); err == nil && st.Mode&syscall.S_IFMT == syscall.S_IFIFO {
		_ = syscall.SetNonblock(fd, true)
	}
	return os.NewFile(uintptr(fd), name)
}

// inheritedPipe returns fd as a file if it is an open pipe, else nil.
func inheritedPipe(fd int) *os.File {
	var st syscall.Stat_t
	if err := syscall.Fstat(fd, &st); err != nil || st.Mode&syscall.S_IFMT != syscall.S_IFIFO {
		return nil
	}
	return os.NewFile(uintptr(fd), "stats")
}

// stdinBuf is the child's read buffer on its stdin. Unbuffered, every
// SFTP packet cost two reads at least (the 5 bytes the mode tap looks at,
// then the rest), and a tree of small files is mostly small packets; a
// buffer takes many at once. A body at least this big is read around it,
// straight into pkg/sftp's page.
const stdinBuf = 64 << 10

// stdio is the SFTP stream of the child: closing it ends the output.
type stdio struct {
	r *bufio.Reader
	w *packetWriter
}

func (s stdio) Read(p []byte) (int, error)  { return s.r.Read(p) }
func (s stdio) Write(p []byte) (int, error) { return s.w.Write(p) }
func (s stdio) Close() error                { return s.w.out.Close() }

// packetWriter writes each SFTP packet with one system call. pkg/sftp
// writes a reply as its header, then its data; written apart, the gateway
// often reads the 13-byte header alone and sends it as an SSH packet of
// its own, and a download pays a round of wake-ups per 32 KiB. The header
// announces the packet's length, so a header that promises more is held
// until the data comes. pkg/sftp sends packets one at a time, under a lock.
type packetWriter struct {
	out     *os.File
	raw     *rawPipe // out through raw system calls, if non-blocking (rawio.go)
	pending []byte   // a header waiting for its data
	need    int      // bytes of data the pending header announces
	iov     [][]byte
}

// writeTwo writes a and b with one writev(2), or as few as the pipe takes:
// copying a read's data behind its header cost a copy of every byte a
// download sends.
func (w *packetWriter) writeTwo(a, b []byte) error {
	rc, err := w.out.SyscallConn()
	if err != nil {
		return err
	}
	w.iov = append(w.iov[:0], a, b)
	iov := w.iov
	var werr error
	err = rc.Write(func(fd uintptr) bool {
		for len(iov) > 0 {
			n, err := unix.Writev(int(fd), iov)
			switch {
			case errors.Is(err, unix.EAGAIN):
				return false // the poller waits for room
			case errors.Is(err, unix.EINTR):
				continue
			case err != nil:
				werr = &os.PathError{Op: "writev", Path: w.out.Name(), Err: err}
				return true
			}
			for n > 0 && len(iov) > 0 {
				if n < len(iov[0]) {
					iov[0] = iov[0][n:]
					break
				}
				n -= len(iov[0])
				iov = iov[1:]
			}
			for len(iov) > 0 && len(iov[0]) == 0 {
				iov = iov[1:]
			}
		}
		return true
	})
	clear(w.iov) // keep no packet's bytes alive
	if err != nil {
		return err
	}
	return werr
}

func (w *packetWriter) Write(p []byte) (int, error) {
	if len(w.pending) > 0 {
		if len(p) != w.need {
			// Not the data we expected: write both as they came.
			if err := w.flush(); err != nil {
				return 0, err
			}
			return w.write(p)
		}
		err := w.writeTwo(w.pending, p)
		w.pending = w.pending[:0]
		if err != nil {
			return 0, err
		}
		return len(p), nil
	}
	if len(p) >= 4 && len(p) < 64 {
		total := 4 + int(binary.BigEndian.Uint32(p[:4]))
		if total > len(p) && total-len(p) <= 1<<20 {
			w.pending = append(w.pending[:0], p...)
			w.need = total - len(p)
			return len(p), nil
		}
	}
	return w.write(p)
}

func (w *packetWriter) write(p []byte) (int, error) {
	if w.raw != nil {
		return w.raw.Write(p)
	}
	return w.out.Write(p)
}

func (w *packetWriter) flush() error {
	_, err := w.write(w.pending)
	w.pending = w.pending[:0]
	return err
}
