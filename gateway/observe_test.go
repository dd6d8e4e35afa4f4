package gateway

import (
	"errors"
	"io"
	"net"
	"slices"
	"sync"
	"testing"
	"time"

	gossh "golang.org/x/crypto/ssh"
)

// recObserver records what the gateway tells its observer.
type recObserver struct {
	mu       sync.Mutex
	auth     []string
	started  []string
	ended    []string
	logins   []string
	loginDur []time.Duration
	bytes    map[string]int64
}

func (o *recObserver) AuthFailed(reason string) {
	o.mu.Lock()
	defer o.mu.Unlock()
	o.auth = append(o.auth, reason)
}

func (o *recObserver) SessionStarted(user string) {
	o.mu.Lock()
	defer o.mu.Unlock()
	o.started = append(o.started, user)
}

func (o *recObserver) SessionEnded(user string) {
	o.mu.Lock()
	defer o.mu.Unlock()
	o.ended = append(o.ended, user)
}

func (o *recObserver) Login(kind string, d time.Duration) {
	o.mu.Lock()
	defer o.mu.Unlock()
	o.logins = append(o.logins, kind)
	o.loginDur = append(o.loginDur, d)
}

func (o *recObserver) TransferBytes(direction string, n int64) {
	o.mu.Lock()
	defer o.mu.Unlock()
	if o.bytes == nil {
		o.bytes = map[string]int64{}
	}
	o.bytes[direction] += n
}

func (o *recObserver) authFailures() []string {
	o.mu.Lock()
	defer o.mu.Unlock()
	return slices.Clone(o.auth)
}

// waitAuth waits until the observer heard reason.
func (o *recObserver) waitAuth(t *testing.T, reason string) {
	t.Helper()
	eventually(t, "auth failure "+reason, func() bool { return slices.Contains(o.authFailures(), reason) })
}

// Each way a connection fails to log in is counted once, with its reason.
func TestObserverAuthFailures(t *testing.T) {
	obs := &recObserver{}
	g := startGateway(t, Options{Observer: obs, MaxAuthTries: 2, HandshakeTimeout: 300 * time.Millisecond, MaxStartups: 10, MaxStartupsPerSource: 3}, nil)
	alice := g.addUser("alice", 1001)
	bob := g.addUser("bob", 1002)

	if _, err := g.dial("thesis", newKey(t)); err == nil {
		t.Fatal("an unknown key got in")
	}
	obs.waitAuth(t, AuthUnknownKey)

	if _, err := g.dial("thesis", wrongSigner{alice.PublicKey(), bob}); err == nil {
		t.Fatal("a bad signature got in")
	}
	obs.waitAuth(t, AuthBadSignature)

	if _, err := g.dial("thesis", newKey(t), newKey(t), newKey(t)); err == nil {
		t.Fatal("unknown keys got in")
	}
	obs.waitAuth(t, AuthTooManyTries)

	c, err := gossh.Dial("tcp", g.addr, &gossh.ClientConfig{User: "thesis", HostKeyCallback: gossh.InsecureIgnoreHostKey(), Timeout: 5 * time.Second})
	if err == nil {
		c.Close()
		t.Fatal("no key got in")
	}
	obs.waitAuth(t, AuthNoKey)

	raw, err := net.Dial("tcp", g.addr)
	if err != nil {
		t.Fatal(err)
	}
	// Not SSH, and gone before a handshake: a port scanner.
	io.WriteString(raw, "GET / HTTP/1.0\r\n\r\n")
	raw.Close()
	obs.waitAuth(t, AuthHandshake)

	// An idle connection times out; three more from one source are one
	// too many.
	for range 4 {
		c, err := net.Dial("tcp", g.addr)
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
	}
	obs.waitAuth(t, AuthMaxStartupsPerSource)
	obs.waitAuth(t, AuthTimeout)

	// A login that works is no failure.
	before := len(obs.authFailures())
	c = g.mustDial("thesis", alice)
	if r := run(t, c, "echo hi", nil); r.stdout != "hi\n" {
		t.Fatalf("exec: %+v", r)
	}
	time.Sleep(50 * time.Millisecond)
	for _, r := range obs.authFailures()[before:] {
		if r != AuthTimeout { // the idle connections may time out now
			t.Errorf("a successful login counted as %q", r)
		}
	}
}

// Sessions are counted per user while they run; a connection's first
// session times the login, warm or cold.
func TestObserverSessionsAndLogin(t *testing.T) {
	obs := &recObserver{}
	g := startGateway(t, Options{Observer: obs}, nil)
	alice := g.addUser("alice", 1001)

	c := g.mustDial("thesis", alice)
	s, err := c.NewSession()
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Start("wait"); err != nil {
		t.Fatal(err)
	}
	p := g.nextProc()
	eventually(t, "session started", func() bool {
		obs.mu.Lock()
		defer obs.mu.Unlock()
		return len(obs.started) == 1 && len(obs.logins) == 1
	})
	// A second session on the same connection is no second login.
	if r := run(t, c, "echo hi", nil); r.stdout != "hi\n" {
		t.Fatalf("exec: %+v", r)
	}
	s.Close()
	p.Close()
	eventually(t, "sessions ended", func() bool {
		obs.mu.Lock()
		defer obs.mu.Unlock()
		return len(obs.ended) == 2
	})
	obs.mu.Lock()
	if !slices.Equal(obs.started, []string{"alice", "alice"}) || !slices.Equal(obs.ended, []string{"alice", "alice"}) {
		t.Errorf("sessions started %v, ended %v", obs.started, obs.ended)
	}
	if !slices.Equal(obs.logins, []string{LoginWarm}) || obs.loginDur[0] <= 0 || obs.loginDur[0] > 5*time.Second {
		t.Errorf("logins %v %v, want one warm", obs.logins, obs.loginDur)
	}
	obs.mu.Unlock()

	// A login that waited for its container's launch is cold.
	g.sessions.mu.Lock()
	g.sessions.launched = true
	g.sessions.mu.Unlock()
	c2 := g.mustDial("thesis", alice)
	if r := run(t, c2, "echo hi", nil); r.stdout != "hi\n" {
		t.Fatalf("exec: %+v", r)
	}
	obs.mu.Lock()
	defer obs.mu.Unlock()
	if !slices.Equal(obs.logins, []string{LoginWarm, LoginCold}) {
		t.Errorf("logins %v, want warm then cold", obs.logins)
	}
	if len(obs.auth) != 0 {
		t.Errorf("auth failures %v on good logins", obs.auth)
	}
}

// authFailure without a connection's state still names the two endings
// x/crypto reports.
func TestAuthFailureWithoutState(t *testing.T) {
	if got := authFailure(&gossh.ServerAuthError{Errors: []error{gossh.ErrNoAuth}}, nil); got != AuthNoKey {
		t.Errorf("client gave up: %q", got)
	}
	if got := authFailure(errors.New("ssh: disconnect, reason 2: too many authentication failures"), nil); got != AuthHandshake {
		t.Errorf("a bare error: %q", got)
	}
	tooMany := &gossh.ServerAuthError{Errors: []error{gossh.ErrNoAuth, errors.New("ssh: disconnect, reason 2: too many authentication failures")}}
	if got := authFailure(tooMany, &connState{}); got != AuthTooManyTries {
		t.Errorf("too many tries: %q", got)
	}
}

// The gateway runs without an observer.
func TestNilObserver(t *testing.T) {
	g := startGateway(t, Options{}, nil)
	k := g.addUser("alice", 1001)
	if r := run(t, g.mustDial("thesis", k), "echo hi", nil); r.stdout != "hi\n" {
		t.Fatalf("exec: %+v", r)
	}
	if _, err := g.dial("thesis", newKey(t)); err == nil {
		t.Fatal("an unknown key got in")
	}
}
