package e2e

import (
	"fmt"
	"net"
	"os"
	"strings"
	"testing"
	"time"
)

// E2E uids of these tests: 21200-21299.

// A forward_allow'd host name is resolved by the gateway, then dialled
// from inside the container: a name that means 127.0.0.1 on the host
// reaches the container's loopback, never a service on the host's.
func TestForwardAllowNameDialledInContainer(t *testing.T) {
	name, err := os.Hostname()
	if err != nil {
		t.Fatal(err)
	}
	addrs, err := net.LookupHost(name)
	if err != nil || len(addrs) == 0 || !net.ParseIP(addrs[0]).IsLoopback() {
		t.Skipf("this host's name %q does not resolve to the loopback (%v %v)", name, addrs, err)
	}
	port := freePort(t)
	host, err := net.Listen("tcp", fmt.Sprintf("127.0.0.1:%d", port))
	if err != nil {
		t.Fatal(err)
	}
	defer host.Close()
	accepted := make(chan struct{}, 1)
	go func() {
		if c, err := host.Accept(); err == nil {
			c.Write([]byte("host-secret\n"))
			c.Close()
			accepted <- struct{}{}
		}
	}()

	g := startGateway(t, gwOpts{Extra: map[string]string{"forward_allow": fmt.Sprintf("[%q]", name)}})
	u := g.addUser(t, "fay", 21201, 21201)
	const proj = "allow"
	serveInContainer(t, g, u, proj, port, "from-container")
	r := runSSH(t, timeoutShort, nil, g.sshArgs(u.key, proj, "-W", fmt.Sprintf("%s:%d", name, port))...)
	if !strings.Contains(r.stdout, "from-container") {
		t.Errorf("ssh -W %s:%d: %s", name, port, r)
	}
	select {
	case <-accepted:
		t.Error("the forward reached the host's own loopback service")
	case <-time.After(300 * time.Millisecond):
	}
}
