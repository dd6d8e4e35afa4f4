package gateway

import (
	"errors"
	"strings"
	"time"

	gossh "golang.org/x/crypto/ssh"
)

// Observer hears what the gateway does, for metrics (observe/metrics).
// Every method is called on a login's or a session's own goroutine: it must
// be cheap and never block (counters, not I/O). Options.Observer nil means
// nobody listens.
type Observer interface {
	// AuthFailed: a connection ended without authenticating, or was
	// refused before it could; reason is one of the Auth* constants.
	AuthFailed(reason string)
	// SessionStarted and SessionEnded bracket a session whose process ran
	// in the user's container (shell or exec; not file transfers, not the
	// built-in commands).
	SessionStarted(user string)
	SessionEnded(user string)
	// Login is a login's latency: from the moment its connection
	// authenticated to the moment its first session's process started in
	// the container. kind is LoginCold when that session waited for the
	// container to be launched (build, GPU queue, start), LoginWarm when
	// it joined a running one.
	Login(kind string, d time.Duration)
	// TransferBytes: a file transfer (SFTP, scp, rsync) moved n bytes in
	// direction TransferIn (into the workspace) or TransferOut.
	TransferBytes(direction string, n int64)
}

// Reasons for Observer.AuthFailed.
const (
	// AuthMaxStartups and AuthMaxStartupsPerSource: refused at once by
	// the pre-authentication limits (preauth.go).
	AuthMaxStartups          = "max_startups"
	AuthMaxStartupsPerSource = "max_startups_per_source"
	// AuthTimeout: not authenticated within handshake_timeout.
	AuthTimeout = "timeout"
	// AuthTooManyTries: max_auth_tries failed attempts.
	AuthTooManyTries = "too_many_tries"
	// AuthUnknownKey: every key the client offered belongs to nobody.
	AuthUnknownKey = "unknown_key"
	// AuthBadSignature: a registered key was offered but the handshake
	// failed at its signature (it did not verify, or the client broke off
	// while proving it).
	AuthBadSignature = "bad_signature"
	// AuthNoSignature: a registered key was accepted, and the client left
	// without signing with it (a passphrase prompt cancelled, say).
	AuthNoSignature = "no_signature"
	// AuthNoKey: the client tried no public key (password only, or gave
	// up at once).
	AuthNoKey = "no_key"
	// AuthHandshake: the connection failed before authentication began
	// (no common algorithm, not SSH at all: port scanners).
	AuthHandshake = "handshake"
)

// Kinds of Observer.Login.
const (
	LoginCold = "cold"
	LoginWarm = "warm"
)

// Directions of Observer.TransferBytes.
const (
	TransferIn  = "in"
	TransferOut = "out"
)

type nopObserver struct{}

func (nopObserver) AuthFailed(string)           {}
func (nopObserver) SessionStarted(string)       {}
func (nopObserver) SessionEnded(string)         {}
func (nopObserver) Login(string, time.Duration) {}
func (nopObserver) TransferBytes(string, int64) {}

// authFailure names why a connection that failed its handshake did not
// authenticate, from x/crypto's error and what the connection's state saw
// (cs may be nil when the connection's state is unknown).
//
// x/crypto ends a handshake with *ServerAuthError when the client stopped
// trying or ran out of tries; a signature that does not verify ends it
// with the verification error itself, after the key was approved.
func authFailure(err error, cs *connState) string {
	var ae *gossh.ServerAuthError
	isAuth := errors.As(err, &ae)
	if isAuth && len(ae.Errors) > 0 && tooManyTries(ae.Errors[len(ae.Errors)-1]) {
		return AuthTooManyTries
	}
	if cs == nil {
		if isAuth {
			return AuthNoKey
		}
		return AuthHandshake
	}
	switch {
	case cs.timedOut.Load():
		return AuthTimeout
	case cs.knownKey.Load() && !isAuth:
		return AuthBadSignature
	case cs.knownKey.Load():
		return AuthNoSignature
	case cs.unknownKey.Load():
		return AuthUnknownKey
	case isAuth:
		return AuthNoKey
	}
	return AuthHandshake
}

// tooManyTries recognises the disconnect x/crypto appends when a client
// reaches MaxAuthTries (its type is not exported; its reason code is 2,
// SSH_DISCONNECT_PROTOCOL_ERROR, shared with other disconnects, so the
// text decides).
func tooManyTries(err error) bool {
	msg := err.Error()
	return strings.Contains(msg, "too many authentication failures") || strings.Contains(msg, "too many authentication attempts")
}
