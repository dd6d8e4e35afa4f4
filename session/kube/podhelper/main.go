package podhelper

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/signal"
	"path/filepath"
	"strconv"
	"sync"
	"syscall"
	"time"
)

// Usage is the subcommand's synopsis.
const Usage = `usage: ds01-gateway pod-helper COMMAND (internal: run inside a project pod)
  idle               wait for SIGTERM (the sidecar's main process)
  listen NET ADDR    listen inside the pod; multiplex connections over stdin/stdout
  dial NET ADDR      connect inside the pod; print "+", then relay stdin/stdout
  procs              print the number of the user's processes
  term GRACE         SIGTERM them, wait up to GRACE; print how many are left
`

// Main runs one pod-helper command and returns the exit code.
func Main(args []string) int {
	err := run(args, os.Stdin, os.Stdout)
	if err == nil {
		return 0
	}
	fmt.Fprintf(os.Stderr, "pod-helper: %v\n", err)
	if errors.Is(err, errUsage) {
		fmt.Fprint(os.Stderr, Usage)
		return 2
	}
	return 1
}

var errUsage = errors.New("bad usage")

func run(args []string, in io.Reader, out io.Writer) error {
	if len(args) == 0 {
		return errUsage
	}
	cmd, args := args[0], args[1:]
	switch {
	case cmd == "idle" && len(args) == 0:
		c := make(chan os.Signal, 1)
		signal.Notify(c, syscall.SIGTERM, syscall.SIGINT)
		<-c
		return nil
	case cmd == "listen" && len(args) == 2:
		return listen(args[0], args[1], in, out)
	case cmd == "dial" && len(args) == 2:
		return dial(args[0], args[1], in, out)
	case cmd == "procs" && len(args) == 0:
		_, user, err := userProcs("/proc", os.Getpid())
		if err != nil {
			return err
		}
		_, err = fmt.Fprintln(out, len(user))
		return err
	case cmd == "term" && len(args) == 1:
		grace, err := time.ParseDuration(args[0])
		if err != nil || grace < 0 {
			return fmt.Errorf("%w: grace %q", errUsage, args[0])
		}
		left, err := terminate(context.Background(), "/proc", os.Getpid(), grace, syscall.Kill)
		if err != nil {
			return err
		}
		_, err = fmt.Fprintln(out, left)
		return err
	}
	return errUsage
}

// listen serves one listening socket until stdin ends, then closes it (a
// unix socket's file goes with it). A unix socket is made 0600: the
// helper runs as the user, so it is theirs alone.
func listen(network, addr string, in io.Reader, out io.Writer) error {
	m := NewMux(in, out)
	switch network {
	case "tcp", "tcp4", "tcp6", "unix":
	default:
		_ = m.Fail("unsupported network " + network) // best effort: the returned error is the one that counts
		return fmt.Errorf("unsupported network %q", network)
	}
	if network == "unix" {
		// The socket must not be reachable by anyone before it is the
		// user's alone; the umask covers the moment before the chmod.
		syscall.Umask(0o177)
	}
	ln, err := net.Listen(network, addr)
	if err != nil {
		_ = m.Fail(err.Error()) // best effort: the returned error is the one that counts
		return err
	}
	defer ln.Close()
	if network == "unix" {
		if err := os.Chmod(addr, 0o600); err != nil {
			_ = m.Fail(err.Error()) // best effort: the returned error is the one that counts
			return err
		}
	}
	if err := m.Ready(ln.Addr().String()); err != nil {
		return err
	}
	go func() {
		<-m.Done()
		ln.Close()
	}()
	for {
		c, err := ln.Accept()
		if err != nil {
			select {
			case <-m.Done():
				return nil // stdin ended: the gateway closed the listener
			default:
			}
			var ne net.Error
			if errors.As(err, &ne) && ne.Timeout() {
				continue
			}
			_ = m.Fail(err.Error()) // best effort: the returned error is the one that counts
			return err
		}
		s, err := m.Open(c.RemoteAddr().String())
		if errors.Is(err, errTooMany) {
			c.Close() // refused, as a full backlog would be
			continue
		}
		if err != nil {
			c.Close()
			return nil // the gateway went
		}
		go relay(s, c)
	}
}

// dial connects inside the pod and relays the connection over stdin and
// stdout. It prints "+" once connected, so the gateway tells a refused
// dial (an error on stderr, exit 1) from a connection with no data yet.
// A unix path is resolved in the project container's filesystem (through
// /proc/<keeper>/root): the helper container has none of the user's
// files. The helper runs as the user, so the path grants nothing the user
// does not have.
func dial(network, addr string, in io.Reader, out io.Writer) error {
	var c net.Conn
	var err error
	switch network {
	case "tcp", "tcp4", "tcp6":
		c, err = net.DialTimeout(network, addr, 10*time.Second)
	case "unix":
		c, err = dialUnix(addr)
	default:
		return fmt.Errorf("unsupported network %q", network)
	}
	if err != nil {
		return err
	}
	defer c.Close()
	if _, err := io.WriteString(out, "+"); err != nil {
		return err
	}
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		io.Copy(c, in)
		closeWrite(c)
	}()
	io.Copy(out, c)
	wg.Wait()
	return nil
}

func dialUnix(path string) (net.Conn, error) {
	if !filepath.IsAbs(path) {
		return nil, fmt.Errorf("socket %q: want an absolute path", path)
	}
	keeper, _, err := userProcs("/proc", os.Getpid())
	if err != nil {
		return nil, err
	}
	if keeper == 0 {
		return nil, errors.New("the project container has no process")
	}
	// Relative to the directory, so the path's length is the user's own
	// and not cut by the socket address's 108 bytes.
	dir := filepath.Join("/proc", strconv.Itoa(keeper), "root", filepath.Dir(path))
	if err := os.Chdir(dir); err != nil {
		return nil, fmt.Errorf("socket %q: %w", path, err)
	}
	return net.DialTimeout("unix", filepath.Base(path), 10*time.Second)
}

// relay copies both ways, passing half-closes on, until both are done.
func relay(a, b net.Conn) {
	var wg sync.WaitGroup
	wg.Add(2)
	go func() {
		defer wg.Done()
		io.Copy(a, b)
		closeWrite(a)
	}()
	go func() {
		defer wg.Done()
		io.Copy(b, a)
		closeWrite(b)
	}()
	wg.Wait()
	a.Close()
	b.Close()
}

func closeWrite(c net.Conn) {
	if cw, ok := c.(interface{ CloseWrite() error }); ok {
		_ = cw.CloseWrite() // the peer may be gone; the copy ends either way
	}
}
