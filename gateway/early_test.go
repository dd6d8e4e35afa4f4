package gateway

import (
	"errors"
	"io"
	"slices"
	"sync"
	"testing"
	"time"

	gossh "golang.org/x/crypto/ssh"

	"github.com/ds01/ds01-gateway/session"
	"github.com/ds01/ds01-gateway/store"
)

// earlySessions is the fake session layer with early starts: it records
// each Prepare and how each hold ended.
type earlySessions struct {
	*fakeSessions
	mu       sync.Mutex
	prepared []attachCall
	ends     []string // "handover" or "abandon", one per hold
}

func newEarlySessions() *earlySessions { return &earlySessions{fakeSessions: newFakeSessions()} }

func (f *earlySessions) Prepare(u store.User, project string, want session.Want) EarlyHold {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.prepared = append(f.prepared, attachCall{u.Name, project, want})
	return &fakeHold{f: f}
}

func (f *earlySessions) state() ([]attachCall, []string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	return slices.Clone(f.prepared), slices.Clone(f.ends)
}

type fakeHold struct {
	f    *earlySessions
	once sync.Once
}

func (h *fakeHold) end(how string) {
	h.once.Do(func() {
		h.f.mu.Lock()
		h.f.ends = append(h.f.ends, how)
		h.f.mu.Unlock()
	})
}
func (h *fakeHold) Handover() { h.end("handover") }
func (h *fakeHold) Abandon()  { h.end("abandon") }

func startEarlyGateway(t *testing.T, tweaks ...func(*Server)) (*testGateway, *earlySessions) {
	t.Helper()
	es := newEarlySessions()
	g := startGateway(t, Options{}, nil, tweaks...)
	g.srv.sessions = es
	g.sessions = es.fakeSessions
	return g, es
}

// ends waits until n holds have ended and returns how.
func ends(t *testing.T, es *earlySessions, n int) []string {
	t.Helper()
	eventually(t, "the hold to end", func() bool { _, e := es.state(); return len(e) >= n })
	_, e := es.state()
	return e
}

// cannotSign holds a registered user's public key without its private
// key: it can offer the key but not sign.
type cannotSign struct{ gossh.Signer }

func (cannotSign) Sign(io.Reader, []byte) (*gossh.Signature, error) {
	return nil, errors.New("no private key")
}

// forges signs with garbage, as a client that has only the public key
// might try.
type forges struct{ gossh.Signer }

func (f forges) Sign(io.Reader, []byte) (*gossh.Signature, error) {
	return &gossh.Signature{Format: f.PublicKey().Type(), Blob: make([]byte, 64)}, nil
}

// Nothing is prepared for a connection that offers a valid user's key
// without proving it holds the private key, nor for an unknown key.
func TestNoEarlyStartWithoutAVerifiedSignature(t *testing.T) {
	g, es := startEarlyGateway(t)
	ann := g.addUser("ann", 26001)
	for name, k := range map[string]gossh.Signer{
		"cannot sign": cannotSign{ann},
		"forged":      forges{ann},
		"unknown key": newKey(t),
	} {
		if c, err := g.dial("p", k); err == nil {
			c.Close()
			t.Errorf("%s: authenticated", name)
		}
	}
	time.Sleep(100 * time.Millisecond)
	if p, _ := es.state(); len(p) != 0 {
		t.Fatalf("prepared for unauthenticated connections: %v", p)
	}
	// The same key, signing, does prepare.
	g.mustDial("p", ann)
	eventually(t, "a prepare", func() bool { p, _ := es.state(); return len(p) == 1 })
	if p, _ := es.state(); p[0].user != "ann" {
		t.Fatalf("prepared %+v", p)
	}
}

// The first session attaches and then takes the hold over; a second
// session on the same connection has none to take.
func TestEarlyHoldIsHandedToTheSession(t *testing.T) {
	g, es := startEarlyGateway(t)
	ann := g.addUser("ann", 26001)
	c := g.mustDial("p+cpu", ann)
	if r := run(t, c, "exit 0", nil); r.err != nil || r.code != 0 {
		t.Fatalf("run: %+v", r)
	}
	if e := ends(t, es, 1); e[0] != "handover" {
		t.Fatalf("hold ended by %v", e)
	}
	p, _ := es.state()
	if len(p) != 1 || p[0].user != "ann" || p[0].project != "p" || p[0].want.GPUs != 0 {
		t.Fatalf("prepared %+v", p)
	}
	if a := g.sessions.calls(); len(a) != 1 {
		t.Fatalf("attaches %v", a)
	}
}

// A file transfer first gives the hold up at once.
func TestEarlyHoldAbandonedOnSFTP(t *testing.T) {
	g, es := startEarlyGateway(t)
	ann := g.addUser("ann", 26001)
	c := g.mustDial("p", ann)
	eventually(t, "a prepare", func() bool { p, _ := es.state(); return len(p) == 1 })
	s, err := c.NewSession()
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if err := s.RequestSubsystem("sftp"); err != nil {
		t.Fatal(err)
	}
	if e := ends(t, es, 1); e[0] != "abandon" {
		t.Fatalf("hold ended by %v", e)
	}
	if a := g.sessions.calls(); len(a) != 0 {
		t.Fatalf("sftp attached: %v", a)
	}
}

// A connection that closes without a session gives the hold up.
func TestEarlyHoldAbandonedOnClose(t *testing.T) {
	g, es := startEarlyGateway(t)
	ann := g.addUser("ann", 26001)
	c := g.mustDial("p", ann)
	eventually(t, "a prepare", func() bool { p, _ := es.state(); return len(p) == 1 })
	c.Close()
	if e := ends(t, es, 1); e[0] != "abandon" {
		t.Fatalf("hold ended by %v", e)
	}
}

// A connection that asks for no session in time gives the hold up while
// it stays open.
func TestEarlyHoldAbandonedAfterTimeout(t *testing.T) {
	g, es := startEarlyGateway(t, func(s *Server) { s.earlyTimeout = 50 * time.Millisecond })
	ann := g.addUser("ann", 26001)
	c := g.mustDial("p", ann)
	if e := ends(t, es, 1); e[0] != "abandon" {
		t.Fatalf("hold ended by %v", e)
	}
	// The connection still works: its session attaches as usual.
	if r := run(t, c, "exit 0", nil); r.err != nil || r.code != 0 {
		t.Fatalf("run: %+v", r)
	}
	if _, e := es.state(); len(e) != 1 {
		t.Fatalf("holds ended %v", e)
	}
}

// The built-in commands' login and an invalid project prepare nothing.
func TestNoEarlyStartForCommandsOrBadNames(t *testing.T) {
	g, es := startEarlyGateway(t)
	ann := g.addUser("ann", 26001)
	for _, login := range []string{"ds01", "p+bogus", "../x"} {
		c := g.mustDial(login, ann)
		c.Close()
	}
	time.Sleep(100 * time.Millisecond)
	if p, _ := es.state(); len(p) != 0 {
		t.Fatalf("prepared %v", p)
	}
}
