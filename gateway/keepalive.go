package gateway

import (
	"container/heap"
	"errors"
	"log/slog"
	"net"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	gssh "github.com/gliderlabs/ssh"
	gossh "golang.org/x/crypto/ssh"
	"golang.org/x/sys/unix"
)

// Keepalives notice a vanished client (a closed laptop, a dead network) so
// that its container and GPUs are not held forever, at almost no cost for
// the many connections that sit idle.
//
// Two layers do it:
//   - The kernel probes a silent TCP peer (TCP keepalive, with
//     Options.KeepaliveInterval as idle time and probe interval and
//     KeepaliveCount probes) and bounds unacknowledged output by
//     TCP_USER_TIMEOUT, interval x count: a peer that vanished is
//     dropped about interval x count after it last answered, with no
//     work in the gateway.
//   - One scheduler goroutine for the whole server (keepalives) looks at
//     each connection every interval. A connection that received bytes
//     since the last look is alive and costs nothing more. A silent one
//     gets an SSH keepalive@openssh.com request; when count looks in a row
//     find it unanswered, the connection is closed ("client stopped
//     answering keepalives"), exactly as the per-connection ticker did
//     before.
//
// With the kernel probing, the SSH-level request of a silent connection is
// sent only every sparseKeepalives intervals (2 minutes at the defaults):
// the kernel's probes are answered by the client's kernel, so they miss an
// SSH client that hangs (stopped, wedged) while its host is up; that case
// is rare and not urgent, and waiting longer for it makes 500 idle
// connections cost a handful of requests a second instead of 33.

// sparseKeepalives is how many intervals apart a silent connection that
// the kernel probes gets an SSH-level keepalive.
const sparseKeepalives = 8

// keepaliveSlots: a look may run up to interval/keepaliveSlots early, so
// that the looks at many connections share one wakeup of the scheduler.
const keepaliveSlots = 8

// keepalivePeer is what the scheduler needs of a connection; the SSH
// connection (sshPeer) and the tests' fake implement it.
type keepalivePeer interface {
	// ended says the connection is over.
	ended() bool
	// ready says the handshake is done, so a keepalive can be sent.
	ready() bool
	// ping sends keepalive@openssh.com and waits for the reply or the
	// connection's end.
	ping()
	// lost logs that the client stopped answering keepalives (how: "ssh"
	// or "tcp") and closes the connection.
	lost(how string)
}

// keepaliveConn is an accepted connection watched by the keepalive
// scheduler. Read marks it heard, which is all the work keepalives add to
// the stream path: an atomic load per read, a store once per interval.
type keepaliveConn struct {
	net.Conn
	peer   keepalivePeer
	probed bool // the kernel probes it (TCP keepalive is on)

	heard    atomic.Bool // bytes received since the scheduler's last look
	inflight atomic.Bool // a keepalive request waits for its reply
	lostOnce atomic.Bool

	// The scheduler's, under keepalives.mu.
	due           time.Time
	index         int // in the heap; -1 when not in it
	quiet, missed int
}

func (c *keepaliveConn) Read(p []byte) (int, error) {
	n, err := c.Conn.Read(p)
	if n > 0 && !c.heard.Load() {
		c.heard.Store(true)
	}
	// The kernel gave up on the peer (keepalive probes or unacknowledged
	// output): say so as the SSH-level keepalives do.
	if err != nil && errors.Is(err, syscall.ETIMEDOUT) && c.lostOnce.CompareAndSwap(false, true) {
		c.peer.lost("tcp")
	}
	return n, err
}

// keepalives is the server's keepalive scheduler: a heap of connections
// by the time of their next look, served by one goroutine that runs only
// while there are connections.
type keepalives struct {
	interval time.Duration
	count    int

	mu      sync.Mutex
	conns   keepaliveHeap
	running bool
	wake    chan struct{}
	wakeups int // the scheduler's, for the tests
}

func newKeepalives(interval time.Duration, count int) *keepalives {
	return &keepalives{interval: interval, count: max(count, 1), wake: make(chan struct{}, 1)}
}

// add watches c, first looked at one interval from now.
func (k *keepalives) add(c *keepaliveConn) {
	k.mu.Lock()
	defer k.mu.Unlock()
	c.due = time.Now().Add(k.interval)
	heap.Push(&k.conns, c)
	if !k.running {
		k.running = true
		go k.run()
		return
	}
	if c.index == 0 {
		k.signal() // due before what the scheduler waits for
	}
}

// remove stops watching c (its connection ended).
func (k *keepalives) remove(c *keepaliveConn) {
	k.mu.Lock()
	defer k.mu.Unlock()
	if c.index >= 0 {
		heap.Remove(&k.conns, c.index)
	}
	if len(k.conns) == 0 && k.running {
		k.signal() // to end
	}
}

func (k *keepalives) signal() {
	select {
	case k.wake <- struct{}{}:
	default:
	}
}

func (k *keepalives) run() {
	var t *time.Timer
	for {
		k.mu.Lock()
		k.wakeups++
		now := time.Now()
		horizon := now.Add(k.interval / keepaliveSlots)
		for len(k.conns) > 0 && !k.conns[0].due.After(horizon) {
			c := k.conns[0]
			if !k.look(c) {
				heap.Pop(&k.conns)
				continue
			}
			// Keep the connection's phase, so that early looks do not
			// drift; after a stall, start again from now.
			if c.due = c.due.Add(k.interval); c.due.Before(now) {
				c.due = now.Add(k.interval)
			}
			heap.Fix(&k.conns, 0)
		}
		if len(k.conns) == 0 {
			k.running = false
			k.mu.Unlock()
			return
		}
		wait := k.conns[0].due.Sub(now)
		k.mu.Unlock()
		if t == nil {
			t = time.NewTimer(wait)
		} else {
			t.Reset(wait)
		}
		select {
		case <-t.C:
		case <-k.wake:
		}
	}
}

// look is one interval's look at c; false drops c from the schedule.
func (k *keepalives) look(c *keepaliveConn) bool {
	if c.peer.ended() {
		return false
	}
	if c.heard.Swap(false) {
		c.quiet, c.missed = 0, 0
		return true
	}
	if !c.peer.ready() {
		return true // still in the handshake, which has its own timeout
	}
	if c.inflight.Load() {
		if c.missed++; c.missed >= k.count {
			if c.lostOnce.CompareAndSwap(false, true) {
				c.peer.lost("ssh")
			}
			return false
		}
		return true
	}
	every := 1
	if c.probed {
		every = sparseKeepalives
	}
	if c.quiet++; c.quiet < every {
		return true
	}
	c.quiet, c.missed = 0, 0
	c.inflight.Store(true)
	// The reply is read like any other bytes and marks c heard; the
	// goroutine lives only while the request is unanswered.
	go func() {
		c.peer.ping()
		c.inflight.Store(false)
	}()
	return true
}

// keepaliveHeap orders connections by their next look.
type keepaliveHeap []*keepaliveConn

func (h keepaliveHeap) Len() int           { return len(h) }
func (h keepaliveHeap) Less(i, j int) bool { return h[i].due.Before(h[j].due) }
func (h keepaliveHeap) Swap(i, j int) {
	h[i], h[j] = h[j], h[i]
	h[i].index, h[j].index = i, j
}
func (h *keepaliveHeap) Push(x any) {
	c := x.(*keepaliveConn)
	c.index = len(*h)
	*h = append(*h, c)
}
func (h *keepaliveHeap) Pop() any {
	old := *h
	c := old[len(old)-1]
	old[len(old)-1] = nil
	*h = old[:len(old)-1]
	c.index = -1
	return c
}

// watchKeepalives wraps an accepted connection for the scheduler, turns on
// the kernel's probes when it is TCP, and starts watching it; the caller
// calls k.remove when the connection ends.
func (s *Server) watchKeepalives(ctx gssh.Context, conn net.Conn) *keepaliveConn {
	c := &keepaliveConn{Conn: conn, index: -1, peer: sshPeer{ctx: ctx, conn: conn, log: s.log}}
	if tc, ok := conn.(*net.TCPConn); ok {
		if err := probeTCP(tc, s.opts.KeepaliveInterval, s.opts.KeepaliveCount); err != nil {
			s.log.Debug("tcp keepalive not enabled; keepalives go over ssh only", "remote", conn.RemoteAddr().String(), "err", err)
		} else {
			c.probed = true
		}
	}
	s.keepalives.add(c)
	return c
}

// probeTCP has the kernel probe a silent peer every interval (whole
// seconds, the kernel's unit) and give up after count unanswered probes,
// or when output stays unacknowledged for interval x count.
func probeTCP(tc *net.TCPConn, interval time.Duration, count int) error {
	secs := max((interval+time.Second-1)/time.Second, 1) * time.Second
	if err := tc.SetKeepAliveConfig(net.KeepAliveConfig{Enable: true, Idle: secs, Interval: secs, Count: count}); err != nil {
		return err
	}
	raw, err := tc.SyscallConn()
	if err != nil {
		return err
	}
	var serr error
	if err := raw.Control(func(fd uintptr) {
		serr = unix.SetsockoptInt(int(fd), unix.IPPROTO_TCP, unix.TCP_USER_TIMEOUT, int(secs.Milliseconds())*count)
	}); err != nil {
		return err
	}
	return serr
}

// sshPeer is the keepalivePeer of an SSH connection.
type sshPeer struct {
	ctx  gssh.Context
	conn net.Conn
	log  *slog.Logger
}

func (p sshPeer) serverConn() *gossh.ServerConn {
	sc, _ := p.ctx.Value(gssh.ContextKeyConn).(*gossh.ServerConn)
	return sc
}

func (p sshPeer) ended() bool { return p.ctx.Err() != nil }
func (p sshPeer) ready() bool { return p.serverConn() != nil }

// ping: any reply counts, OpenSSH answers with a failure.
func (p sshPeer) ping() {
	if sc := p.serverConn(); sc != nil {
		// The reply (or the error of a dead connection) needs no look:
		// any bytes read mark the connection as heard from.
		_, _, _ = sc.SendRequest("keepalive@openssh.com", true, nil)
	}
}

func (p sshPeer) lost(how string) {
	user := ""
	if sc := p.serverConn(); sc != nil {
		user = sc.User()
	}
	p.log.Info("client stopped answering keepalives", "remote", p.conn.RemoteAddr().String(), "user", user, "probe", how)
	p.conn.Close()
}
