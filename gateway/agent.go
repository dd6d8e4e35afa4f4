package gateway

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"log/slog"
	"net"
	"os"
	"path/filepath"

	gossh "golang.org/x/crypto/ssh"
)

// agentSocket serves `ssh -A`: a unix socket in the container's socket
// directory, owned by the user and 0600, mounted into this container only.
// Each connection to it opens an auth-agent@openssh.com channel back to
// this client, so git inside the container signs with the key on the
// user's laptop. The socket goes when the session ends. It returns the
// socket's path inside the container.
func agentSocket(ctx context.Context, conn *gossh.ServerConn, lease Lease, log *slog.Logger) (string, func(), error) {
	hostDir, inside, ok := lease.SocketDir()
	if !ok {
		return "", nil, fmt.Errorf("agent: container has no socket directory")
	}
	var b [8]byte
	rand.Read(b[:])
	name := "agent-" + hex.EncodeToString(b[:]) + ".sock"
	path := filepath.Join(hostDir, name)
	ln, err := net.Listen("unix", path)
	if err != nil {
		return "", nil, fmt.Errorf("agent: %w", err)
	}
	u := lease.User()
	if err := ownSocket(path, u.UID, u.GID); err != nil {
		ln.Close()
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
	return filepath.Join(inside, name), func() { ln.Close() }, nil
}

// ownSocket makes the socket the user's alone: 0600, owned by them.
func ownSocket(path string, uid, gid int) error {
	if err := os.Chmod(path, 0o600); err != nil {
		return err
	}
	return os.Lchown(path, uid, gid)
}
