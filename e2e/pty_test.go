package e2e

import (
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"golang.org/x/crypto/ssh"
	"golang.org/x/sys/unix"
)

// A terminal session runs on a pty the gateway holds the master of, in the
// container's devpts, not on the engine's attach relay, and is exact: its
// terminal, size, TERM, resize, hangup and exit status are what sshd gives.
func TestPtyDirect(t *testing.T) {
	g := startGateway(t, gwOpts{RetireAfter: "30s"})
	u := g.addUser(t, "tia", 27900, 27900)
	const proj = "ptys"
	g.mustSSH(t, u, proj, "true") // build outside the subtests

	client, err := g.goClient(t, u.key, proj)
	if err != nil {
		t.Fatal(err)
	}
	defer client.Close()

	t.Run("terminal", func(t *testing.T) {
		s, out := startPtySession(t, client, `tty; stty size; echo "T=$TERM"; exit 7`)
		if st := ptyExit(t, s); st != "status 7" {
			t.Errorf("exit 7: got %s", st)
		}
		for _, want := range []string{"/dev/pts/", "33 111\r\n", "T=xterm-ds01\r\n"} {
			if !strings.Contains(out.String(), want) {
				t.Errorf("want %q in %q", want, out.String())
			}
		}
	})

	t.Run("resize_on_gateway_pty", func(t *testing.T) {
		s, out := startPtySession(t, client, `trap 'stty size' WINCH; echo ready; while :; do sleep 0.05; done`)
		waitPty(t, out, "ready")
		// The engine's relay would leave no pty master in the gateway.
		if n := g.ptyMasters(t); n < 1 {
			t.Errorf("the gateway holds %d pty masters during a terminal session, want the session's", n)
		}
		if err := s.WindowChange(20, 70); err != nil {
			t.Fatal(err)
		}
		waitPty(t, out, "20 70")
		if err := s.Signal(ssh.SIGTERM); err != nil {
			t.Fatal(err)
		}
		if st := ptyExit(t, s); st != "signal TERM" {
			t.Errorf("after SIGTERM: %s", st)
		}
	})

	t.Run("signal", func(t *testing.T) {
		s, _ := startPtySession(t, client, `kill -9 $$`)
		if st := ptyExit(t, s); st != "signal KILL" {
			t.Errorf("kill -9 $$: %s", st)
		}
	})

	t.Run("bulk", func(t *testing.T) {
		s, out := startPtySession(t, client, `head -c 10485760 /dev/zero`)
		if st := ptyExit(t, s); st != "status 0" {
			t.Errorf("exit: %s", st)
		}
		if n := out.n.Load(); n != 10<<20 {
			t.Errorf("got %d bytes, want %d", n, 10<<20)
		}
	})

	t.Run("hangup_on_disconnect", func(t *testing.T) {
		mark := filepath.Join(g.workspace(u, proj), "hup.job")
		os.Remove(mark)
		c, err := g.goClient(t, u.key, proj)
		if err != nil {
			t.Fatal(err)
		}
		_, out := startPtySession(t, c, `sh -c 'trap "echo hup >/workspace/hup.job; exit 0" HUP; echo ready; while :; do sleep 0.05; done' & wait`)
		waitPty(t, out, "ready") // the job's trap is set
		c.Close()                // the client goes away: the job on the terminal is hung up
		for end := time.Now().Add(10 * time.Second); ; time.Sleep(50 * time.Millisecond) {
			if b, _ := os.ReadFile(mark); string(b) == "hup\n" {
				break
			}
			if time.Now().After(end) {
				t.Fatal("the job started in the session got no SIGHUP when its client disconnected")
			}
		}
	})
}

// ptyOut counts and keeps (the first 64 KiB of) a session's output.
type ptyOut struct {
	buf syncBuffer
	n   atomic.Int64
}

func (o *ptyOut) Write(b []byte) (int, error) {
	if o.n.Add(int64(len(b))) <= 1<<16 {
		o.buf.Write(b)
	}
	return len(b), nil
}

func (o *ptyOut) String() string { return o.buf.String() }

func startPtySession(t *testing.T, c *ssh.Client, cmd string) (*ssh.Session, *ptyOut) {
	t.Helper()
	s, err := c.NewSession()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	if err := s.RequestPty("xterm-ds01", 33, 111, ssh.TerminalModes{}); err != nil {
		t.Fatal(err)
	}
	out := &ptyOut{}
	s.Stdout, s.Stderr = out, io.Discard
	if err := s.Start(cmd); err != nil {
		t.Fatal(err)
	}
	return s, out
}

// ptyExit is "status N" or "signal NAME".
func ptyExit(t *testing.T, s *ssh.Session) string {
	t.Helper()
	done := make(chan error, 1)
	go func() { done <- s.Wait() }()
	var err error
	select {
	case err = <-done:
	case <-time.After(30 * time.Second):
		t.Fatal("session still running after 30 s")
	}
	var ee *ssh.ExitError
	switch {
	case err == nil:
		return "status 0"
	case errors.As(err, &ee) && ee.Signal() != "":
		return "signal " + ee.Signal()
	case errors.As(err, &ee):
		return fmt.Sprintf("status %d", ee.ExitStatus())
	}
	t.Fatalf("wait: %v", err)
	return ""
}

func waitPty(t *testing.T, out *ptyOut, want string) {
	t.Helper()
	for end := time.Now().Add(20 * time.Second); !strings.Contains(out.String(), want); time.Sleep(20 * time.Millisecond) {
		if time.Now().After(end) {
			t.Fatalf("no %q in %q", want, out.String())
		}
	}
}

// ptyMasters counts the gateway's open pty masters (character device 5:2).
func (g *gw) ptyMasters(t *testing.T) int {
	t.Helper()
	g.mu.Lock()
	pid := g.cmd.Process.Pid
	g.mu.Unlock()
	dir := fmt.Sprintf("/proc/%d/fd", pid)
	ents, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	n := 0
	for _, e := range ents {
		var st unix.Stat_t
		if unix.Stat(filepath.Join(dir, e.Name()), &st) == nil && st.Mode&unix.S_IFMT == unix.S_IFCHR &&
			unix.Major(st.Rdev) == 5 && unix.Minor(st.Rdev) == 2 {
			n++
		}
	}
	return n
}
