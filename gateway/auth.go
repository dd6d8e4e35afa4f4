package gateway

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"time"

	gssh "github.com/gliderlabs/ssh"
	gossh "golang.org/x/crypto/ssh"

	"github.com/ds01/ds01-gateway/store"
)

// errNoIdentity means a connection got past the handshake without a key
// we can map to a user; it must never happen, and is refused if it does.
var errNoIdentity = errors.New("no authenticated key on this connection")

// authorize approves a public key that belongs to a registered user. It is
// called both for keys the client merely offers and for the one it signs
// with, so it records nothing: identity is resolved from the key that
// actually authenticated (see identity).
func (s *Server) authorize(ctx gssh.Context, key gssh.PublicKey) bool {
	fp := gossh.FingerprintSHA256(key)
	u, _, err := s.users.UserByKey(ctx, fp)
	cs := stateOf(ctx)
	if err != nil {
		cs.unknownKey.Store(true)
		if !errors.Is(err, store.ErrNotFound) {
			s.failure(ctx.RemoteAddr(), slog.LevelError, "key lookup", "err", err)
		}
		s.failure(ctx.RemoteAddr(), slog.LevelInfo, "unknown key", "login", logName(ctx.User()), "key", fp)
		s.noteDenied(ctx, "unknown key", fp)
		return false
	}
	if kp, ok := s.users.(KeyPolicy); ok {
		r, err := kp.KeyAccess(fp, remoteAddr(ctx.RemoteAddr()), time.Now())
		if err != nil {
			s.failure(ctx.RemoteAddr(), slog.LevelInfo, "key refused", "user", u.Name, "login", logName(ctx.User()), "key", fp, "reason", err)
			s.noteDenied(ctx, "key refused by its options", fp)
			return false
		}
		setRestrictions(ctx, r)
	}
	cs.knownKey.Store(true)
	s.log.Debug("key accepted", "user", u.Name, "login", logName(ctx.User()), "key", fp)
	return true
}

// identity returns the user of the key that completed authentication.
//
// x/crypto/ssh keeps a one-entry cache of key checks and calls the callback
// again for the signing key unless it was the very last one checked, so the
// last key the callback approved, which gliderlabs stores as the context's
// public key, is the key whose signature was verified. Offering someone
// else's public key first and then signing with one's own therefore yields
// one's own identity (the e2e auth regression test holds us to that). The
// user is looked up afresh, so a removed user or key stops working on the
// next connection.
func (s *Server) identity(ctx context.Context, gctx gssh.Context) (store.User, error) {
	u, _, err := s.identityKey(ctx, gctx)
	return u, err
}

// identityKey is identity with the key's row: what the key commands and
// the new-key notice need.
func (s *Server) identityKey(ctx context.Context, gctx gssh.Context) (store.User, store.Key, error) {
	key, _ := gctx.Value(gssh.ContextKeyPublicKey).(gssh.PublicKey)
	if key == nil {
		return store.User{}, store.Key{}, errNoIdentity
	}
	u, k, err := s.users.UserByKey(ctx, gossh.FingerprintSHA256(key))
	if err != nil {
		return store.User{}, store.Key{}, fmt.Errorf("resolve user: %w", err)
	}
	return u, k, nil
}
