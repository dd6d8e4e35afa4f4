package gateway

import (
	"context"
	"errors"
	"net"
	"net/netip"
	"strings"
	"sync"
	"testing"
	"time"

	gssh "github.com/gliderlabs/ssh"
	gossh "golang.org/x/crypto/ssh"

	"github.com/ds01/ds01-gateway/store"
)

// policyUsers is a Users with key options, as host accounts mode has.
type policyUsers struct {
	*fakeUsers
	rules map[string]Restrictions
	deny  map[string]error
	seen  chan netip.Addr
}

func (p policyUsers) KeyAccess(fp string, remote netip.Addr, _ time.Time) (Restrictions, error) {
	select {
	case p.seen <- remote:
	default:
	}
	if err := p.deny[fp]; err != nil {
		return Restrictions{}, err
	}
	return p.rules[fp], nil
}

func withPolicy(p *policyUsers) func(*Server) {
	return func(s *Server) {
		p.fakeUsers = s.users.(*fakeUsers)
		s.users = p
	}
}

// A restricted key (authorized_keys "restrict") gets its session but no
// forwarding, terminal or agent; the refusals say why.
func TestRestrictedKey(t *testing.T) {
	fs := newFakeSessions()
	serveDial(fs, "from the container")
	p := &policyUsers{rules: map[string]Restrictions{}, seen: make(chan netip.Addr, 16)}
	g := startGateway(t, Options{}, fs, withPolicy(p))
	k := g.addUser("alice", 1001)
	p.rules[gossh.FingerprintSHA256(k.PublicKey())] = Restrictions{NoPortForwarding: true, NoAgentForwarding: true, NoPty: true}
	c := g.mustDial("thesis", k)

	if remote := <-p.seen; remote != netip.MustParseAddr("127.0.0.1") {
		t.Errorf("KeyAccess got remote %v", remote)
	}
	if _, err := c.Dial("tcp", "127.0.0.1:8888"); err == nil || !strings.Contains(err.Error(), "port forwarding is disabled for this key") {
		t.Errorf("local forward: want a refusal naming the key's options, got %v", err)
	}
	if _, err := c.Listen("tcp", "127.0.0.1:0"); err == nil {
		t.Error("remote forward accepted for a restricted key")
	}
	s, err := c.NewSession()
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if err := s.RequestPty("xterm", 24, 80, gossh.TerminalModes{}); err == nil {
		t.Error("pty accepted for a no-pty key")
	}
	if ok, err := s.SendRequest("auth-agent-req@openssh.com", true, nil); ok || err != nil {
		t.Errorf("agent forwarding: ok=%v err=%v, want refused", ok, err)
	}
	out, err := s.Output("echo works")
	if err != nil || string(out) != "works\n" {
		t.Fatalf("the session itself must work: %q, %v", out, err)
	}

	// The same user's unrestricted key on another connection forwards.
	free := newKey(t)
	g.users.mu.Lock()
	g.users.keys[gossh.FingerprintSHA256(free.PublicKey())] = store.User{Name: "alice", UID: 1001, GID: 1001}
	g.users.mu.Unlock()
	c2 := g.mustDial("thesis", free)
	nc, err := c2.Dial("tcp", "127.0.0.1:8888")
	if err != nil {
		t.Fatalf("unrestricted key's forward: %v", err)
	}
	if got := readConn(t, nc); got != "from the container" {
		t.Errorf("forward read %q", got)
	}
}

// A key whose conditions fail (from=, expiry-time=) is refused, and the
// log says why.
func TestKeyAccessRefused(t *testing.T) {
	p := &policyUsers{deny: map[string]error{}, seen: make(chan netip.Addr, 16)}
	g := startGateway(t, Options{}, nil, withPolicy(p))
	k := g.addUser("alice", 1001)
	p.deny[gossh.FingerprintSHA256(k.PublicKey())] = errors.New(`address 127.0.0.1 does not match from="10.0.0.0/8"`)
	if _, err := g.dial("thesis", k); err == nil {
		t.Fatal("a key refused by its options logged in")
	}
	eventually(t, "the refusal logged", func() bool {
		return strings.Contains(g.logs.String(), "key refused") && strings.Contains(g.logs.String(), "does not match from=")
	})
}

var _ = context.Background

// authCtx is the per-connection context gliderlabs gives the auth
// callback, for calling authorize directly.
type authCtx struct {
	context.Context
	sync.Mutex
	perms *gssh.Permissions
	vals  map[any]any
}

func (c *authCtx) User() string                   { return "thesis" }
func (c *authCtx) SessionID() string              { return "x" }
func (c *authCtx) ClientVersion() string          { return "SSH-2.0-test" }
func (c *authCtx) ServerVersion() string          { return "SSH-2.0-test" }
func (c *authCtx) RemoteAddr() net.Addr           { return &net.TCPAddr{IP: net.IPv4(192, 0, 2, 1), Port: 5000} }
func (c *authCtx) LocalAddr() net.Addr            { return &net.TCPAddr{IP: net.IPv4(127, 0, 0, 1), Port: 22} }
func (c *authCtx) Permissions() *gssh.Permissions { return c.perms }
func (c *authCtx) SetValue(k, v any)              { c.vals[k] = v }
func (c *authCtx) Value(k any) any {
	if v, ok := c.vals[k]; ok {
		return v
	}
	return c.Context.Value(k)
}

// The restrictions are those of the last key approved, which x/crypto's
// one-entry cache makes the key that signed (a bad signature ends the
// connection): approving another key after a restricted one, or a
// restricted one after another, replaces them; a refused key changes
// nothing.
func TestRestrictionsFollowTheLastApprovedKey(t *testing.T) {
	p := &policyUsers{rules: map[string]Restrictions{}, deny: map[string]error{}, seen: make(chan netip.Addr, 16)}
	g := startGateway(t, Options{}, nil, withPolicy(p))
	free, restricted, refused := g.addUser("alice", 1001), g.addUser("alice2", 1002), g.addUser("alice3", 1003)
	p.rules[gossh.FingerprintSHA256(restricted.PublicKey())] = Restrictions{NoPortForwarding: true, NoPty: true}
	p.deny[gossh.FingerprintSHA256(refused.PublicKey())] = errors.New("from= mismatch")
	ctx := &authCtx{Context: context.Background(), perms: &gssh.Permissions{Permissions: &gossh.Permissions{}}, vals: map[any]any{}}
	want := Restrictions{NoPortForwarding: true, NoPty: true}
	for i, step := range []struct {
		key  gossh.Signer
		ok   bool
		want Restrictions
	}{
		{restricted, true, want},
		{free, true, Restrictions{}},
		{restricted, true, want},
		{refused, false, want},
		{free, true, Restrictions{}},
	} {
		if ok := g.srv.authorize(ctx, step.key.PublicKey()); ok != step.ok {
			t.Fatalf("step %d: authorize = %v", i, ok)
		}
		if got := restrictionsOf(ctx); got != step.want {
			t.Errorf("step %d: restrictions %+v, want %+v", i, got, step.want)
		}
	}
}
