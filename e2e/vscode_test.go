package e2e

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// ~/.vscode-server outlives containers (VS Code must not fetch its server
// again, and cannot without internet) and is writable over SFTP at the
// same path; the rest of $HOME goes with the container.
func TestVSCodeServerDirPersists(t *testing.T) {
	g := startGateway(t, gwOpts{})
	u := g.addUser(t, "vera", 20171, 20171)
	const proj = "code"

	g.mustSSH(t, u, proj, "echo server-bits > ~/.vscode-server/marker && touch ~/scratch")
	waitContainers(t, u.uid, proj, 0, g.retire+15*time.Second)

	out := g.mustSSH(t, u, proj, "cat ~/.vscode-server/marker; ls -A ~")
	if !strings.Contains(out, "server-bits") {
		t.Errorf("~/.vscode-server did not survive the retire: %q", out)
	}
	if strings.Contains(out, "scratch") {
		t.Errorf("the rest of $HOME must not persist: %q", out)
	}

	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "server.tar.gz"), []byte("tarball"), 0o644); err != nil {
		t.Fatal(err)
	}
	g.mustSFTP(t, u, proj, dir, "put server.tar.gz /home/vera/.vscode-server/server.tar.gz\n")
	if out := g.mustSSH(t, u, proj, "cat ~/.vscode-server/server.tar.gz; stat -c %u ~/.vscode-server/server.tar.gz"); out != "tarball20171\n" {
		t.Errorf("uploaded over SFTP, read in the container: %q", out)
	}
}
