package transfer

import (
	"context"
	"encoding/binary"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
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
	// New files get the usual 644/755 whatever umask the gateway runs with.
	syscall.Umask(umask)
	ctx := context.Background()
	switch mode {
	case "sftp":
		st, err := ServeSFTP(ctx, mounts, stdio{&packetWriter{out: os.Stdout}})
		if err != nil {
			fmt.Fprintf(os.Stderr, "sftp: %v\n", err)
			return 1, st
		}
		return 0, st
	default:
		st, code, err := ServeSCP(ctx, mounts, rest, os.Stdin, os.Stdout)
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

// inheritedPipe returns fd as a file if it is an open pipe, else nil.
func inheritedPipe(fd int) *os.File {
	var st syscall.Stat_t
	if err := syscall.Fstat(fd, &st); err != nil || st.Mode&syscall.S_IFMT != syscall.S_IFIFO {
		return nil
	}
	return os.NewFile(uintptr(fd), "stats")
}

// stdio is the SFTP stream of the child: closing it ends the output.
type stdio struct{ w *packetWriter }

func (stdio) Read(p []byte) (int, error)    { return os.Stdin.Read(p) }
func (s stdio) Write(p []byte) (int, error) { return s.w.Write(p) }
func (stdio) Close() error                  { return os.Stdout.Close() }

// packetWriter writes each SFTP packet with one system call. pkg/sftp
// writes a reply as its header, then its data; written apart, the gateway
// often reads the 13-byte header alone and sends it as an SSH packet of
// its own, and a download pays a round of wake-ups per 32 KiB. The header
// announces the packet's length, so a header that promises more is held
// until the data comes. pkg/sftp sends packets one at a time, under a lock.
type packetWriter struct {
	out     *os.File
	pending []byte // a header waiting for its data
	need    int    // bytes of data the pending header announces
	buf     []byte
}

func (w *packetWriter) Write(p []byte) (int, error) {
	if len(w.pending) > 0 {
		if len(p) != w.need {
			// Not the data we expected: write both as they came.
			if err := w.flush(); err != nil {
				return 0, err
			}
			return w.out.Write(p)
		}
		w.buf = append(append(w.buf[:0], w.pending...), p...)
		w.pending = w.pending[:0]
		if _, err := w.out.Write(w.buf); err != nil {
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
	return w.out.Write(p)
}

func (w *packetWriter) flush() error {
	_, err := w.out.Write(w.pending)
	w.pending = w.pending[:0]
	return err
}
