package kube

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"path/filepath"
	"sync"
	"time"

	corev1 "k8s.io/api/core/v1"

	"github.com/ds01/ds01-gateway/session/kube/podhelper"
)

// helperReadyTimeout bounds the wait for the helper's first answer.
const helperReadyTimeout = 30 * time.Second

// Listen listens inside the pod (`ssh -R`, agent sockets): `pod-helper
// listen` holds the socket in the pod's network (a unix socket is the
// user's, 0600) and passes each accepted connection over its stdin and
// stdout (package podhelper's protocol). Closing the listener ends the
// command, which closes the socket and removes its file; unlike a
// listener in a Docker container's namespace, it also ends the
// connections it accepted (they ride on the same exec).
func (k *Kube) Listen(ctx context.Context, pod, network, address string) (net.Listener, error) {
	switch network {
	case "tcp", "tcp4", "tcp6":
		// A literal address only, as with Docker: the client chooses it.
		host, _, err := net.SplitHostPort(address)
		if err != nil {
			return nil, err
		}
		if _, err := netip.ParseAddr(host); err != nil && host != "" {
			return nil, fmt.Errorf("listen on %q: want an IP address", host)
		}
	case "unix":
		if !filepath.IsAbs(address) {
			return nil, fmt.Errorf("listen on %q: want an absolute path", address)
		}
	default:
		return nil, fmt.Errorf("listen: unsupported network %q", network)
	}
	h := k.startHelper(ctx, pod, "listen", network, address)
	m := podhelper.NewMux(h.stdout, h.stdin)
	timer := time.NewTimer(helperReadyTimeout)
	defer timer.Stop()
	type ready struct {
		addr string
		err  error
	}
	rc := make(chan ready, 1)
	go func() {
		a, err := m.WaitReady(timer.C)
		rc <- ready{a, err}
	}()
	var r ready
	select {
	case r = <-rc:
	case <-ctx.Done():
		m.Close()
		h.stop()
		h.cancel()
		return nil, ctx.Err()
	}
	if r.err != nil {
		m.Close()
		h.stop()
		if msg := r.err.Error(); errors.Is(r.err, podhelper.ErrClosed) || msg == "EOF" || msg == "" {
			return nil, k.failure(ctx, pod, h, "listen on "+address)
		}
		return nil, fmt.Errorf("listen on %s in pod %s: %w", address, pod, r.err)
	}
	l := &podListener{m: m, h: h}
	if network == "unix" {
		l.addr = &net.UnixAddr{Name: r.addr, Net: "unix"}
	} else if ap, err := netip.ParseAddrPort(r.addr); err == nil {
		l.addr = net.TCPAddrFromAddrPort(ap)
	} else {
		l.Close()
		return nil, fmt.Errorf("listen on %s in pod %s: the helper listens on %q", address, pod, r.addr)
	}
	return l, nil
}

// podListener is a listener held by a pod-helper command.
type podListener struct {
	m    *podhelper.Mux
	h    *helperExec
	addr net.Addr
	once sync.Once
}

// Accept returns the next connection accepted in the pod.
func (l *podListener) Accept() (net.Conn, error) {
	c, remote, err := l.m.Accept()
	if err != nil {
		return nil, net.ErrClosed
	}
	c.Local = l.addr
	if ap, err := netip.ParseAddrPort(remote); err == nil {
		c.Remote = net.TCPAddrFromAddrPort(ap)
	}
	return c, nil
}

// Close ends the helper command; connections already accepted end too.
func (l *podListener) Close() error {
	l.once.Do(func() {
		l.h.stop()
		l.m.Close()
	})
	return nil
}

func (l *podListener) Addr() net.Addr { return l.addr }

func hasContainer(cs []corev1.Container, name string) bool {
	for _, c := range cs {
		if c.Name == name {
			return true
		}
	}
	return false
}
