package gateway

import (
	"slices"
	"testing"

	gossh "golang.org/x/crypto/ssh"

	"github.com/ds01/ds01-gateway/session/ptymodes"
)

// The client's terminal modes reach the runtime decoded; a list sshd would
// not apply is dropped, and the session still gets its terminal.
func TestPTYModes(t *testing.T) {
	g := startGateway(t, Options{}, nil)
	c := g.mustDial("thesis", g.addUser("alice", 1001))
	for _, tc := range []struct {
		name  string
		modes string
		want  ptymodes.Modes
	}{
		{"sent", string(gossh.Marshal(struct {
			K byte
			V uint32
		}{gossh.ECHO, 0})) + "\x00", ptymodes.Modes{{Op: gossh.ECHO, Arg: 0}}},
		{"cut short", "\x35\x00\x00", nil},
		{"none", "", nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s, err := c.NewSession()
			if err != nil {
				t.Fatal(err)
			}
			defer s.Close()
			req := gossh.Marshal(ptyRequest{Term: "xterm", Cols: 80, Rows: 24, Modes: tc.modes})
			if ok, err := s.SendRequest("pty-req", true, req); err != nil || !ok {
				t.Fatalf("pty-req: %v %v", ok, err)
			}
			if err := s.Shell(); err != nil {
				t.Fatal(err)
			}
			p := g.nextProc()
			if !p.spec.Tty || !slices.Equal(p.spec.Modes, tc.want) {
				t.Errorf("tty %v modes %v, want a tty with %v", p.spec.Tty, p.spec.Modes, tc.want)
			}
		})
	}
}
