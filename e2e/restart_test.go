package e2e

import (
	"context"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"
)

// Host keys are generated once and kept: clients must not see a changed key
// after a restart. Everything under data_dir but public keys is private to root.
func TestHostKeysStableAcrossRestart(t *testing.T) {
	g := startGateway(t, gwOpts{})
	before := hostKeys(t, g)
	for _, typ := range []string{"ssh-ed25519 ", "ssh-rsa "} {
		if !slices.ContainsFunc(before, func(k string) bool { return strings.Contains(k, " "+typ) }) {
			t.Errorf("no %s host key offered: %q", strings.TrimSpace(typ), before)
		}
	}
	// No ECDSA (NIST curve) host key by default: audits fail it.
	if slices.ContainsFunc(before, func(k string) bool { return strings.Contains(k, " ecdsa-sha2-") }) {
		t.Errorf("an ECDSA host key is offered: %q", before)
	}
	g.restart(t)
	if after := hostKeys(t, g); !slices.Equal(before, after) {
		t.Errorf("host keys changed across restart:\nbefore %q\nafter  %q", before, after)
	}

	err := filepath.WalkDir(g.dataDir, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if !d.Type().IsRegular() {
			return nil
		}
		fi, err := d.Info()
		if err != nil {
			return err
		}
		// Public halves of host keys may be world-readable, as sshd's are.
		if fi.Mode().Perm()&0o077 != 0 && !strings.HasSuffix(path, ".pub") {
			t.Errorf("%s: mode %v, want 0600 (no group/other access)", path, fi.Mode().Perm())
		}
		return nil
	})
	if err != nil {
		t.Errorf("walk data_dir: %v", err)
	}
}

// hostKeys returns the sorted `ssh-keyscan` lines for ed25519, ecdsa, rsa.
func hostKeys(t *testing.T, g *gw) []string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), timeoutShort)
	defer cancel()
	out, err := exec.CommandContext(ctx, "ssh-keyscan", "-T", "10", "-p", strconv.Itoa(g.port),
		"-t", "ed25519,ecdsa,rsa", "127.0.0.1").Output()
	if err != nil {
		t.Fatalf("ssh-keyscan: %v", err)
	}
	var keys []string
	for _, line := range strings.Split(string(out), "\n") {
		if line != "" && !strings.HasPrefix(line, "#") {
			keys = append(keys, line)
		}
	}
	slices.Sort(keys)
	if len(keys) == 0 {
		t.Fatalf("ssh-keyscan returned no keys")
	}
	return keys
}

// After a crash (kill -9) the next gateway reconciles: containers left
// behind are retired, workspaces are untouched.
func TestRestartAfterKill9(t *testing.T) {
	g := startGateway(t, gwOpts{})
	u := g.addUser(t, "kira", 20101, 20101)
	const proj = "crash"

	g.mustSSH(t, u, proj, "echo before-crash > /workspace/f")
	// cat ends when the gateway dies (its stdin, a FIFO the gateway
	// held, reaches EOF): nothing of the user's is left running, so the
	// adopted container is an orphan. (Work that survives a kill -9 keeps
	// its container: TestLifecycleKill9KeepsDetachedJob.)
	bg := g.startSSH(t, u, proj, "echo started; cat >/dev/null")
	bg.waitOutput(t, "started", timeoutShort)
	if ids := containers(t, u.uid, proj); len(ids) != 1 {
		t.Fatalf("want 1 container while logged in, have %v", ids)
	}

	g.kill9(t)
	bg.stop()
	g.start(t)

	// The orphan has no connection: it must go within retire_after (plus
	// slack for the restart and Docker).
	waitContainers(t, u.uid, proj, 0, g.retire+15*time.Second)

	b, err := os.ReadFile(filepath.Join(g.workspace(u, proj), "f"))
	if err != nil || string(b) != "before-crash\n" {
		t.Errorf("workspace file after crash: %q, %v", b, err)
	}
	if out := g.mustSSH(t, u, proj, "cat /workspace/f"); out != "before-crash\n" {
		t.Errorf("login after restart: cat = %q", out)
	}
}

// A gateway restart within the grace keeps the user's container: the new
// gateway adopts it, and a reconnect lands in the same container with the
// same login shell and streams.
func TestReconnectAfterRestartReusesContainer(t *testing.T) {
	g := startGateway(t, gwOpts{RetireAfter: "20s"})
	u := g.addUser(t, "rhea", 20111, 20111)
	const proj = "adopt"

	g.mustSSH(t, u, proj, "echo hello > /tmp/in-container")
	before := containers(t, u.uid, proj)
	if len(before) != 1 {
		t.Fatalf("want 1 container, have %v", before)
	}
	g.kill9(t)
	g.start(t)

	r := runSSH(t, timeoutShort, strings.NewReader("echo $BASH_VERSION; cat /tmp/in-container\n"), g.sshArgs(u.key, proj, "-T")...)
	if r.code != 0 || !strings.Contains(r.stdout, "hello") || strings.HasPrefix(r.stdout, "\n") {
		t.Errorf("shell in the adopted container: want bash and the old /tmp: %s", r)
	}
	if after := containers(t, u.uid, proj); len(after) != 1 || after[0] != before[0] {
		t.Errorf("container before restart %v, after %v: want the same", before, after)
	}
}
