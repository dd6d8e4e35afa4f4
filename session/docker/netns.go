package docker

import (
	"context"
	"fmt"
	"net"
)

// Dial connects to address from inside the container's network namespace,
// so 127.0.0.1 is the container's loopback, where VS Code's server, Jupyter
// and TensorBoard listen. The gateway, root on the Docker host, enters the
// namespace on one locked OS thread, creates the socket there and returns:
// the socket stays in the container's namespace whatever thread uses it
// later. Nothing is dialled from the gateway's own namespace.
func (d *Docker) Dial(ctx context.Context, id, network, address string) (net.Conn, error) {
	var conn net.Conn
	err := d.inNetNS(ctx, id, func() error {
		var dialer net.Dialer
		var err error
		conn, err = dialer.DialContext(ctx, network, address)
		return err
	})
	if err != nil {
		if conn != nil {
			conn.Close()
		}
		return nil, fmt.Errorf("dial %s in container: %w", address, err)
	}
	return conn, nil
}

func short(id string) string {
	if len(id) > 12 {
		return id[:12]
	}
	return id
}
