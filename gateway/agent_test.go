package gateway

import (
	"context"
	"net"
	"path/filepath"
	"regexp"
	"testing"
)

// Without a socket directory on the host (a pod on another node), the
// agent socket is listened on inside the container, under its socket
// directory, with a fresh unguessable name each time.
func TestAgentListenerInsideContainer(t *testing.T) {
	f := newFakeSessions()
	dir := t.TempDir()
	var asked []string
	f.listen = func(network, addr string) (net.Listener, error) {
		if network != "unix" {
			t.Errorf("network %q, want unix", network)
		}
		asked = append(asked, addr)
		return net.Listen("unix", filepath.Join(dir, filepath.Base(addr)))
	}
	lease := &fakeLease{f: f}
	ln, path, err := agentListener(context.Background(), lease)
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	if !regexp.MustCompile(`^/run/ds01/agent-[0-9a-f]{16}\.sock$`).MatchString(path) {
		t.Errorf("socket path %q", path)
	}
	if len(asked) != 1 || asked[0] != path {
		t.Errorf("listened on %v, want [%s]", asked, path)
	}
	ln2, path2, err := agentListener(context.Background(), lease)
	if err != nil {
		t.Fatal(err)
	}
	ln2.Close()
	if path2 == path {
		t.Error("two agent sockets share a name")
	}
}
