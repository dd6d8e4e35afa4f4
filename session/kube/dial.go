package kube

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/util/httpstream"
	"k8s.io/client-go/tools/portforward"
	"k8s.io/client-go/transport/spdy"
)

// Dial connects to address as seen from inside the pod. The pod's
// loopback (VS Code's ports, `ssh -L 8080:localhost:8080`) is reached
// through the API's port-forward: one connection per pod, kept, and a
// stream pair per dial. Anything else (another address of the pod's
// network, another pod, the internet: `ssh -W host:port`) and unix
// sockets are dialled by the pod helper, so traffic leaves from the
// pod's network as it leaves a Docker container's.
func (k *Kube) Dial(ctx context.Context, pod, network, address string) (net.Conn, error) {
	switch network {
	case "tcp", "tcp4", "tcp6":
		host, port, err := net.SplitHostPort(address)
		if err != nil {
			return nil, err
		}
		if isLoopback(host) {
			return k.forwardDial(ctx, pod, port)
		}
		return k.helperDial(ctx, pod, network, address)
	case "unix":
		return k.helperDial(ctx, pod, network, address)
	}
	return nil, fmt.Errorf("dial %s: unsupported network", network)
}

// isLoopback is what the port-forward reaches: the kubelet's runtime
// dials localhost:port in the pod's network (IPv4 first).
func isLoopback(host string) bool {
	return host == "127.0.0.1" || host == "localhost" || host == "::1"
}

// pfConn is one pod's port-forward connection.
type pfConn struct {
	conn httpstream.Connection
	next atomic.Int64 // request IDs pair each data stream with its error stream
}

// portForward returns the pod's port-forward connection, dialling it on
// first use or after it broke.
func (k *Kube) portForward(ctx context.Context, pod string) (*pfConn, error) {
	k.fwd.mu.Lock()
	if c := k.fwd.pf[pod]; c != nil {
		select {
		case <-c.conn.CloseChan():
			delete(k.fwd.pf, pod)
		default:
			k.fwd.mu.Unlock()
			return c, nil
		}
	}
	k.fwd.mu.Unlock()

	u := k.c.Clientset.CoreV1().RESTClient().Post().
		Resource("pods").Namespace(k.cfg.Namespace).Name(pod).SubResource("portforward").URL()
	tr, up, err := spdy.RoundTripperFor(k.c.Config)
	if err != nil {
		return nil, fmt.Errorf("port-forward: %w", err)
	}
	ws, err := portforward.NewSPDYOverWebsocketDialer(u, k.c.Config)
	if err != nil {
		return nil, fmt.Errorf("port-forward: %w", err)
	}
	d := portforward.NewFallbackDialer(ws, spdy.NewDialer(up, &http.Client{Transport: tr}, "POST", u),
		func(err error) bool { return httpstream.IsUpgradeFailure(err) || httpstream.IsHTTPSProxyError(err) })
	type result struct {
		c   httpstream.Connection
		err error
	}
	// The dialer takes no context: a dial that outlives ctx is closed
	// when it completes.
	res := make(chan result, 1)
	go func() {
		c, _, err := d.Dial(portforward.PortForwardProtocolV1Name)
		res <- result{c, err}
	}()
	var r result
	select {
	case r = <-res:
	case <-ctx.Done():
		go func() {
			if r := <-res; r.c != nil {
				r.c.Close()
			}
		}()
		return nil, ctx.Err()
	}
	if r.err != nil {
		return nil, k.podErr(ctx, pod, fmt.Errorf("port-forward to pod %s: %w", pod, r.err))
	}
	c := &pfConn{conn: r.c}
	k.fwd.mu.Lock()
	defer k.fwd.mu.Unlock()
	if k.fwd.pf == nil {
		k.fwd.pf = map[string]*pfConn{}
	}
	if old := k.fwd.pf[pod]; old != nil {
		r.c.Close() // another dial won the race
		return old, nil
	}
	k.fwd.pf[pod] = c
	// The apiserver ends the connection when the pod goes: forget it
	// then, Forget or not.
	go func() {
		<-r.c.CloseChan()
		k.fwd.mu.Lock()
		if k.fwd.pf[pod] == c {
			delete(k.fwd.pf, pod)
		}
		k.fwd.mu.Unlock()
	}()
	return c, nil
}

// dropForward closes the pod's port-forward connection, if any.
func (k *Kube) dropForward(pod string) {
	k.fwd.mu.Lock()
	c := k.fwd.pf[pod]
	delete(k.fwd.pf, pod)
	k.fwd.mu.Unlock()
	if c != nil {
		c.conn.Close()
	}
}

// forwardDial opens a stream pair on the pod's port-forward connection.
// The kubelet reports a refused port on the error stream after the
// streams exist: such a connection opens, then ends at once.
func (k *Kube) forwardDial(ctx context.Context, pod, port string) (net.Conn, error) {
	p, err := strconv.ParseUint(port, 10, 16)
	if err != nil || p == 0 {
		return nil, fmt.Errorf("dial: bad port %q", port)
	}
	for attempt := 0; ; attempt++ {
		c, err := k.portForward(ctx, pod)
		if err != nil {
			return nil, err
		}
		s, err := c.open(port)
		if err == nil {
			return s, nil
		}
		// A kept connection may have ended with its pod's restart or an
		// apiserver's: dial afresh once.
		k.dropForward(pod)
		if attempt > 0 {
			return nil, k.podErr(ctx, pod, fmt.Errorf("port-forward to pod %s: %w", pod, err))
		}
	}
}

func (c *pfConn) open(port string) (*pfStream, error) {
	h := http.Header{}
	h.Set(corev1.StreamType, corev1.StreamTypeError)
	h.Set(corev1.PortHeader, port)
	h.Set(corev1.PortForwardRequestIDHeader, strconv.FormatInt(c.next.Add(1), 10))
	errs, err := c.conn.CreateStream(h)
	if err != nil {
		return nil, err
	}
	errs.Close() // never written to
	h.Set(corev1.StreamType, corev1.StreamTypeData)
	data, err := c.conn.CreateStream(h)
	if err != nil {
		_ = errs.Reset() // already failing: the data stream's error is the one to report
		c.conn.RemoveStreams(errs)
		return nil, err
	}
	s := &pfStream{c: c, data: data, errs: errs, port: port, errDone: make(chan struct{})}
	go func() {
		defer close(s.errDone)
		msg, err := io.ReadAll(errs)
		if len(msg) > 0 {
			err = errors.New(string(msg))
		}
		if err != nil {
			s.remoteErr.Store(&err)
			_ = data.Reset() // the peer is gone: end reads and writes
		}
	}()
	return s, nil
}

// pfStream is one forwarded connection: a net.Conn over a data stream.
type pfStream struct {
	c         *pfConn
	data      httpstream.Stream
	errs      httpstream.Stream
	port      string
	errDone   chan struct{}
	remoteErr atomic.Pointer[error]
	once      sync.Once
}

func (s *pfStream) Read(p []byte) (int, error) {
	n, err := s.data.Read(p)
	if err != nil && err != io.EOF {
		if e := s.remoteErr.Load(); e != nil {
			err = fmt.Errorf("port-forward to port %s: %w", s.port, *e)
		}
	}
	return n, err
}

func (s *pfStream) Write(p []byte) (int, error) { return s.data.Write(p) }

// CloseWrite half-closes: SPDY's Close ends this side's writes only.
// containerd's port-forward (1.6 and later) does not pass the half-close
// on to the server in the pod: it waits up to 1 s for the server's side
// to end, then closes both. Data already sent arrives; a server that
// answers only after the client's EOF gets cut off. The pod helper's dial
// (every non-loopback address) passes half-closes on exactly.
func (s *pfStream) CloseWrite() error { return s.data.Close() }

func (s *pfStream) Close() error {
	s.once.Do(func() {
		// Closing: there is no one left to report a failed reset to.
		_ = s.data.Reset()
		_ = s.errs.Reset()
		s.c.conn.RemoveStreams(s.data, s.errs)
	})
	return nil
}

func (s *pfStream) LocalAddr() net.Addr  { return pfAddr("gateway") }
func (s *pfStream) RemoteAddr() net.Addr { return pfAddr("127.0.0.1:" + s.port) }

var errNoDeadline = errors.New("port-forward: deadlines are not supported")

func (s *pfStream) SetDeadline(t time.Time) error      { return errNoDeadline }
func (s *pfStream) SetReadDeadline(t time.Time) error  { return errNoDeadline }
func (s *pfStream) SetWriteDeadline(t time.Time) error { return errNoDeadline }

type pfAddr string

func (a pfAddr) Network() string { return "port-forward" }
func (a pfAddr) String() string  { return string(a) }
