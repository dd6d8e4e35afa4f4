package docker

import (
	"context"
	"fmt"
	"net"
	"os"
	"runtime"

	"golang.org/x/sys/unix"
)

// Dial connects to address from inside the container's network namespace,
// so 127.0.0.1 is the container's loopback, where VS Code's server, Jupyter
// and TensorBoard listen. The gateway, root on the Docker host, enters the
// namespace on one locked OS thread, creates the socket there and returns:
// the socket stays in the container's namespace whatever thread uses it
// later. Nothing is dialled from the gateway's own namespace.
func (d *Docker) Dial(ctx context.Context, id, network, address string) (net.Conn, error) {
	info, err := d.cli.ContainerInspect(ctx, id)
	if err != nil {
		return nil, fmt.Errorf("dial: inspect container: %w", err)
	}
	if info.State == nil || !info.State.Running || info.State.Pid <= 0 {
		return nil, fmt.Errorf("dial: container %s is not running", short(id))
	}
	target, err := os.Open(fmt.Sprintf("/proc/%d/ns/net", info.State.Pid))
	if err != nil {
		return nil, fmt.Errorf("dial: container network namespace: %w", err)
	}
	defer target.Close()

	type result struct {
		conn net.Conn
		err  error
	}
	c := make(chan result, 1)
	go func() {
		runtime.LockOSThread()
		// Without UnlockOSThread on a failed return, the runtime ends this
		// thread with the goroutine rather than reuse it in the wrong
		// namespace.
		home, err := os.Open("/proc/thread-self/ns/net")
		if err != nil {
			c <- result{nil, fmt.Errorf("dial: own network namespace: %w", err)}
			return
		}
		defer home.Close()
		if err := unix.Setns(int(target.Fd()), unix.CLONE_NEWNET); err != nil {
			c <- result{nil, fmt.Errorf("dial: enter network namespace: %w", err)}
			return
		}
		var dialer net.Dialer
		conn, dialErr := dialer.DialContext(ctx, network, address)
		if err := unix.Setns(int(home.Fd()), unix.CLONE_NEWNET); err != nil {
			if conn != nil {
				conn.Close()
			}
			c <- result{nil, fmt.Errorf("dial: leave network namespace: %w", err)}
			return
		}
		runtime.UnlockOSThread()
		c <- result{conn, dialErr}
	}()
	r := <-c
	return r.conn, r.err
}

func short(id string) string {
	if len(id) > 12 {
		return id[:12]
	}
	return id
}
