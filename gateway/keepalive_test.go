package gateway

import (
	"fmt"
	"net"
	"strings"
	"sync"
	"syscall"
	"testing"
	"testing/synctest"
	"time"

	gossh "golang.org/x/crypto/ssh"
	"golang.org/x/sys/unix"
)

// fakePeer is a client as the keepalive scheduler sees it.
type fakePeer struct {
	c *keepaliveConn

	mu          sync.Mutex
	handshaking bool
	answers     bool // replies to keepalives
	pings       int
	lostHow     string
	ends        chan struct{}
}

func (p *fakePeer) ended() bool {
	select {
	case <-p.ends:
		return true
	default:
		return false
	}
}

func (p *fakePeer) ready() bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	return !p.handshaking
}

func (p *fakePeer) ping() {
	p.mu.Lock()
	p.pings++
	answers := p.answers
	p.mu.Unlock()
	if answers {
		p.c.heard.Store(true) // the reply's bytes, read through the conn
		return
	}
	<-p.ends
}

func (p *fakePeer) lost(how string) {
	p.mu.Lock()
	p.lostHow = how
	p.mu.Unlock()
	p.end()
}

func (p *fakePeer) end() {
	select {
	case <-p.ends:
	default:
		close(p.ends)
	}
}

func (p *fakePeer) state() (pings int, lost string) {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.pings, p.lostHow
}

const (
	testInterval = 15 * time.Second
	testCount    = 3
)

// watch adds a fake connection to k; the test's end removes it, which
// lets the scheduler's goroutine end (synctest insists).
func watch(t *testing.T, k *keepalives, probed, answers bool) *fakePeer {
	p := &fakePeer{answers: answers, ends: make(chan struct{})}
	p.c = &keepaliveConn{peer: p, probed: probed, index: -1}
	k.add(p.c)
	t.Cleanup(func() {
		p.end()
		k.remove(p.c)
	})
	return p
}

// Without kernel probes, a client that answers nothing is dropped count
// intervals after the first unanswered keepalive, as before the
// scheduler: 4 intervals (60 s) after it last spoke at the defaults.
func TestKeepaliveDropsSilentClient(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		k := newKeepalives(testInterval, testCount)
		p := watch(t, k, false, false)
		time.Sleep((1+testCount)*testInterval - time.Millisecond)
		synctest.Wait()
		if pings, lost := p.state(); lost != "" || pings != 1 {
			t.Fatalf("before %v: lost %q after %d keepalives, want kept after 1", (1+testCount)*testInterval, lost, pings)
		}
		time.Sleep(2 * time.Millisecond)
		synctest.Wait()
		if _, lost := p.state(); lost != "ssh" {
			t.Fatalf("after %v: lost %q, want dropped for unanswered ssh keepalives", (1+testCount)*testInterval, lost)
		}
	})
}

// A client that answers is never dropped; one whose bytes keep coming
// (a session in use) is sent no keepalive at all.
func TestKeepaliveKeepsAnsweringAndBusyClients(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		k := newKeepalives(testInterval, testCount)
		answering := watch(t, k, false, true)
		busy := watch(t, k, false, false)
		stop := make(chan struct{})
		go func() { // the busy client types every 5 s
			for {
				select {
				case <-stop:
					return
				case <-time.After(5 * time.Second):
					busy.c.heard.Store(true)
				}
			}
		}()
		time.Sleep(20 * testInterval)
		close(stop)
		synctest.Wait()
		if pings, lost := answering.state(); lost != "" || pings < 9 {
			t.Errorf("answering client: lost %q, %d keepalives in 20 intervals; want kept, about 10", lost, pings)
		}
		if pings, lost := busy.state(); lost != "" || pings != 0 {
			t.Errorf("busy client: lost %q, %d keepalives; want kept, none", lost, pings)
		}
	})
}

// With the kernel probing the connection, a silent client gets an SSH
// keepalive only every sparseKeepalives intervals, and one whose SSH
// client hangs (its kernel still answers the probes) is still dropped.
func TestKeepaliveSparseWhenKernelProbes(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		k := newKeepalives(testInterval, testCount)
		answering := watch(t, k, true, true)
		hung := watch(t, k, true, false)
		time.Sleep((sparseKeepalives+testCount)*testInterval - time.Millisecond)
		synctest.Wait()
		if pings, lost := answering.state(); lost != "" || pings != 1 {
			t.Errorf("answering client after %d intervals: lost %q, %d keepalives, want 1", sparseKeepalives+testCount, lost, pings)
		}
		if pings, lost := hung.state(); lost != "" || pings != 1 {
			t.Errorf("hung client after %d intervals: lost %q, %d keepalives; want kept, 1", sparseKeepalives+testCount, lost, pings)
		}
		time.Sleep(2 * time.Millisecond)
		synctest.Wait()
		if _, lost := hung.state(); lost != "ssh" {
			t.Errorf("hung client: lost %q, want dropped after %d intervals", lost, sparseKeepalives+testCount)
		}
		time.Sleep(2 * sparseKeepalives * testInterval)
		synctest.Wait()
		if pings, lost := answering.state(); lost != "" || pings != 3 {
			t.Errorf("answering client after %d intervals: lost %q, %d keepalives, want 3", 3*sparseKeepalives+testCount, lost, pings)
		}
	})
}

// A connection still in its handshake gets no keepalive (the handshake
// timeout bounds it), and one that ended leaves the schedule: with none
// left the scheduler's goroutine ends.
func TestKeepaliveHandshakeAndEnd(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		k := newKeepalives(testInterval, testCount)
		p := watch(t, k, false, false)
		p.mu.Lock()
		p.handshaking = true
		p.mu.Unlock()
		time.Sleep(10 * testInterval)
		synctest.Wait()
		if pings, lost := p.state(); pings != 0 || lost != "" {
			t.Fatalf("during the handshake: %d keepalives, lost %q", pings, lost)
		}
		p.end()
		time.Sleep(testInterval)
		synctest.Wait()
		k.mu.Lock()
		n, running := len(k.conns), k.running
		k.mu.Unlock()
		if n != 0 || running {
			t.Fatalf("after the connection ended: %d watched, scheduler running %v", n, running)
		}
	})
}

// Many connections opened at different times share the scheduler's
// wakeups: 500 connections cost at most keepaliveSlots wakeups an
// interval, and each is still looked at every interval.
func TestKeepaliveManyConnectionsShareWakeups(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		k := newKeepalives(testInterval, testCount)
		peers := make([]*fakePeer, 500)
		for i := range peers {
			peers[i] = watch(t, k, false, true)
			time.Sleep(testInterval / 500)
		}
		synctest.Wait()
		base := make([]int, len(peers))
		for i, p := range peers {
			base[i], _ = p.state()
		}
		k.mu.Lock()
		wakeups := k.wakeups
		k.mu.Unlock()
		// Count the scheduler's looks by the keepalives an answering
		// client gets: one every second interval.
		time.Sleep(10 * testInterval)
		synctest.Wait()
		for i, p := range peers {
			if pings, lost := p.state(); lost != "" || pings-base[i] < 4 || pings-base[i] > 6 {
				t.Fatalf("connection %d: %d keepalives in 10 intervals (want 5), lost %q", i, pings-base[i], lost)
			}
		}
		k.mu.Lock()
		wakeups = k.wakeups - wakeups
		k.mu.Unlock()
		if wakeups > 10*(keepaliveSlots+1) {
			t.Errorf("%d wakeups of the scheduler in 10 intervals, want at most %d", wakeups, 10*(keepaliveSlots+1))
		}
	})
}

// stubConn is a net.Conn whose reads return what the test says.
type stubConn struct {
	net.Conn
	n   int
	err error
}

func (c *stubConn) Read(p []byte) (int, error) { return c.n, c.err }
func (c *stubConn) Close() error               { return nil }

// Reading marks the connection heard; the kernel giving up on the peer
// (ETIMEDOUT) is logged as lost keepalives, once.
func TestKeepaliveConnRead(t *testing.T) {
	p := &fakePeer{ends: make(chan struct{})}
	sc := &stubConn{n: 3}
	c := &keepaliveConn{Conn: sc, peer: p, index: -1}
	p.c = c
	c.Read(make([]byte, 8))
	if !c.heard.Load() {
		t.Error("a read of 3 bytes did not mark the connection heard")
	}
	sc.n, sc.err = 0, &net.OpError{Op: "read", Err: fmt.Errorf("read: %w", syscall.ETIMEDOUT)}
	c.Read(make([]byte, 8))
	c.Read(make([]byte, 8))
	if _, lost := p.state(); lost != "tcp" {
		t.Errorf("after ETIMEDOUT: lost %q, want tcp", lost)
	}
}

// probeTCP sets the kernel's keepalive from the configured values, in
// whole seconds, and bounds unacknowledged output by interval x count.
func TestProbeTCP(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	go func() {
		if c, err := net.Dial("tcp", ln.Addr().String()); err == nil {
			defer c.Close()
			time.Sleep(time.Second)
		}
	}()
	nc, err := ln.Accept()
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	tc := nc.(*net.TCPConn)
	for _, tt := range []struct {
		interval            time.Duration
		count               int
		secs, cnt, userTOms int
	}{
		{15 * time.Second, 3, 15, 3, 45000},
		{50 * time.Millisecond, 10, 1, 10, 10000},
		{1500 * time.Millisecond, 2, 2, 2, 4000},
	} {
		if err := probeTCP(tc, tt.interval, tt.count); err != nil {
			t.Fatal(err)
		}
		raw, _ := tc.SyscallConn()
		got := map[string]int{}
		raw.Control(func(fd uintptr) {
			for name, opt := range map[string][2]int{
				"SO_KEEPALIVE":     {unix.SOL_SOCKET, unix.SO_KEEPALIVE},
				"TCP_KEEPIDLE":     {unix.IPPROTO_TCP, unix.TCP_KEEPIDLE},
				"TCP_KEEPINTVL":    {unix.IPPROTO_TCP, unix.TCP_KEEPINTVL},
				"TCP_KEEPCNT":      {unix.IPPROTO_TCP, unix.TCP_KEEPCNT},
				"TCP_USER_TIMEOUT": {unix.IPPROTO_TCP, unix.TCP_USER_TIMEOUT},
			} {
				v, err := unix.GetsockoptInt(int(fd), opt[0], opt[1])
				if err != nil {
					t.Errorf("%s: %v", name, err)
				}
				got[name] = v
			}
		})
		want := map[string]int{"SO_KEEPALIVE": 1, "TCP_KEEPIDLE": tt.secs, "TCP_KEEPINTVL": tt.secs, "TCP_KEEPCNT": tt.cnt, "TCP_USER_TIMEOUT": tt.userTOms}
		for name, w := range want {
			if got[name] != w {
				t.Errorf("interval %v count %d: %s = %d, want %d", tt.interval, tt.count, name, got[name], w)
			}
		}
	}
}

// Through the real server: an SSH client that hangs (its TCP stack still
// answers, so only SSH-level keepalives can tell) is dropped and logged;
// one that answers is kept.
func TestKeepaliveDropsHungClient(t *testing.T) {
	g := startGateway(t, Options{KeepaliveInterval: 20 * time.Millisecond, KeepaliveCount: 2}, nil)
	k := g.addUser("alice", 1001)
	answering := g.mustDial("thesis", k)

	nc, err := net.Dial("tcp", g.addr)
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	conn, _, _, err := gossh.NewClientConn(nc, g.addr, &gossh.ClientConfig{
		User: "thesis", Auth: []gossh.AuthMethod{gossh.PublicKeys(k)}, HostKeyCallback: gossh.InsecureIgnoreHostKey(),
	})
	if err != nil {
		t.Fatal(err)
	}
	// Nobody serves conn's global requests: the gateway's keepalives go
	// unanswered, as with a stopped ssh.
	closed := make(chan struct{})
	go func() {
		conn.Wait()
		close(closed)
	}()
	select {
	case <-closed:
	case <-time.After(5 * time.Second):
		t.Fatal("the hung client was not dropped within 5 s")
	}
	if !strings.Contains(g.logs.String(), "client stopped answering keepalives") {
		t.Errorf("no log line for the dropped client:\n%s", g.logs.String())
	}
	if ok, _, err := answering.SendRequest("keepalive@openssh.com", true, nil); err != nil || ok {
		t.Errorf("the answering client: %v %v, want it connected (a refused keepalive)", ok, err)
	}
}
