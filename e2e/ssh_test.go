package e2e

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"golang.org/x/crypto/ssh"
)

// Client timeouts: short for calls to a running container or refused logins,
// long where a login may build the project image first.
const (
	timeoutShort = 30 * time.Second
	timeoutLong  = 2 * time.Minute
)

type sshResult struct {
	stdout, stderr string
	code           int
}

func (r sshResult) String() string {
	return fmt.Sprintf("exit %d\nstdout: %q\nstderr: %q", r.code, r.stdout, r.stderr)
}

// sshArgs are the client arguments up to and including the host; callers
// append the remote command. -F /dev/null keeps the host's ssh config out.
func (g *gw) sshArgs(key, login string, extra ...string) []string {
	args := []string{
		"-F", "/dev/null",
		"-p", strconv.Itoa(g.port),
		"-o", "IdentitiesOnly=yes",
		"-o", "StrictHostKeyChecking=no",
		"-o", "UserKnownHostsFile=/dev/null",
		"-o", "LogLevel=ERROR",
		"-o", "BatchMode=yes",
		"-o", "ConnectTimeout=10",
	}
	if key != "" {
		args = append(args, "-i", key)
	}
	args = append(args, extra...)
	return append(args, "-l", login, "127.0.0.1")
}

// ssh runs `ssh login@gw args...` as u with no stdin.
func (g *gw) ssh(t *testing.T, u *user, login string, args ...string) sshResult {
	t.Helper()
	return g.sshIn(t, u, login, nil, args...)
}

func (g *gw) sshIn(t *testing.T, u *user, login string, stdin io.Reader, args ...string) sshResult {
	t.Helper()
	return runSSH(t, timeoutLong, stdin, append(g.sshArgs(u.key, login), args...)...)
}

// runSSH runs /usr/bin/ssh with args. The generous timeout covers a first
// login that builds the project image.
func runSSH(t *testing.T, timeout time.Duration, stdin io.Reader, args ...string) sshResult {
	t.Helper()
	r, err := execTool(timeout, "", stdin, "ssh", args...)
	if err != nil {
		t.Fatal(err)
	}
	return r
}

// mustSSH runs a command that must succeed and returns its stdout.
func (g *gw) mustSSH(t *testing.T, u *user, login string, args ...string) string {
	t.Helper()
	r := g.ssh(t, u, login, args...)
	if r.code != 0 {
		t.Fatalf("ssh %s@gw %q: %s", login, strings.Join(args, " "), r)
	}
	return r.stdout
}

// bgSSH is an ssh session left running while the test does other things.
type bgSSH struct {
	cmd   *exec.Cmd
	stdin io.WriteCloser
	out   *syncBuffer // stdout
	err   *syncBuffer // stderr
	done  chan struct{}
}

// startSSH starts ssh in the background with stdin held open. The test's
// cleanup kills it if the test did not.
func (g *gw) startSSH(t *testing.T, u *user, login string, args ...string) *bgSSH {
	t.Helper()
	return g.startSSHWith(t, u, login, nil, args...)
}

// startSSHWith is startSSH with more client options (e.g. "-tt").
func (g *gw) startSSHWith(t *testing.T, u *user, login string, opts []string, args ...string) *bgSSH {
	t.Helper()
	b := &bgSSH{out: &syncBuffer{}, err: &syncBuffer{}, done: make(chan struct{})}
	b.cmd = exec.Command("ssh", append(g.sshArgs(u.key, login, opts...), args...)...)
	b.cmd.Stdout, b.cmd.Stderr = b.out, b.err
	var err error
	if b.stdin, err = b.cmd.StdinPipe(); err != nil {
		t.Fatal(err)
	}
	if err := b.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() { _ = b.cmd.Wait(); close(b.done) }()
	t.Cleanup(b.stop)
	return b
}

// waitOutput waits until stdout contains want.
func (b *bgSSH) waitOutput(t *testing.T, want string, timeout time.Duration) {
	t.Helper()
	b.waitIn(t, "stdout", b.out, want, timeout)
}

// waitErr waits until stderr (the gateway's notices) contains want.
func (b *bgSSH) waitErr(t *testing.T, want string, timeout time.Duration) {
	t.Helper()
	b.waitIn(t, "stderr", b.err, want, timeout)
}

func (b *bgSSH) waitIn(t *testing.T, name string, buf *syncBuffer, want string, timeout time.Duration) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for !strings.Contains(buf.String(), want) {
		select {
		case <-b.done:
			if strings.Contains(buf.String(), want) {
				return
			}
			t.Fatalf("background ssh exited (%v) before printing %q on %s\nstdout: %q\nstderr: %q",
				b.cmd.ProcessState, want, name, b.out.String(), b.err.String())
		default:
		}
		if time.Now().After(deadline) {
			t.Fatalf("background ssh did not print %q on %s within %s\nstdout: %q\nstderr: %q",
				want, name, timeout, b.out.String(), b.err.String())
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// stop hangs up the client (SIGTERM, like closing a terminal) and waits.
func (b *bgSSH) stop() {
	select {
	case <-b.done:
		return
	default:
	}
	_ = b.stdin.Close()
	_ = b.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-b.done:
	case <-time.After(5 * time.Second):
		_ = b.cmd.Process.Kill()
		<-b.done
	}
}

// goSSH runs cmd through the golang.org/x/crypto/ssh client. It sends any
// login name as is, where OpenSSH refuses shell metacharacters client-side
// (CVE-2023-51385 fix). Errors before the session map to exit 255 with the
// error as stderr, like OpenSSH.
func (g *gw) goSSH(t *testing.T, keyPath, login, cmd string) sshResult {
	t.Helper()
	client, err := g.goClient(t, keyPath, login)
	if err != nil {
		return sshResult{stderr: err.Error() + "\n", code: 255}
	}
	defer client.Close()
	sess, err := client.NewSession()
	if err != nil {
		return sshResult{stderr: err.Error() + "\n", code: 255}
	}
	defer sess.Close()
	var stdout, stderr bytes.Buffer
	sess.Stdout, sess.Stderr = &stdout, &stderr
	done := make(chan error, 1)
	go func() { done <- sess.Run(cmd) }()
	var r sshResult
	select {
	case err = <-done:
	case <-time.After(timeoutShort):
		client.Close()
		t.Fatalf("x/crypto ssh %s: timed out", login)
	}
	r.stdout, r.stderr = stdout.String(), stderr.String()
	var ee *ssh.ExitError
	var missing *ssh.ExitMissingError
	switch {
	case err == nil:
	case errors.As(err, &ee):
		r.code = ee.ExitStatus()
	case errors.As(err, &missing):
		r.code, r.stderr = 255, r.stderr+err.Error()+"\n"
	default:
		r.code, r.stderr = 255, r.stderr+err.Error()+"\n"
	}
	return r
}

// goClient connects with the x/crypto client as the owner of keyPath.
func (g *gw) goClient(t *testing.T, keyPath, login string) (*ssh.Client, error) {
	t.Helper()
	pem, err := os.ReadFile(keyPath)
	if err != nil {
		t.Fatal(err)
	}
	signer, err := ssh.ParsePrivateKey(pem)
	if err != nil {
		t.Fatal(err)
	}
	return ssh.Dial("tcp", g.addr(), &ssh.ClientConfig{
		User:            login,
		Auth:            []ssh.AuthMethod{ssh.PublicKeys(signer)},
		HostKeyCallback: ssh.InsecureIgnoreHostKey(),
		Timeout:         10 * time.Second,
	})
}
