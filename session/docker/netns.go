package docker

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"strconv"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
)

// Dial connects to address from inside the container's network namespace,
// so 127.0.0.1 is the container's loopback, where VS Code's server, Jupyter
// and TensorBoard listen. Nothing is dialled from the gateway's own
// namespace. See dialIn for how.
func (d *Docker) Dial(ctx context.Context, id, network, address string) (net.Conn, error) {
	ns, err := d.netns(ctx, id)
	if err != nil {
		return nil, err
	}
	defer ns.Close()
	conn, err := dialIn(ctx, ns, net.DefaultResolver, network, address)
	if err != nil {
		return nil, fmt.Errorf("dial %s in container: %w", address, err)
	}
	return conn, nil
}

// dialAttemptTimeout bounds each address but the last when a name has
// several, so one that drops packets does not hide the next.
const dialAttemptTimeout = 10 * time.Second

// dialIn connects to address ("host:port", TCP) from inside the network
// namespace ns.
//
// A name (one the admin put in forward_allow) is resolved first, here, by
// the host's resolver; then each address is tried in turn. Go's dialer
// must not do this: it resolves on a goroutine of its own and races IPv4
// against IPv6 on new goroutines (Happy Eyeballs), on threads that never
// entered the namespace, so the connection would leave from the host.
//
// Only the socket is created inside the namespace, on a locked thread that
// leaves again at once: a socket keeps the namespace it was made in. The
// connect then waits in the poller like any other: a listener in the
// container that never accepts, or a host that drops packets, holds a
// goroutine, never an OS thread.
func dialIn(ctx context.Context, ns *os.File, r *net.Resolver, network, address string) (net.Conn, error) {
	if network != "tcp" && network != "tcp4" && network != "tcp6" {
		return nil, fmt.Errorf("network %q: only tcp", network)
	}
	host, portStr, err := net.SplitHostPort(address)
	if err != nil {
		return nil, err
	}
	port, err := strconv.ParseUint(portStr, 10, 16)
	if err != nil || port == 0 {
		return nil, fmt.Errorf("port %q: want 1 to 65535", portStr)
	}
	var addrs []netip.Addr
	if ip, err := netip.ParseAddr(host); err == nil {
		addrs = []netip.Addr{ip}
	} else if addrs, err = r.LookupNetIP(ctx, "ip", host); err != nil {
		return nil, err
	}
	var errs []error
	tried := 0
	for i, a := range addrs {
		a = a.Unmap()
		if (network == "tcp4" && !a.Is4()) || (network == "tcp6" && !a.Is6()) {
			continue
		}
		tried++
		actx, cancel := ctx, context.CancelFunc(func() {})
		if i < len(addrs)-1 {
			actx, cancel = context.WithTimeout(ctx, dialAttemptTimeout)
		}
		conn, err := connectIn(actx, ns, netip.AddrPortFrom(a.WithZone(""), uint16(port)))
		cancel()
		if err == nil {
			return conn, nil
		}
		errs = append(errs, err)
		if ctx.Err() != nil {
			break
		}
	}
	if tried == 0 {
		return nil, fmt.Errorf("%s has no %s address", host, network)
	}
	return nil, errors.Join(errs...)
}

// connectIn connects a TCP socket made in the namespace ns to ap.
func connectIn(ctx context.Context, ns *os.File, ap netip.AddrPort) (net.Conn, error) {
	family, sa := unix.AF_INET6, unix.Sockaddr(&unix.SockaddrInet6{Port: int(ap.Port()), Addr: ap.Addr().As16()})
	if ap.Addr().Is4() {
		family, sa = unix.AF_INET, &unix.SockaddrInet4{Port: int(ap.Port()), Addr: ap.Addr().As4()}
	}
	fd := -1
	err := onNetNS(ns, func() error {
		var err error
		fd, err = unix.Socket(family, unix.SOCK_STREAM|unix.SOCK_NONBLOCK|unix.SOCK_CLOEXEC, 0)
		return err
	})
	if err != nil {
		if fd >= 0 {
			unix.Close(fd)
		}
		return nil, fmt.Errorf("socket in container: %w", err)
	}
	f := os.NewFile(uintptr(fd), "socket") // non-blocking: in the poller
	defer f.Close()
	rc, err := f.SyscallConn()
	if err != nil {
		return nil, err
	}
	stop := context.AfterFunc(ctx, func() { f.SetDeadline(time.Unix(1, 0)) })
	defer stop()
	var connErr error
	started := false
	err = rc.Write(func(fd uintptr) bool {
		if !started {
			started = true
			switch err := unix.Connect(int(fd), sa); err {
			case nil:
				return true
			case unix.EINPROGRESS, unix.EINTR:
				return false // wait until writable
			default:
				connErr = err
				return true
			}
		}
		soErr, err := unix.GetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_ERROR)
		switch {
		case err != nil:
			connErr = err
		case soErr != 0:
			connErr = syscall.Errno(soErr)
		default:
			if _, err := unix.Getpeername(int(fd)); err != nil {
				return false // woken early: still connecting
			}
		}
		return true
	})
	if err != nil && ctx.Err() != nil {
		err = ctx.Err()
	}
	if err == nil && connErr != nil {
		err = os.NewSyscallError("connect", connErr)
	}
	if err != nil {
		return nil, &net.OpError{Op: "dial", Net: "tcp", Addr: net.TCPAddrFromAddrPort(ap), Err: err}
	}
	return net.FileConn(f) // a duplicate; f is closed on return
}

func short(id string) string {
	if len(id) > 12 {
		return id[:12]
	}
	return id
}
