package gateway

import (
	"context"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/ds01/ds01-gateway/store"
)

// Options.IsAdmin decides Env.Admin for each command session, and is never
// asked on a project login.
func TestIsAdminSetsCommandsAdmin(t *testing.T) {
	var asked atomic.Int32
	g := startGateway(t, Options{IsAdmin: func(_ context.Context, u store.User) bool {
		asked.Add(1)
		return u.Name == "boss"
	}}, nil)
	boss, ann := g.addUser("boss", 1001), g.addUser("ann", 1002)

	if r := run(t, g.mustDial("thesis", boss), "echo hi", nil); r.code != 0 || asked.Load() != 0 {
		t.Fatalf("project login: %+v; IsAdmin asked %d times, want 0", r, asked.Load())
	}
	if r := run(t, g.mustDial("ds01", boss), "help", nil); r.code != 0 || !strings.Contains(r.stdout, "announce") {
		t.Errorf("boss's help lacks the admin commands: %+v", r)
	}
	r := run(t, g.mustDial("ds01", ann), "announce hi", nil)
	if r.code != 1 || !strings.Contains(r.stderr, "only admins") {
		t.Errorf("ann's announce: %+v", r)
	}

	// Without IsAdmin nobody is an admin.
	g = startGateway(t, Options{}, nil)
	boss = g.addUser("boss", 1001)
	if r := run(t, g.mustDial("ds01", boss), "help", nil); strings.Contains(r.stdout, "announce") {
		t.Errorf("help lists admin commands with no IsAdmin: %+v", r)
	}
}
