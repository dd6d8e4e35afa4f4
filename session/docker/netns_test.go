package docker

import (
	"context"
	"encoding/binary"
	"io"
	"net"
	"os"
	"runtime"
	"runtime/pprof"
	"strconv"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// newNetNS makes a fresh network namespace with its loopback up, as a
// container has, and returns a handle on it. It needs root.
func newNetNS(t *testing.T) *os.File {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("needs root to make a network namespace")
	}
	type result struct {
		f   *os.File
		err error
	}
	c := make(chan result, 1)
	go func() {
		// The thread is left in the new namespace and never unlocked: it
		// ends with this goroutine.
		runtime.LockOSThread()
		if err := unix.Unshare(unix.CLONE_NEWNET); err != nil {
			c <- result{err: err}
			return
		}
		f, err := os.Open("/proc/thread-self/ns/net")
		if err == nil {
			err = loopbackUp()
		}
		c <- result{f, err}
	}()
	r := <-c
	if r.err != nil {
		t.Skipf("cannot make a network namespace: %v", r.err)
	}
	t.Cleanup(func() { r.f.Close() })
	return r.f
}

func loopbackUp() error {
	fd, err := unix.Socket(unix.AF_INET, unix.SOCK_DGRAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return err
	}
	defer unix.Close(fd)
	ifr, err := unix.NewIfreq("lo")
	if err != nil {
		return err
	}
	if err := unix.IoctlIfreq(fd, unix.SIOCGIFFLAGS, ifr); err != nil {
		return err
	}
	ifr.SetUint16(ifr.Uint16() | unix.IFF_UP)
	return unix.IoctlIfreq(fd, unix.SIOCSIFFLAGS, ifr)
}

// banner listens on addr and answers each connection with msg.
func banner(t *testing.T, listen func() (net.Listener, error), msg string) net.Listener {
	t.Helper()
	ln, err := listen()
	if err != nil {
		t.Fatalf("listen for %q: %v", msg, err)
	}
	t.Cleanup(func() { ln.Close() })
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			c.Write([]byte(msg))
			c.Close()
		}
	}()
	return ln
}

// fakeDNS answers every A query with 127.0.0.1 and every AAAA query with
// ::1, like a name that both families resolve to the loopback.
func fakeDNS(t *testing.T) *net.Resolver {
	t.Helper()
	pc, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { pc.Close() })
	go func() {
		buf := make([]byte, 512)
		for {
			n, from, err := pc.ReadFrom(buf)
			if err != nil {
				return
			}
			if resp := dnsAnswer(buf[:n]); resp != nil {
				pc.WriteTo(resp, from)
			}
		}
	}()
	addr := pc.LocalAddr().String()
	return &net.Resolver{PreferGo: true, Dial: func(ctx context.Context, _, _ string) (net.Conn, error) {
		var d net.Dialer
		return d.DialContext(ctx, "udp", addr)
	}}
}

func dnsAnswer(q []byte) []byte {
	if len(q) < 12 {
		return nil
	}
	i := 12
	for i < len(q) && q[i] != 0 {
		i += int(q[i]) + 1
	}
	if i+5 > len(q) {
		return nil
	}
	question := q[12 : i+5]
	qtype := binary.BigEndian.Uint16(q[i+1:])
	var rdata []byte
	switch qtype {
	case 1: // A
		rdata = net.IPv4(127, 0, 0, 1).To4()
	case 28: // AAAA
		rdata = net.IPv6loopback
	}
	resp := append([]byte{}, q[:2]...)
	resp = append(resp, 0x81, 0x80, 0, 1, 0, 0, 0, 0, 0, 0) // response, no error; 1 question
	if rdata != nil {
		resp[7] = 1 // one answer
	}
	resp = append(resp, question...)
	if rdata != nil {
		resp = append(resp, 0xc0, 12) // the question's name
		resp = binary.BigEndian.AppendUint16(resp, qtype)
		resp = append(resp, 0, 1, 0, 0, 0, 60) // IN, TTL 60
		resp = binary.BigEndian.AppendUint16(resp, uint16(len(rdata)))
		resp = append(resp, rdata...)
	}
	return resp
}

func readAll(t *testing.T, c net.Conn) string {
	t.Helper()
	defer c.Close()
	c.SetReadDeadline(time.Now().Add(5 * time.Second))
	b, err := io.ReadAll(c)
	if err != nil {
		t.Fatalf("read: %v", err)
	}
	return string(b)
}

// A forward_allow'd name that resolves to both 127.0.0.1 and ::1 reaches
// the container's loopback, never the host's: with Go's dialer, the IPv4
// and IPv6 attempts ran on goroutines outside the namespace and reached
// the host's listeners.
func TestDialInNamespace(t *testing.T) {
	ns := newNetNS(t)
	var port int
	for _, family := range []struct{ network, loopback string }{{"tcp4", "127.0.0.1"}, {"tcp6", "[::1]"}} {
		listen := func() (net.Listener, error) {
			return net.Listen(family.network, family.loopback+":"+strconv.Itoa(port))
		}
		var inside net.Listener
		if err := onNetNS(ns, func() error {
			var err error
			inside, err = listen()
			return err
		}); err != nil {
			t.Skipf("listen in the namespace: %v", err)
		}
		inside.Close()
		if port == 0 {
			port = inside.Addr().(*net.TCPAddr).Port
		}
		banner(t, func() (net.Listener, error) {
			var ln net.Listener
			err := onNetNS(ns, func() error {
				var err error
				ln, err = listen()
				return err
			})
			return ln, err
		}, "container")
		probe, err := net.Listen(family.network, family.loopback+":0")
		if err != nil {
			t.Skipf("host has no %s loopback: %v", family.network, err)
		}
		probe.Close()
		banner(t, listen, "host")
	}
	r := fakeDNS(t)
	ctx := context.Background()
	for _, addr := range []string{"dual.example:" + strconv.Itoa(port), "127.0.0.1:" + strconv.Itoa(port), "[::1]:" + strconv.Itoa(port)} {
		for range 20 { // the old dialer's races went either way
			c, err := dialIn(ctx, ns, r, "tcp", addr)
			if err != nil {
				t.Fatalf("dial %s: %v", addr, err)
			}
			if got := readAll(t, c); got != "container" {
				t.Fatalf("dial %s reached %q, want the container's listener", addr, got)
			}
		}
	}
}

// Dials to a listener in the container that never accepts hold their
// goroutines only: no OS thread waits in the namespace for them, and each
// gives up with its context.
func TestDialInNamespaceNoThreadPinned(t *testing.T) {
	ns := newNetNS(t)
	var ln net.Listener
	if err := onNetNS(ns, func() error {
		var err error
		ln, err = net.Listen("tcp4", "127.0.0.1:0")
		return err
	}); err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	addr := ln.Addr().String()
	// Fill the accept queue: further SYNs are dropped and connects hang.
	var held []net.Conn
	defer func() {
		for _, c := range held {
			c.Close()
		}
	}()
	for range 4096 {
		cctx, ccancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
		c, err := dialIn(cctx, ns, net.DefaultResolver, "tcp", addr)
		ccancel()
		if err != nil {
			break
		}
		held = append(held, c)
	}

	const dials = 64
	threads := pprof.Lookup("threadcreate")
	before := threads.Count()
	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	start := time.Now()
	errs := make(chan error, dials)
	for range dials {
		go func() {
			c, err := dialIn(ctx, ns, net.DefaultResolver, "tcp", addr)
			if c != nil {
				c.Close()
			}
			errs <- err
		}()
	}
	failed := 0
	for range dials {
		if <-errs != nil {
			failed++
		}
	}
	if failed == 0 {
		t.Skip("the accept queue never filled")
	}
	if d := time.Since(start); d > 3*time.Second {
		t.Errorf("dials to a listener that never accepts took %v despite their context", d)
	}
	if n := threads.Count() - before; n > dials/4 {
		t.Errorf("%d hanging dials created %d OS threads", failed, n)
	}
}
