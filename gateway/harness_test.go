package gateway

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"errors"
	"io"
	"log/slog"
	"net"
	"strings"
	"sync"
	"testing"
	"time"

	gossh "golang.org/x/crypto/ssh"

	"github.com/ds01/ds01-gateway/store"
)

// testGateway is a gateway serving on 127.0.0.1:0 in the test process,
// against fakeSessions, like wish's testsession.
type testGateway struct {
	t        *testing.T
	srv      *Server
	addr     string
	sessions *fakeSessions
	users    *fakeUsers
	logs     *logBuffer
}

// logBuffer collects the gateway's log lines.
type logBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *logBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *logBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

func (b *logBuffer) Len() int {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Len()
}

func newKey(t *testing.T) gossh.Signer {
	t.Helper()
	_, priv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	s, err := gossh.NewSignerFromKey(priv)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// startGateway serves a gateway with opts (host key and defaults filled
// in) until the test ends.
func startGateway(t *testing.T, opts Options, fs *fakeSessions, tweaks ...func(*Server)) *testGateway {
	t.Helper()
	if fs == nil {
		fs = newFakeSessions()
	}
	if len(opts.HostSigners) == 0 {
		opts.HostSigners = []gossh.Signer{newKey(t)}
	}
	if opts.CommandLogin == "" {
		opts.CommandLogin = "ds01"
	}
	logs := &logBuffer{}
	log := slog.New(slog.NewTextHandler(logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
	users := &fakeUsers{keys: map[string]store.User{}}
	srv, err := New(opts, users, fs, fakeCommands{}, log)
	if err != nil {
		t.Fatal(err)
	}
	for _, tweak := range tweaks {
		tweak(srv)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	go func() {
		defer close(done)
		srv.Serve(ln)
	}()
	t.Cleanup(func() {
		srv.srv.Close()
		// A test may end before Serve has registered the listener with
		// gliderlabs, whose Close then misses it: close it ourselves, or
		// Serve accepts forever.
		ln.Close()
		<-done
		if t.Failed() {
			t.Logf("gateway log:\n%s", logs.String())
		}
		if strings.Contains(logs.String(), "level=ERROR msg=panic") && !t.Failed() && !expectPanics[t.Name()] {
			t.Errorf("gateway panicked:\n%s", logs.String())
		}
	})
	return &testGateway{t: t, srv: srv, addr: ln.Addr().String(), sessions: fs, users: users, logs: logs}
}

// expectPanics names the tests whose panics are on purpose.
var expectPanics = map[string]bool{}

// addUser registers a user and returns their key.
func (g *testGateway) addUser(name string, uid int) gossh.Signer {
	k := newKey(g.t)
	g.users.mu.Lock()
	g.users.keys[gossh.FingerprintSHA256(k.PublicKey())] = store.User{Name: name, UID: uid, GID: uid}
	g.users.mu.Unlock()
	return k
}

// dial connects and authenticates as login with keys.
func (g *testGateway) dial(login string, keys ...gossh.Signer) (*gossh.Client, error) {
	return gossh.Dial("tcp", g.addr, &gossh.ClientConfig{
		User:            login,
		Auth:            []gossh.AuthMethod{gossh.PublicKeys(keys...)},
		HostKeyCallback: gossh.InsecureIgnoreHostKey(),
		Timeout:         5 * time.Second,
	})
}

func (g *testGateway) mustDial(login string, keys ...gossh.Signer) *gossh.Client {
	g.t.Helper()
	c, err := g.dial(login, keys...)
	if err != nil {
		g.t.Fatalf("dial %s: %v", login, err)
	}
	g.t.Cleanup(func() { c.Close() })
	return c
}

// result is how an exec ended, as the client saw it.
type result struct {
	stdout, stderr string
	code           int
	signal         string
	err            error
}

// run execs cmd on a new session of c, with stdin.
func run(t *testing.T, c *gossh.Client, cmd string, stdin io.Reader) result {
	t.Helper()
	s, err := c.NewSession()
	if err != nil {
		t.Fatalf("new session: %v", err)
	}
	defer s.Close()
	var out, errb bytes.Buffer
	s.Stdout, s.Stderr, s.Stdin = &out, &errb, stdin
	err = s.Run(cmd)
	r := result{stdout: out.String(), stderr: errb.String(), err: err}
	var ee *gossh.ExitError
	if errors.As(err, &ee) {
		r.code, r.signal, r.err = ee.ExitStatus(), ee.Signal(), nil
	}
	return r
}

// nextProc waits for the next process the fake session layer starts.
func (g *testGateway) nextProc() *fakeProc {
	g.t.Helper()
	select {
	case p := <-g.sessions.procs:
		return p
	case <-time.After(5 * time.Second):
		g.t.Fatal("no process started")
		return nil
	}
}

// eventually polls cond for up to 5 s.
func eventually(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting: %s", what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

var _ = context.Background
