package e2e

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"
)

// TestSession checks what a client sees inside a session. The subtests share
// one gateway, user and project so the project image is built only once.
func TestSession(t *testing.T) {
	g := startGateway(t, gwOpts{RetireAfter: "30s"}) // keep the container between subtests
	u := g.addUser(t, "sam", 20011, 20012)
	const proj = "sess"

	// First login builds; everything after it is warm.
	if r := g.ssh(t, u, proj, "true"); r.code != 0 {
		t.Fatalf("first login: %s", r)
	}

	t.Run("identity", func(t *testing.T) {
		out := g.mustSSH(t, u, proj, `printf 'uid=%s\n' "$(id -u)"; printf 'gid=%s\n' "$(id -g)"; `+
			`printf 'pwd=%s\n' "$(pwd)"; printf 'whoami=%s\n' "$(whoami)"; printf 'home=%s\n' "$HOME"; `+
			`touch "$HOME/x" && printf 'homew=ok\n'; printf 'hostname=%s\n' "$(hostname)"`)
		got := keyValues(out)
		want := map[string]string{
			"uid": "20011", "gid": "20012", "pwd": "/workspace", "whoami": "sam",
			"homew": "ok", "hostname": proj,
		}
		for k, v := range want {
			if got[k] != v {
				t.Errorf("%s = %q, want %q (output %q)", k, got[k], v, out)
			}
		}
		if h := got["home"]; h == "" || h == "/" {
			t.Errorf("HOME = %q, want a home directory", h)
		}
	})

	t.Run("exit_code", func(t *testing.T) {
		if r := g.ssh(t, u, proj, "exit 7"); r.code != 7 {
			t.Errorf("exit 7: %s", r)
		}
		if r := g.ssh(t, u, proj, "true"); r.code != 0 {
			t.Errorf("true: %s", r)
		}
	})

	t.Run("exit_signal", func(t *testing.T) {
		// OpenSSH's client exits 255 when the server reports exit-signal
		// rather than an exit-status.
		if r := g.ssh(t, u, proj, "kill -9 $$"); r.code != 255 {
			t.Errorf("kill -9 $$: want 255 (exit-signal), got %s", r)
		}
	})

	t.Run("stdin_eof", func(t *testing.T) {
		r := runSSH(t, 30*time.Second, strings.NewReader("hi\n"), append(g.sshArgs(u.key, proj), "cat")...)
		if r.code != 0 || r.stdout != "hi\n" {
			t.Errorf("echo hi | ssh cat: %s", r)
		}
	})

	t.Run("stderr_separate", func(t *testing.T) {
		r := g.ssh(t, u, proj, "echo out; echo err >&2")
		if r.code != 0 || r.stdout != "out\n" || !strings.Contains(r.stderr, "err") {
			t.Errorf("want stdout %q and err on stderr: %s", "out\n", r)
		}
	})

	t.Run("binary_roundtrip", func(t *testing.T) {
		testBinaryRoundTrip(t, g, u, proj, 50<<20)
	})

	t.Run("pty_size", func(t *testing.T) {
		out := runInPty(t, 33, 111, append([]string{"ssh", "-tt"}, append(g.sshArgs(u.key, proj), "stty size")...))
		if !strings.Contains(out, "33 111") {
			t.Errorf("stty size through ssh -tt: want %q in %q", "33 111", out)
		}
	})
}

func testBinaryRoundTrip(t *testing.T, g *gw, u *user, proj string, size int) {
	dir := t.TempDir()
	src := filepath.Join(dir, "src")
	data := make([]byte, size)
	if _, err := rand.Read(data); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(src, data, 0o644); err != nil {
		t.Fatal(err)
	}
	want := sha256.Sum256(data)

	f, err := os.Open(src)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if r := runSSH(t, 2*time.Minute, f, append(g.sshArgs(u.key, proj), "cat > /workspace/blob")...); r.code != 0 {
		t.Fatalf("upload: %s", r)
	}

	hostCopy := filepath.Join(g.workspace(u, proj), "blob")
	if got := sha256File(t, hostCopy); got != hex.EncodeToString(want[:]) {
		t.Errorf("host copy %s: sha256 %s, want %s", hostCopy, got, hex.EncodeToString(want[:]))
	}
	if uid, gid := fileOwner(t, hostCopy); uid != u.uid || gid != u.gid {
		t.Errorf("host copy owned by %d:%d, want %d:%d", uid, gid, u.uid, u.gid)
	}

	// Download straight into a hash: no 50 MB string in the test.
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, "ssh", append(g.sshArgs(u.key, proj), "cat /workspace/blob")...)
	h := sha256.New()
	var stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = h, &stderr
	if err := cmd.Run(); err != nil {
		t.Fatalf("download: %v\n%s", err, stderr.String())
	}
	if got := hex.EncodeToString(h.Sum(nil)); got != hex.EncodeToString(want[:]) {
		t.Errorf("downloaded sha256 %s, want %s", got, hex.EncodeToString(want[:]))
	}
}

func sha256File(t *testing.T, path string) string {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	h := sha256.New()
	if _, err := io.Copy(h, f); err != nil {
		t.Fatal(err)
	}
	return hex.EncodeToString(h.Sum(nil))
}

// runInPty runs argv on a fresh pseudo-terminal of the given size, using
// util-linux script(1) so the test needs no pty library, and returns what
// appeared on the terminal.
func runInPty(t *testing.T, rows, cols int, argv []string) string {
	t.Helper()
	quoted := make([]string, len(argv))
	for i, a := range argv {
		quoted[i] = shellQuote(a)
	}
	inner := "stty rows " + strconv.Itoa(rows) + " cols " + strconv.Itoa(cols) + "; exec " + strings.Join(quoted, " ")
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, "script", "-q", "-e", "-c", inner, "/dev/null")
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	// Hold stdin open: script forwards EOF on its stdin to the terminal,
	// which would hang up ssh before the remote command prints.
	stdin, err := cmd.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	defer stdin.Close()
	cmd.WaitDelay = 5 * time.Second
	if err := cmd.Run(); err != nil {
		t.Errorf("script %s: %v\n%q", inner, err, out.String())
	}
	return out.String()
}

func shellQuote(s string) string {
	return "'" + strings.ReplaceAll(s, "'", `'\''`) + "'"
}

// keyValues parses key=value lines.
func keyValues(s string) map[string]string {
	m := map[string]string{}
	for _, line := range strings.Split(s, "\n") {
		if k, v, ok := strings.Cut(strings.TrimRight(line, "\r"), "="); ok {
			m[k] = v
		}
	}
	return m
}
