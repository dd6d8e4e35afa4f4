package ptymodes

import (
	"crypto/ed25519"
	"crypto/rand"
	"net"
	"reflect"
	"strings"
	"testing"

	gossh "golang.org/x/crypto/ssh"
)

// ptyReq is RFC 4254 6.2's "pty-req" payload.
type ptyReq struct {
	Term             string
	Cols, Rows, W, H uint32
	Modes            string
}

// sentModes is the modes string of the pty-req a real x/crypto client
// sends for modes, as a server receives it.
func sentModes(t *testing.T, modes gossh.TerminalModes) []byte {
	t.Helper()
	_, priv, _ := ed25519.GenerateKey(rand.Reader)
	signer, err := gossh.NewSignerFromKey(priv)
	if err != nil {
		t.Fatal(err)
	}
	cfg := &gossh.ServerConfig{NoClientAuth: true}
	cfg.AddHostKey(signer)
	// Loopback TCP, not net.Pipe: both sides send their version at once,
	// and an unbuffered pipe would deadlock them.
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	got := make(chan []byte, 1)
	go func() {
		a, err := l.Accept()
		if err != nil {
			got <- nil
			return
		}
		defer a.Close()
		_, chans, reqs, err := gossh.NewServerConn(a, cfg)
		if err != nil {
			got <- nil
			return
		}
		go gossh.DiscardRequests(reqs)
		for nc := range chans {
			ch, in, err := nc.Accept()
			if err != nil {
				break
			}
			for r := range in {
				if r.Type == "pty-req" {
					var p ptyReq
					if gossh.Unmarshal(r.Payload, &p) != nil {
						got <- nil
					} else {
						got <- []byte(p.Modes)
					}
					r.Reply(true, nil)
					ch.Close()
					return
				}
			}
		}
	}()
	b, err := net.Dial("tcp", l.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	conn, nchans, reqs, err := gossh.NewClientConn(b, "pipe", &gossh.ClientConfig{HostKeyCallback: gossh.InsecureIgnoreHostKey(), User: "u"})
	if err != nil {
		t.Fatal(err)
	}
	c := gossh.NewClient(conn, nchans, reqs)
	defer c.Close()
	s, err := c.NewSession()
	if err != nil {
		t.Fatal(err)
	}
	if err := s.RequestPty("xterm", 24, 80, modes); err != nil {
		t.Fatal(err)
	}
	p := <-got
	if p == nil {
		t.Fatal("no pty-req payload")
	}
	return p
}

// What x/crypto's client encodes decodes to the same modes.
func TestParseRoundTrip(t *testing.T) {
	want := gossh.TerminalModes{
		gossh.VINTR: 3, gossh.VERASE: 8, gossh.VEOF: 255, gossh.ECHO: 0, gossh.ICANON: 1,
		gossh.IUTF8: 1, gossh.CS8: 1, gossh.TTY_OP_ISPEED: 14400, gossh.TTY_OP_OSPEED: 38400, 99: 7,
	}
	m, err := Parse(sentModes(t, want))
	if err != nil {
		t.Fatal(err)
	}
	got := gossh.TerminalModes{}
	for _, md := range m {
		got[md.Op] = md.Arg
	}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("parsed %v, want %v", got, want)
	}
	if m, err := Parse(sentModes(t, gossh.TerminalModes{})); err != nil || len(m) != 0 {
		t.Errorf("no modes: %v %v", m, err)
	}
}

func TestParse(t *testing.T) {
	for _, tc := range []struct {
		name string
		in   []byte
		want Modes
		err  string
	}{
		{"empty", nil, nil, ""},
		{"end only", []byte{0}, nil, ""},
		{"no end", []byte{53, 0, 0, 0, 1}, Modes{{53, 1}}, ""},
		{"in order", []byte{53, 0, 0, 0, 1, 53, 0, 0, 0, 0, 0}, Modes{{53, 1}, {53, 0}}, ""},
		{"unknown kept", []byte{99, 1, 2, 3, 4, 0}, Modes{{99, 0x01020304}}, ""},
		{"speed", []byte{128, 0, 0, 0x96, 0, 0}, Modes{{128, 38400}}, ""},
		{"undefined opcode stops", []byte{53, 0, 0, 0, 0, 160}, Modes{{53, 0}}, ""},
		{"argument cut short", []byte{53, 0, 0, 1}, nil, "cut short"},
		{"no argument", []byte{3}, nil, "cut short"},
		{"bytes after end", []byte{0, 53, 0, 0, 0, 1}, nil, "after the end"},
		{"bytes after undefined", []byte{200, 0, 0, 0, 1}, nil, "after the end"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			m, err := Parse(tc.in)
			if tc.err != "" {
				if err == nil || !strings.Contains(err.Error(), tc.err) {
					t.Fatalf("got %v, %v; want an error with %q", m, err, tc.err)
				}
				return
			}
			if err != nil || !reflect.DeepEqual(m, tc.want) {
				t.Errorf("got %v, %v; want %v", m, err, tc.want)
			}
		})
	}
}
