package transfer

import (
	"context"
	"io"
	"os"
	"path/filepath"
	"testing"

	"github.com/pkg/sftp"
)

// TestMain doubles as the transfer child: Spawn re-executes this test
// binary as `<binary> transfer ...`, as the gateway re-executes itself.
// Tests that start the child as the test's own user, which may be root,
// set rootChildEnv; Spawn passes no such variable, so children it starts
// keep the gateway's check.
func TestMain(m *testing.M) {
	if len(os.Args) > 1 && os.Args[1] == "transfer" {
		if os.Getenv(rootChildEnv) == "1" {
			os.Exit(childMain(os.Args[2:], func() error { return nil }))
		}
		os.Exit(ChildMain(os.Args[2:]))
	}
	os.Exit(m.Run())
}

// rootChildEnv lets a child started by a test run as the test's user.
const rootChildEnv = "DS01_TEST_CHILD_ANY_USER"

// fixture is a host layout: base/ws is the workspace; base/outside holds
// what no transfer may touch. It is a workspace with things outside it to attack. sys stands in
// for the host's / in escape tests: they run as root, so a regression that
// let a path escape must not be able to touch the real /etc (once it did:
// a truncate through a planted link emptied /etc/passwd). The unprivileged
// child and the e2e suite aim at the real / and /etc.
type fixture struct {
	base, ws, outside, sys string
}

func newFixture(t *testing.T) fixture {
	t.Helper()
	base := t.TempDir()
	f := fixture{base: base, ws: filepath.Join(base, "ws"), outside: filepath.Join(base, "outside"), sys: filepath.Join(base, "sys")}
	for _, d := range []string{f.ws, f.outside, filepath.Join(f.outside, "dir"), f.sys, filepath.Join(f.sys, "etc"), filepath.Join(f.sys, "tmp")} {
		if err := os.Mkdir(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	for name, body := range map[string]string{
		filepath.Join(f.outside, "secret.txt"):  "secret",
		filepath.Join(f.sys, "etc", "passwd"):   "root:x:0:0:secret:/root:/bin/sh\n",
		filepath.Join(f.sys, "etc", "hostname"): "secret-host\n",
	} {
		if err := os.WriteFile(name, []byte(body), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	return f
}

func (f fixture) mounts() []Mount { return []Mount{{Path: "/workspace", Dir: f.ws}} }

// pipeRWC joins the two halves of an in-memory stream.
type pipeRWC struct {
	io.Reader
	io.WriteCloser
}

type sftpSession struct {
	c    *sftp.Client
	done chan struct{}
	st   Stats
	err  error
}

// end closes the client and returns what the server reported.
func (s *sftpSession) end(t *testing.T) (Stats, error) {
	t.Helper()
	s.c.Close()
	<-s.done
	return s.st, s.err
}

// startSFTP serves SFTP in-process on f's workspace and connects
// pkg/sftp's client to it over pipes.
func startSFTP(t *testing.T, mounts []Mount) *sftpSession {
	t.Helper()
	cr, sw := io.Pipe()
	sr, cw := io.Pipe()
	s := &sftpSession{done: make(chan struct{})}
	go func() {
		defer close(s.done)
		s.st, s.err = ServeSFTP(context.Background(), mounts, pipeRWC{sr, sw})
		sw.Close()
		sr.Close()
	}()
	c, err := sftp.NewClientPipe(cr, cw)
	if err != nil {
		t.Fatal(err)
	}
	s.c = c
	t.Cleanup(func() {
		c.Close()
		<-s.done
	})
	return s
}
