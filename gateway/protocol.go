package gateway

import (
	"strings"
	"syscall"
)

// ptyRequest is RFC 4254 section 6.2's "pty-req" payload.
type ptyRequest struct {
	Term       string
	Cols, Rows uint32
	Width      uint32
	Height     uint32
	Modes      string
}

// window is RFC 4254 section 6.7's "window-change" payload.
type window struct {
	Cols, Rows    uint32
	Width, Height uint32
}

// envAllowed is the allowlist for "env" requests: locale, terminal and
// git's protocol hint. Anything else (LD_PRELOAD, PATH, ...) is refused.
func envAllowed(name string) bool {
	switch name {
	case "LANG", "TERM", "COLORTERM", "GIT_PROTOCOL", "LANGUAGE":
		return true
	}
	return strings.HasPrefix(name, "LC_") && len(name) > 3
}

// signalByName maps RFC 4254 signal names (without "SIG").
var signalByName = map[string]syscall.Signal{
	"ABRT": syscall.SIGABRT, "ALRM": syscall.SIGALRM, "FPE": syscall.SIGFPE,
	"HUP": syscall.SIGHUP, "ILL": syscall.SIGILL, "INT": syscall.SIGINT,
	"KILL": syscall.SIGKILL, "PIPE": syscall.SIGPIPE, "QUIT": syscall.SIGQUIT,
	"SEGV": syscall.SIGSEGV, "TERM": syscall.SIGTERM, "USR1": syscall.SIGUSR1,
	"USR2": syscall.SIGUSR2,
}

var signalName = func() map[syscall.Signal]string {
	m := make(map[syscall.Signal]string, len(signalByName))
	for n, s := range signalByName {
		m[s] = n
	}
	return m
}()
