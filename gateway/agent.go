package gateway

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"log/slog"
	"net"
	"os"
	"path"
	"path/filepath"

	gossh "golang.org/x/crypto/ssh"

	"github.com/ds01/ds01-gateway/session/runtime"
)

// agentSocket serves `ssh -A`: a unix socket in the container's socket
// directory, owned by the user and 0600, mounted into this container only.
// Each connection to it opens an auth-agent@openssh.com channel back to
// this client, so git inside the container signs with the key on the
// user's laptop. The socket goes when the session ends. It returns the
// socket's path inside the container.
func agentSocket(ctx context.Context, conn *gossh.ServerConn, lease Lease, log *slog.Logger) (string, func(), error) {
	ln, path, err := agentListener(ctx, lease)
	if err != nil {
		return "", nil, fmt.Errorf("agent: %w", err)
	}
	go func() {
		defer recoverPanic(log, "agent socket", func() { ln.Close() })
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() {
				defer recoverPanic(log, "agent channel", func() { c.Close() })
				ch, reqs, err := conn.OpenChannel("auth-agent@openssh.com", nil)
				if err != nil {
					c.Close()
					return
				}
				go gossh.DiscardRequests(reqs)
				splice(ctx, ch, c)
			}()
		}
	}()
	// Closing a unix listener removes its socket file.
	return path, func() { ln.Close() }, nil
}

// agentListener listens on a fresh agent socket: in the container's
// socket directory on the host when it has one (Docker), else inside the
// container through the runtime (a pod on another node), whose helper
// makes the socket the user's and 0600 itself. It returns the socket's
// path as the container sees it.
func agentListener(ctx context.Context, lease Lease) (net.Listener, string, error) {
	var b [8]byte
	rand.Read(b[:])
	name := "agent-" + hex.EncodeToString(b[:]) + ".sock"
	hostDir, inside, ok := lease.SocketDir()
	if !ok {
		sock := path.Join(runtime.IOMountPoint, name)
		ln, err := lease.Listen(ctx, "unix", sock)
		if err != nil {
			return nil, "", err
		}
		return ln, sock, nil
	}
	ln, err := net.Listen("unix", filepath.Join(hostDir, name))
	if err != nil {
		return nil, "", err
	}
	u := lease.User()
	if err := ownSocket(filepath.Join(hostDir, name), u.UID, u.GID); err != nil {
		ln.Close()
		return nil, "", err
	}
	return ln, filepath.Join(inside, name), nil
}

// ownSocket makes the socket the user's alone: 0600, owned by them.
func ownSocket(path string, uid, gid int) error {
	if err := os.Chmod(path, 0o600); err != nil {
		return err
	}
	return os.Lchown(path, uid, gid)
}
