package e2e

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// `ssh -A`: inside the container SSH_AUTH_SOCK reaches this client's agent;
// nobody else's container has the socket; without -A there is none.
func TestAgentForwarding(t *testing.T) {
	g := startGateway(t, gwOpts{})
	a := g.addUser(t, "ada", 20181, 20181)
	b := g.addUser(t, "bob", 20182, 20182)
	const proj = "agent"

	sock := filepath.Join(t.TempDir(), "agent.sock")
	agent := exec.Command("ssh-agent", "-D", "-a", sock)
	if err := agent.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { agent.Process.Kill(); agent.Wait() })
	for deadline := time.Now().Add(5 * time.Second); ; {
		if _, err := os.Stat(sock); err == nil {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("ssh-agent did not start")
		}
		time.Sleep(20 * time.Millisecond)
	}
	add := exec.Command("ssh-add", a.key)
	add.Env = append(os.Environ(), "SSH_AUTH_SOCK="+sock)
	if out, err := add.CombinedOutput(); err != nil {
		t.Fatalf("ssh-add: %v %s", err, out)
	}

	// Ask the forwarded agent for its identities (SSH_AGENTC_REQUEST_IDENTITIES)
	// with nc, which the base image has; the answer names the key type.
	hold := exec.Command("ssh", append(g.sshArgs(a.key, proj, "-A"),
		`printf '\0\0\0\1\13' > /tmp/req; timeout 5 nc -U "$SSH_AUTH_SOCK" < /tmp/req | od -An -c | tr -d ' \n'; echo; ls /run/ds01; sleep 5`)...)
	hold.Env = append(os.Environ(), "SSH_AUTH_SOCK="+sock)
	var out syncBuffer
	hold.Stdout, hold.Stderr = &out, &out
	if err := hold.Start(); err != nil {
		t.Fatal(err)
	}
	defer hold.Process.Kill()
	deadline := time.Now().Add(timeoutLong)
	for !strings.Contains(out.String(), "agent-") {
		if time.Now().After(deadline) {
			t.Fatalf("no agent answer: %q", out.String())
		}
		time.Sleep(50 * time.Millisecond)
	}
	if !strings.Contains(out.String(), "ssh-ed25519") {
		t.Errorf("the forwarded agent did not list the key: %q", out.String())
	}
	// While ada's socket exists, bob's container has none.
	if got := g.mustSSH(t, b, proj, "ls -A /run/ds01; echo end"); strings.Contains(got, "agent-") {
		t.Errorf("bob's container sees an agent socket: %q", got)
	}
	hold.Wait()
	if got := g.mustSSH(t, a, proj, `echo "${SSH_AUTH_SOCK:-unset}"; ls -A /run/ds01 | grep -c agent- || true`); got != "unset\n0\n" {
		t.Errorf("without -A, and after the -A session ended: %q", got)
	}
}
