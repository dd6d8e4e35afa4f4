package e2e

import (
	"context"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"golang.org/x/crypto/ssh"
)

// The terminal modes a client sends with its pty request hold inside the
// session, as under sshd: its erase key, echo, IUTF8 and speed. A client
// that sends none, or sends ones sshd would not apply, gets a new
// terminal's sane settings.
func TestPtyModes(t *testing.T) {
	g := startGateway(t, gwOpts{RetireAfter: "30s"})
	u := g.addUser(t, "tim", 28650, 28650)
	const proj = "ptymodes"
	g.mustSSH(t, u, proj, "true") // build outside the subtests

	client, err := g.goClient(t, u.key, proj)
	if err != nil {
		t.Fatal(err)
	}
	defer client.Close()

	sttyIn := func(t *testing.T, start func(s *ssh.Session) error) string {
		t.Helper()
		s, err := client.NewSession()
		if err != nil {
			t.Fatal(err)
		}
		defer s.Close()
		if err := start(s); err != nil {
			t.Fatal(err)
		}
		out := &ptyOut{}
		s.Stdout, s.Stderr = out, io.Discard
		if err := s.Start("stty -a"); err != nil {
			t.Fatal(err)
		}
		if st := ptyExit(t, s); st != "status 0" {
			t.Fatalf("stty -a: %s, output %q", st, out.String())
		}
		return " " + strings.Join(strings.Fields(strings.ReplaceAll(out.String(), ";", " ")), " ") + " "
	}
	check := func(t *testing.T, got string, want, not []string) {
		t.Helper()
		for _, w := range want {
			if !strings.Contains(got, " "+w+" ") {
				t.Errorf("want %q in stty -a: %s", w, got)
			}
		}
		for _, w := range not {
			if strings.Contains(got, " "+w+" ") {
				t.Errorf("%q in stty -a: %s", w, got)
			}
		}
	}

	t.Run("client_modes", func(t *testing.T) {
		got := sttyIn(t, func(s *ssh.Session) error {
			return s.RequestPty("xterm", 24, 80, ssh.TerminalModes{
				ssh.ECHO: 0, ssh.VERASE: 8, ssh.VINTR: 7, ssh.VEOF: 255, ssh.IUTF8: 1, ssh.IXANY: 1,
				ssh.TTY_OP_ISPEED: 9600, ssh.TTY_OP_OSPEED: 9600, 160 - 1: 1, // unknown: skipped
			})
		})
		check(t, got, []string{"-echo", "erase = ^H", "intr = ^G", "eof = <undef>", "iutf8", "ixany", "speed 9600 baud", "icanon"},
			[]string{"echo", "-iutf8"})
	})

	t.Run("default_client", func(t *testing.T) {
		got := sttyIn(t, func(s *ssh.Session) error { return s.RequestPty("xterm", 24, 80, ssh.TerminalModes{}) })
		check(t, got, []string{"echo", "icanon", "isig", "icrnl", "opost", "onlcr", "cs8", "erase = ^?", "intr = ^C"},
			[]string{"-echo", "-icanon"})
	})

	t.Run("bad_modes_ignored", func(t *testing.T) {
		// ECHO=0 whose list goes on after its end: sshd applies none of it.
		modes := string([]byte{53, 0, 0, 0, 0, 0, 3, 0, 0, 0, 8})
		req := ssh.Marshal(struct {
			Term             string
			Cols, Rows, W, H uint32
			Modes            string
		}{"xterm", 80, 24, 640, 192, modes})
		got := sttyIn(t, func(s *ssh.Session) error {
			ok, err := s.SendRequest("pty-req", true, req)
			if err == nil && !ok {
				t.Fatal("pty-req with bad modes refused; want a terminal without them")
			}
			return err
		})
		check(t, got, []string{"echo", "erase = ^?"}, []string{"-echo"})
	})

	// OpenSSH sends its own terminal's modes: set some on a terminal of
	// script(1)'s, then run ssh -tt on it.
	t.Run("openssh_client", func(t *testing.T) {
		if _, err := exec.LookPath("script"); err != nil {
			t.Skip("no script(1) here")
		}
		var line strings.Builder
		line.WriteString("stty erase ^H -echo iutf8 && exec ssh")
		for _, a := range append(g.sshArgs(u.key, proj, "-tt"), "stty", "-a") {
			line.WriteString(" '" + strings.ReplaceAll(a, "'", `'\''`) + "'")
		}
		ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
		defer cancel()
		cmd := exec.CommandContext(ctx, "script", "-qec", line.String(), "/dev/null")
		cmd.Env = append(os.Environ(), "SHELL=/bin/sh")
		in, err := cmd.StdinPipe() // held open: script ends at its input's EOF
		if err != nil {
			t.Fatal(err)
		}
		defer in.Close()
		out, err := cmd.CombinedOutput()
		if err != nil {
			t.Fatalf("%v: %s", err, out)
		}
		got := " " + strings.Join(strings.Fields(strings.ReplaceAll(string(out), ";", " ")), " ") + " "
		check(t, got, []string{"erase = ^H", "-echo", "iutf8", "icanon", "intr = ^C"}, []string{"echo", "-iutf8"})
	})

	// Closing the session's channel (the connection stays) hangs the
	// terminal up: the session's own process gets SIGHUP.
	t.Run("hangup_on_channel_close", func(t *testing.T) {
		mark := filepath.Join(g.workspace(u, proj), "hup.leader")
		os.Remove(mark)
		s, out := startPtySession(t, client, `trap 'echo hup >/workspace/hup.leader; exit 0' HUP; echo ready; while :; do sleep 0.05; done`)
		waitPty(t, out, "ready")
		s.Close()
		for end := time.Now().Add(10 * time.Second); ; time.Sleep(50 * time.Millisecond) {
			if b, _ := os.ReadFile(mark); string(b) == "hup\n" {
				break
			}
			if time.Now().After(end) {
				t.Fatal("the session's process got no SIGHUP when its channel closed")
			}
		}
	})
}
