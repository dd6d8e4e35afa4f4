//go:build kube

package e2e

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// -R and -A on the Kubernetes runtime go through the pod's helper sidecar:
// the -R port listens inside the pod (not on the gateway host) and goes away
// with its connection; the agent socket appears in the pod's /run/ds01 and
// answers with the laptop's key.
func TestKubeRemoteForwardAndAgent(t *testing.T) {
	t.Parallel()
	g := startKubeGateway(t, gwOpts{RetireAfter: "30s"})
	u := g.addKubeUser(t, "rio", 28461)
	const proj = "rfwd"

	checkRemoteForward(t, g, u, proj, 15*time.Second)

	sock := filepath.Join(t.TempDir(), "agent.sock")
	agent := exec.Command("ssh-agent", "-D", "-a", sock)
	if err := agent.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { agent.Process.Kill(); agent.Wait() })
	for deadline := time.Now().Add(5 * time.Second); ; time.Sleep(20 * time.Millisecond) {
		if _, err := os.Stat(sock); err == nil {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("ssh-agent did not start")
		}
	}
	add := exec.Command("ssh-add", u.key)
	add.Env = append(os.Environ(), "SSH_AUTH_SOCK="+sock)
	if out, err := add.CombinedOutput(); err != nil {
		t.Fatalf("ssh-add: %v %s", err, out)
	}
	// SSH_AGENTC_REQUEST_IDENTITIES through nc; the answer names the key type.
	cmd := exec.Command("ssh", append(g.sshArgs(u.key, proj, "-A"),
		`printf '\0\0\0\1\13' > /tmp/req; timeout 10 nc -U "$SSH_AUTH_SOCK" < /tmp/req | od -An -c | tr -d ' \n'; echo; stat -c '%a %u' "$SSH_AUTH_SOCK"`)...)
	cmd.Env = append(os.Environ(), "SSH_AUTH_SOCK="+sock)
	out, err := cmd.CombinedOutput()
	if err != nil || !strings.Contains(string(out), "ssh-ed25519") {
		t.Fatalf("the forwarded agent did not list the key: %v %q", err, out)
	}
	if !strings.Contains(string(out), fmt.Sprintf("600 %d", u.uid)) {
		t.Errorf("agent socket not the user's alone (want 600 %d): %q", u.uid, out)
	}
}
