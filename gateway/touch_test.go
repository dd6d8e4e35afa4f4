package gateway

import (
	"bytes"
	"io"
	"strings"
	"testing"
	"time"

	gossh "golang.org/x/crypto/ssh"
)

// Typing into a terminal session is activity for the idle reclaim: the
// lease hears of it. Input piped into an exec without a terminal is not.
func TestPtyInputTouchesLease(t *testing.T) {
	g := startGateway(t, Options{}, nil)
	c := g.mustDial("thesis", g.addUser("alice", 1001))

	// No terminal: a script feeding cat is nobody at the keyboard.
	if r := run(t, c, "cat", strings.NewReader("piped\n")); r.stdout != "piped\n" || r.code != 0 {
		t.Fatalf("cat without a pty: %+v", r)
	}
	if n := g.sessions.touched(); n != 0 {
		t.Errorf("input to an exec without a pty touched the lease %d times, want 0", n)
	}

	s, err := c.NewSession()
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	out := &logBuffer{} // safe for concurrent use
	s.Stdout = out
	in, err := s.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := s.RequestPty("xterm", 24, 80, gossh.TerminalModes{}); err != nil {
		t.Fatal(err)
	}
	if err := s.Start("cat"); err != nil {
		t.Fatal(err)
	}
	for _, line := range []string{"ls\n", "pwd\n", "nvidia-smi\n"} {
		if _, err := io.WriteString(in, line); err != nil {
			t.Fatal(err)
		}
	}
	eventually(t, "typed lines echoed", func() bool { return strings.Contains(out.String(), "nvidia-smi") })
	// Three quick keystroke bursts within a second: reported once, not
	// once per read.
	if n := g.sessions.touched(); n != 1 {
		t.Errorf("typing into a pty session touched the lease %d times, want 1 (at most one per second)", n)
	}
}

// A terminal's input is reported at most once per touchEvery.
func TestTouchReaderRateLimit(t *testing.T) {
	now := time.Date(2026, 1, 1, 12, 0, 0, 0, time.UTC)
	touches := 0
	r := &touchReader{r: strings.NewReader(strings.Repeat("x", 100)), touch: func() { touches++ }, now: func() time.Time { return now }}
	buf := make([]byte, 1)
	read := func() {
		t.Helper()
		if _, err := r.Read(buf); err != nil {
			t.Fatal(err)
		}
	}
	read()
	read()
	if touches != 1 {
		t.Fatalf("two reads at once: %d touches, want 1", touches)
	}
	now = now.Add(touchEvery - time.Millisecond)
	read()
	if touches != 1 {
		t.Fatalf("a read just under %s later: %d touches, want 1", touchEvery, touches)
	}
	now = now.Add(time.Millisecond)
	read()
	if touches != 2 {
		t.Fatalf("a read %s after the first touch: %d touches, want 2", touchEvery, touches)
	}
	// EOF with nothing read is not typing.
	r = &touchReader{r: bytes.NewReader(nil), touch: func() { touches++ }, now: func() time.Time { return now.Add(time.Hour) }}
	if _, err := r.Read(buf); err != io.EOF {
		t.Fatalf("read at EOF: %v", err)
	}
	if touches != 2 {
		t.Errorf("EOF touched the lease")
	}
}
