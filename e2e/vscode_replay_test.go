package e2e

import (
	"fmt"
	"io"
	"net"
	"regexp"
	"strings"
	"testing"
)

// TestVSCodeReplay replays how VS Code Remote-SSH uses a host (see
// ../shared/reference/CLIENTS.md): `ssh -T -D <port> host bash` with an
// install script on stdin that starts a server on 127.0.0.1:<port>, prints
// listeningOn==127.0.0.1:NNNN== and keeps the channel open; traffic goes
// through the SOCKS proxy to 127.0.0.1; several connections at once; a
// reconnect within the grace finds the same container and server.
func TestVSCodeReplay(t *testing.T) {
	g := startGateway(t, gwOpts{RetireAfter: "20s"})
	u := g.addUser(t, "vic", 20211, 20211)
	const proj = "vscode"
	const serverPort = 40123

	socks1 := freePort(t)
	script := fmt.Sprintf(`
set -e
uname -s >/dev/null
mkdir -p ~/.vscode-server/bin/commit
nohup sh -c 'while true; do echo vscode-server-ok | nc -l -q0 127.0.0.1 %d; done' >~/.vscode-server/server.log 2>&1 &
sleep 0.5
echo "listeningOn==127.0.0.1:%d=="
while true; do sleep 1; printf ' '; done
`, serverPort, serverPort)
	conn1 := g.startSSH(t, u, proj, "-T", "-D", fmt.Sprintf("127.0.0.1:%d", socks1), "bash")
	if _, err := io.WriteString(conn1.stdin, script); err != nil {
		t.Fatal(err)
	}
	conn1.waitOutput(t, "listeningOn==", timeoutLong)
	m := regexp.MustCompile(`listeningOn==127\.0\.0\.1:(\d+)==`).FindStringSubmatch(conn1.out.String())
	if m == nil || m[1] != fmt.Sprint(serverPort) {
		t.Fatalf("marker: %q", conn1.out.String())
	}
	if strings.Contains(conn1.out.String(), "ds01:") {
		t.Errorf("gateway notices on the exec's stdout break VS Code's parser: %q", conn1.out.String())
	}

	viaSocks := func(port int) string {
		return readFrom(t, func() (net.Conn, error) { return socks5(fmt.Sprintf("127.0.0.1:%d", port), "127.0.0.1", serverPort) })
	}
	if got := viaSocks(socks1); !strings.Contains(got, "vscode-server-ok") {
		t.Fatalf("through the first connection's SOCKS proxy: %q", got)
	}
	// A second connection at the same time reaches the same server.
	socks2 := freePort(t)
	conn2 := g.startSSH(t, u, proj, "-N", "-o", "ExitOnForwardFailure=yes", "-D", fmt.Sprintf("127.0.0.1:%d", socks2))
	if got := viaSocks(socks2); !strings.Contains(got, "vscode-server-ok") {
		t.Fatalf("through a second connection: %q", got)
	}
	before := containers(t, u.uid, proj)
	if len(before) != 1 {
		t.Fatalf("want one shared container, have %v", before)
	}

	// A network blip: both connections drop; VS Code reconnects within the
	// grace and finds its server where it left it.
	conn1.stop()
	conn2.stop()
	socks3 := freePort(t)
	conn3 := g.startSSH(t, u, proj, "-N", "-o", "ExitOnForwardFailure=yes", "-D", fmt.Sprintf("127.0.0.1:%d", socks3))
	defer conn3.stop()
	if got := viaSocks(socks3); !strings.Contains(got, "vscode-server-ok") {
		t.Fatalf("after reconnecting: %q", got)
	}
	if after := containers(t, u.uid, proj); len(after) != 1 || after[0] != before[0] {
		t.Errorf("container before the blip %v, after %v: want the same", before, after)
	}
}
