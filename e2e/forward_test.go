package e2e

import (
	"bufio"
	"encoding/binary"
	"fmt"
	"io"
	"net"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

// serveInContainer starts a loop in the user's container that answers each
// connection to 127.0.0.1:port (the container's loopback) with msg.
func serveInContainer(t *testing.T, g *gw, u *user, proj string, port int, msg string) *bgSSH {
	t.Helper()
	b := g.startSSH(t, u, proj, fmt.Sprintf(`echo up; while true; do echo %s | nc -l -q0 127.0.0.1 %d; done`, msg, port))
	b.waitOutput(t, "up", timeoutLong)
	// nc needs a moment to listen after the loop starts.
	deadline := time.Now().Add(10 * time.Second)
	for !strings.Contains(g.mustSSH(t, u, proj, "cat /proc/net/tcp"), fmt.Sprintf(":%04X 00000000:0000 0A", port)) {
		if time.Now().After(deadline) {
			t.Fatalf("nothing listens on %d in the container", port)
		}
		time.Sleep(50 * time.Millisecond)
	}
	return b
}

func TestLocalForwardIntoContainer(t *testing.T) {
	g := startGateway(t, gwOpts{})
	u := g.addUser(t, "fern", 20141, 20141)
	const proj = "fwd"
	serveInContainer(t, g, u, proj, 8080, "hello-from-container")

	t.Run("W", func(t *testing.T) {
		for _, host := range []string{"127.0.0.1", "localhost", proj} {
			r := runSSH(t, timeoutShort, nil, g.sshArgs(u.key, proj, "-W", host+":8080")...)
			if !strings.Contains(r.stdout, "hello-from-container") {
				t.Errorf("ssh -W %s:8080: %s", host, r)
			}
		}
	})

	t.Run("L", func(t *testing.T) {
		port := freePort(t)
		b := g.startSSH(t, u, proj, "-N", "-o", "ExitOnForwardFailure=yes", "-L", fmt.Sprintf("127.0.0.1:%d:127.0.0.1:8080", port))
		defer b.stop()
		if got := readFrom(t, func() (net.Conn, error) { return net.Dial("tcp", fmt.Sprintf("127.0.0.1:%d", port)) }); !strings.Contains(got, "hello-from-container") {
			t.Errorf("ssh -L: read %q", got)
		}
	})

	t.Run("D", func(t *testing.T) {
		port := freePort(t)
		b := g.startSSH(t, u, proj, "-N", "-o", "ExitOnForwardFailure=yes", "-D", fmt.Sprintf("127.0.0.1:%d", port))
		defer b.stop()
		got := readFrom(t, func() (net.Conn, error) { return socks5(fmt.Sprintf("127.0.0.1:%d", port), "127.0.0.1", 8080) })
		if !strings.Contains(got, "hello-from-container") {
			t.Errorf("ssh -D: read %q", got)
		}
	})
}

// Forwarding anywhere but the container's own loopback is refused, and the
// target never sees a connection.
func TestForwardRefusals(t *testing.T) {
	g := startGateway(t, gwOpts{})
	a := g.addUser(t, "gail", 20151, 20151)
	b := g.addUser(t, "hugo", 20152, 20152)
	const proj = "fwd"
	serveInContainer(t, g, b, proj, 8080, "hugo-secret")
	bIP := strings.TrimSpace(docker(t, "inspect", "-f", "{{range .NetworkSettings.Networks}}{{.IPAddress}}{{end}}", containers(t, b.uid, proj)[0]))

	host, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer host.Close()
	hostPort := host.Addr().(*net.TCPAddr).Port
	accepted := make(chan struct{}, 1)
	go func() {
		if c, err := host.Accept(); err == nil {
			c.Close()
			accepted <- struct{}{}
		}
	}()

	for _, dest := range []string{
		fmt.Sprintf("127.0.0.1:%d", hostPort), // the gateway host's own service: not in the container
		bIP + ":8080",                         // another user's container
		"10.0.0.1:80",                         // any other network
		"[2001:db8::1]:80",
	} {
		r := runSSH(t, timeoutShort, nil, g.sshArgs(a.key, proj, "-W", dest)...)
		if r.code == 0 || strings.Contains(r.stdout, "hugo-secret") {
			t.Errorf("ssh -W %s as gail: %s", dest, r)
		}
	}
	select {
	case <-accepted:
		t.Error("the host's own 127.0.0.1 service received a connection")
	case <-time.After(500 * time.Millisecond):
	}
	if !strings.Contains(g.out.String(), "forward refused") {
		t.Error("refused forwards are not logged")
	}
}

// Keepalives both ways: the client's are answered; a client that stops
// answering the server's is dropped, and its container retires.
func TestKeepalives(t *testing.T) {
	g := startGateway(t, gwOpts{Extra: map[string]string{"keepalive_interval": "1s", "keepalive_count": "2"}})
	u := g.addUser(t, "ivy", 20161, 20161)
	const proj = "alive"

	r := runSSH(t, timeoutLong, nil, append(g.sshArgs(u.key, proj, "-o", "ServerAliveInterval=1", "-o", "ServerAliveCountMax=1"), "sleep 4")...)
	if r.code != 0 {
		t.Fatalf("a session with client keepalives every second: %s", r)
	}

	b := g.startSSH(t, u, proj, "echo up; sleep 120")
	b.waitOutput(t, "up", timeoutLong)
	// A frozen client keeps its TCP connection open but answers nothing,
	// like a laptop whose network vanished.
	if err := b.cmd.Process.Signal(syscall.SIGSTOP); err != nil {
		t.Fatal(err)
	}
	defer b.cmd.Process.Signal(syscall.SIGCONT)
	waitContainers(t, u.uid, proj, 0, 3*time.Second+g.retire+15*time.Second)
}

func readFrom(t *testing.T, dial func() (net.Conn, error)) string {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		c, err := dial()
		if err == nil {
			c.SetDeadline(time.Now().Add(10 * time.Second))
			b, _ := io.ReadAll(c)
			c.Close()
			if len(b) > 0 {
				return string(b)
			}
		}
		if time.Now().After(deadline) {
			return fmt.Sprintf("(nothing: %v)", err)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// socks5 opens a CONNECT to host:port through a SOCKS5 proxy, the way VS
// Code's traffic goes through `ssh -D`.
func socks5(proxy, host string, port int) (net.Conn, error) {
	c, err := net.Dial("tcp", proxy)
	if err != nil {
		return nil, err
	}
	c.SetDeadline(time.Now().Add(10 * time.Second))
	br := bufio.NewReader(c)
	if _, err := c.Write([]byte{5, 1, 0}); err != nil {
		c.Close()
		return nil, err
	}
	hello := make([]byte, 2)
	if _, err := io.ReadFull(br, hello); err != nil || hello[1] != 0 {
		c.Close()
		return nil, fmt.Errorf("socks hello: %v %v", hello, err)
	}
	req := append([]byte{5, 1, 0, 3, byte(len(host))}, host...)
	req = binary.BigEndian.AppendUint16(req, uint16(port))
	if _, err := c.Write(req); err != nil {
		c.Close()
		return nil, err
	}
	reply := make([]byte, 10)
	if _, err := io.ReadFull(br, reply); err != nil || reply[1] != 0 {
		c.Close()
		return nil, fmt.Errorf("socks connect: %v %v", reply, err)
	}
	return &bufConn{Conn: c, r: br}, nil
}

type bufConn struct {
	net.Conn
	r *bufio.Reader
}

func (b *bufConn) Read(p []byte) (int, error) { return b.r.Read(p) }

// `ssh -L /local.sock:/path/in/container.sock` reaches a unix socket
// inside the container.
func TestUnixSocketForward(t *testing.T) {
	g := startGateway(t, gwOpts{})
	u := g.addUser(t, "uri", 20191, 20191)
	const proj = "usock"
	srv := g.startSSH(t, u, proj, `echo up; while true; do echo via-unix-socket | nc -lU -q0 /tmp/app.sock; rm -f /tmp/app.sock; done`)
	srv.waitOutput(t, "up", timeoutLong)
	local := filepath.Join(t.TempDir(), "app.sock")
	b := g.startSSH(t, u, proj, "-N", "-o", "ExitOnForwardFailure=yes", "-L", local+":/tmp/app.sock")
	defer b.stop()
	got := readFrom(t, func() (net.Conn, error) { return net.Dial("unix", local) })
	if !strings.Contains(got, "via-unix-socket") {
		t.Errorf("unix socket forward: read %q", got)
	}
}

// `ssh -R` listens inside the user's container, never on the gateway
// host, and goes away when the client disconnects.
func TestRemoteForwardInsideContainer(t *testing.T) {
	g := startGateway(t, gwOpts{RetireAfter: "20s"})
	u := g.addUser(t, "rex", 20201, 20201)
	const proj = "rfwd"
	checkRemoteForward(t, g, u, proj, 10*time.Second)
}

// checkRemoteForward runs `ssh -R` to a server on the laptop: the port
// answers inside u's container, is not open on the gateway host, and is
// gone within gone after its connection ends.
func checkRemoteForward(t *testing.T, g *gw, u *user, proj string, gone time.Duration) {
	t.Helper()
	laptop, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer laptop.Close()
	go func() {
		for {
			c, err := laptop.Accept()
			if err != nil {
				return
			}
			io.WriteString(c, "from-laptop\n")
			c.Close()
		}
	}()
	lport := laptop.Addr().(*net.TCPAddr).Port
	const rport = 9001
	b := g.startSSH(t, u, proj, "-N", "-o", "ExitOnForwardFailure=yes", "-R", fmt.Sprintf("%d:127.0.0.1:%d", rport, lport))
	deadline := time.Now().Add(timeoutLong)
	for {
		out := g.ssh(t, u, proj, fmt.Sprintf("nc -q1 127.0.0.1 %d </dev/null", rport)).stdout
		if strings.Contains(out, "from-laptop") {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the -R port never answered inside the container: %q", out)
		}
		time.Sleep(200 * time.Millisecond)
	}
	if c, err := net.DialTimeout("tcp", fmt.Sprintf("127.0.0.1:%d", rport), time.Second); err == nil {
		c.Close()
		t.Error("the -R port is open on the gateway host")
	}
	b.stop()
	deadline = time.Now().Add(gone)
	for g.ssh(t, u, proj, fmt.Sprintf("nc -z -w1 127.0.0.1 %d", rport)).code == 0 {
		if time.Now().After(deadline) {
			t.Fatal("the -R port outlived its connection")
		}
		time.Sleep(200 * time.Millisecond)
	}
}
