package gateway

import (
	"errors"
	"io"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	gossh "golang.org/x/crypto/ssh"

	"github.com/ds01/ds01-gateway/session"
)

// wrongSigner offers one key but signs with another: to the server, an
// offered key whose signature fails.
type wrongSigner struct {
	pub  gossh.PublicKey
	sign gossh.Signer
}

func (w wrongSigner) PublicKey() gossh.PublicKey { return w.pub }
func (w wrongSigner) Sign(r io.Reader, data []byte) (*gossh.Signature, error) {
	return w.sign.Sign(r, data)
}

// The user is the owner of the key that signed, not of a key only offered.
// (x/crypto's client signs with the first key the server accepts; e2e's
// TestAuthUsesKeyThatSigned has OpenSSH offer alice's key and sign with
// bob's.)
func TestAuthByKeyThatSigned(t *testing.T) {
	g := startGateway(t, Options{}, nil)
	alice := g.addUser("alice", 1001)
	bob := g.addUser("bob", 1002)
	stranger := newKey(t)

	c := g.mustDial("thesis", stranger, bob)
	if r := run(t, c, "echo hi", nil); r.stdout != "hi\n" || r.code != 0 {
		t.Fatalf("exec: %+v %v", r, r.err)
	}
	calls := g.sessions.calls()
	if len(calls) != 1 || calls[0].user != "bob" {
		t.Fatalf("attached as %+v, want bob", calls)
	}

	if _, err := g.dial("thesis", stranger); err == nil {
		t.Error("an unknown key got in")
	}
	if _, err := g.dial("thesis", wrongSigner{alice.PublicKey(), bob}); err == nil {
		t.Error("a key that was offered but did not sign got in")
	}
}

func TestRouting(t *testing.T) {
	g := startGateway(t, Options{}, nil)
	k := g.addUser("alice", 1001)
	for _, tc := range []struct {
		login string
		want  session.Want
	}{
		{"thesis", session.Default},
		{"thesis+gpus=2", session.Want{GPUs: 2}},
		{"thesis+cpu", session.Want{GPUs: 0}},
	} {
		c := g.mustDial(tc.login, k)
		if r := run(t, c, "exit 0", nil); r.code != 0 || r.err != nil {
			t.Fatalf("%s: %+v", tc.login, r)
		}
		calls := g.sessions.calls()
		if last := calls[len(calls)-1]; last.project != "thesis" || last.want != tc.want {
			t.Errorf("%s attached %+v, want thesis with %+v", tc.login, last, tc.want)
		}
	}

	before := len(g.sessions.calls())
	for login, want := range map[string]string{
		"Bad!":                                 "project name",
		"thesis+gpus=x":                        "+gpus=N",
		"thesis+" + strings.Repeat("x", 30000): "longer than 128",
	} {
		c := g.mustDial(login, k)
		r := run(t, c, "echo hi", nil)
		if r.code != 1 || !strings.HasPrefix(r.stderr, "ds01: ") || !strings.Contains(r.stderr, want) || r.stdout != "" {
			t.Errorf("login %.20q: %+v, want exit 1 and %q on stderr", login, r, want)
		}
		if len(r.stderr) > 300 {
			t.Errorf("login %.20q: a %d-byte error", login, len(r.stderr))
		}
	}
	if n := len(g.sessions.calls()); n != before {
		t.Errorf("refused logins attached %d times", n-before)
	}
	if strings.Contains(g.logs.String(), strings.Repeat("x", 200)) {
		t.Error("a 30 KB login name went into the log")
	}

	// The command login runs built-in commands, never a container.
	c := g.mustDial("ds01", k)
	if r := run(t, c, "project list", nil); r.code != 0 || !strings.Contains(r.stdout, "thesis") {
		t.Errorf("ds01 project list: %+v", r)
	}
	if _, err := c.Dial("tcp", "127.0.0.1:8080"); err == nil {
		t.Error("the command login forwarded a port")
	}
}

func TestExec(t *testing.T) {
	g := startGateway(t, Options{}, nil)
	c := g.mustDial("thesis", g.addUser("alice", 1001))

	if r := run(t, c, "echo hello", nil); r.stdout != "hello\n" || r.stderr != "" || r.code != 0 {
		t.Errorf("echo: %+v", r)
	}
	if r := run(t, c, "err oops", nil); r.stdout != "" || r.stderr != "oops\n" {
		t.Errorf("stderr is not kept apart: %+v", r)
	}
	if r := run(t, c, "exit 7", nil); r.code != 7 || r.signal != "" {
		t.Errorf("exit 7: %+v", r)
	}
	if r := run(t, c, "exit 130", nil); r.signal != "INT" {
		t.Errorf("death by SIGINT: %+v %v, want exit-signal INT", r, r.err)
	}
	if r := run(t, c, "cat", strings.NewReader("to and fro")); r.stdout != "to and fro" || r.code != 0 {
		t.Errorf("cat: %+v (stdin EOF must reach the process)", r)
	}
	p := g.nextProc() // echo
	if want := []string{"/bin/fakesh", "-c", "echo hello"}; !slices.Equal(p.spec.Cmd, want) || p.spec.Tty {
		t.Errorf("argv %q tty %v, want %q without a tty", p.spec.Cmd, p.spec.Tty, want)
	}
	if g.sessions.held() != 0 {
		eventually(t, "leases released", func() bool { return g.sessions.held() == 0 })
	}
}

func TestEnvAndPTY(t *testing.T) {
	g := startGateway(t, Options{}, nil)
	c := g.mustDial("thesis", g.addUser("alice", 1001))
	s, err := c.NewSession()
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if err := s.Setenv("LANG", "C.UTF-8"); err != nil {
		t.Errorf("LANG refused: %v", err)
	}
	if err := s.Setenv("LD_PRELOAD", "/tmp/evil.so"); err == nil {
		t.Error("LD_PRELOAD accepted")
	}
	if err := s.RequestPty("xterm-256color", 40, 100, gossh.TerminalModes{}); err != nil {
		t.Fatal(err)
	}
	if err := s.Shell(); err != nil {
		t.Fatal(err)
	}
	p := g.nextProc()
	if !p.spec.Tty || p.spec.Rows != 40 || p.spec.Cols != 100 || !slices.Equal(p.spec.Cmd, []string{"/bin/fakesh", "-l"}) {
		t.Errorf("shell spec %+v, want a 40x100 tty running a login shell", p.spec)
	}
	for _, want := range []string{"LANG=C.UTF-8", "TERM=xterm-256color", "SSH_CONNECTION=127.0.0.1 "} {
		if !slices.ContainsFunc(p.spec.Env, func(e string) bool { return strings.HasPrefix(e, want) }) {
			t.Errorf("env %q lacks %q", p.spec.Env, want)
		}
	}
	if slices.ContainsFunc(p.spec.Env, func(e string) bool { return strings.HasPrefix(e, "LD_PRELOAD") }) {
		t.Errorf("env %q has LD_PRELOAD", p.spec.Env)
	}
	if err := s.WindowChange(50, 120); err != nil {
		t.Fatal(err)
	}
	select {
	case got := <-p.resizes:
		if got != [2]uint32{50, 120} {
			t.Errorf("resized to %v, want 50x120", got)
		}
	case <-time.After(5 * time.Second):
		t.Error("window-change did not resize the terminal")
	}
	s.Close()
	select {
	case sig := <-p.got:
		if sig != syscall.SIGHUP {
			t.Errorf("a closed terminal session sent %v, want SIGHUP", sig)
		}
	case <-time.After(5 * time.Second):
		t.Error("closing the channel did not hang up the terminal session")
	}
}

func TestSignals(t *testing.T) {
	g := startGateway(t, Options{}, nil)
	c := g.mustDial("thesis", g.addUser("alice", 1001))

	// A signal sent before the process starts is delivered once it runs.
	s, err := c.NewSession()
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Signal(gossh.SIGTERM); err != nil {
		t.Fatal(err)
	}
	err = s.Run("wait")
	var ee *gossh.ExitError
	if !errors.As(err, &ee) || ee.Signal() != "TERM" {
		t.Errorf("early SIGTERM: %v, want exit-signal TERM", err)
	}

	s, err = c.NewSession()
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Start("wait"); err != nil {
		t.Fatal(err)
	}
	g.nextProc()
	p := g.nextProc()
	if err := s.Signal(gossh.SIGUSR1); err != nil {
		t.Fatal(err)
	}
	err = s.Wait()
	if !errors.As(err, &ee) || ee.Signal() != "USR1" {
		t.Errorf("SIGUSR1: %v, want exit-signal USR1", err)
	}
	_ = p
}
