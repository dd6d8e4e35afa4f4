package docker

import (
	"context"
	"fmt"
	"net"
	"os"
	"runtime"

	"golang.org/x/sys/unix"
)

// Listen opens a listening socket inside the container's network
// namespace (for `ssh -R`): it binds to the container's interfaces, never
// the gateway host's. See Dial for how the namespace is entered.
func (d *Docker) Listen(ctx context.Context, id, network, address string) (net.Listener, error) {
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
	info, err := d.cli.ContainerInspect(ctx, id)
	if err != nil {
		return fmt.Errorf("inspect container: %w", err)
	}
	if info.State == nil || !info.State.Running || info.State.Pid <= 0 {
		return fmt.Errorf("container %s is not running", short(id))
	}
	target, err := os.Open(fmt.Sprintf("/proc/%d/ns/net", info.State.Pid))
	if err != nil {
		return fmt.Errorf("container network namespace: %w", err)
	}
	defer target.Close()
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
		if err := unix.Setns(int(target.Fd()), unix.CLONE_NEWNET); err != nil {
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
