package docker

import (
	"context"
	"fmt"
	"net"
	"net/netip"
	"os"
	"runtime"

	"golang.org/x/sys/unix"
)

// Listen opens a listening socket inside the container's network
// namespace (for `ssh -R`): it binds to the container's interfaces, never
// the gateway host's. See Dial for how the namespace is entered.
func (d *Docker) Listen(ctx context.Context, id, network, address string) (net.Listener, error) {
	// A literal address only: a name would be resolved while the thread
	// is locked in the namespace, and the client chooses the name.
	if host, _, err := net.SplitHostPort(address); err != nil {
		return nil, err
	} else if _, err := netip.ParseAddr(host); err != nil && host != "" {
		return nil, fmt.Errorf("listen on %q: want an IP address", host)
	}
	var ln net.Listener
	err := d.inNetNS(ctx, id, func() error {
		var lc net.ListenConfig
		var err error
		ln, err = lc.Listen(ctx, network, address)
		return err
	})
	return ln, err
}

// inNetNS runs fn on a locked OS thread switched into the container's
// network namespace, and switches back.
func (d *Docker) inNetNS(ctx context.Context, id string, fn func() error) error {
	ns, err := d.netns(ctx, id)
	if err != nil {
		return err
	}
	defer ns.Close()
	return onNetNS(ns, fn)
}

// netns opens the network namespace of the running container id.
func (d *Docker) netns(ctx context.Context, id string) (*os.File, error) {
	pid, err := d.initPID(ctx, id)
	if err != nil {
		return nil, err
	}
	ns, err := os.Open(fmt.Sprintf("/proc/%d/ns/net", pid))
	if err != nil {
		return nil, fmt.Errorf("container network namespace: %w", err)
	}
	return ns, nil
}

// onNetNS runs fn on a locked OS thread switched into the network
// namespace ns, and switches back. fn must not block on anything outside
// the gateway's control: the thread is the namespace's until it returns.
func onNetNS(ns *os.File, fn func() error) error {
	errc := make(chan error, 1)
	go func() {
		runtime.LockOSThread()
		// Without UnlockOSThread on a failed return, the runtime ends this
		// thread with the goroutine rather than reuse it in the wrong
		// namespace.
		home, err := os.Open("/proc/thread-self/ns/net")
		if err != nil {
			errc <- fmt.Errorf("own network namespace: %w", err)
			return
		}
		defer home.Close()
		if err := unix.Setns(int(ns.Fd()), unix.CLONE_NEWNET); err != nil {
			errc <- fmt.Errorf("enter network namespace: %w", err)
			return
		}
		fnErr := fn()
		if err := unix.Setns(int(home.Fd()), unix.CLONE_NEWNET); err != nil {
			errc <- fmt.Errorf("leave network namespace: %w", err)
			return
		}
		runtime.UnlockOSThread()
		errc <- fnErr
	}()
	return <-errc
}
