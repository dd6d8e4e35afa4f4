package gateway

import (
	"context"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"strings"
	"sync"
	"time"
	"unicode"
	"unicode/utf8"

	gssh "github.com/gliderlabs/ssh"
	gossh "golang.org/x/crypto/ssh"
)

// Before authentication everything about a connection is the client's to
// choose, including a login name as long as an SSH packet (256 KiB), and
// anyone can open connections. What the gateway does for such a client is
// bounded here: how many unauthenticated connections it holds, and how
// much it logs about their failures.

// Defaults for Options.MaxStartups and Options.MaxStartupsPerSource. sshd
// starts refusing at 10 (MaxStartups 10:30:100) and has no per-source
// limit; a university NAT can put a lab behind one address, and VS Code
// opens several connections at once, hence the room.
const (
	DefaultMaxStartups          = 100
	DefaultMaxStartupsPerSource = 10
)

// maxLoggedName is how much of a login name goes into a log line.
const maxLoggedName = 64

// logName is a login name fit for a log line: control and other
// non-printing characters escaped (no forged lines, no terminal escapes),
// cut to maxLoggedName bytes with the full length noted.
func logName(name string) string {
	if len(name) <= maxLoggedName && printable(name) {
		return name
	}
	var b strings.Builder
	for i, r := range name {
		if b.Len() >= maxLoggedName {
			fmt.Fprintf(&b, "...(%d bytes)", len(name))
			break
		}
		switch {
		case r == utf8.RuneError && !strings.HasPrefix(name[i:], "\uFFFD"):
			fmt.Fprintf(&b, `\x%02x`, name[i])
		case r < 0x80 && !unicode.IsPrint(r):
			fmt.Fprintf(&b, `\x%02x`, r)
		case !unicode.IsPrint(r):
			fmt.Fprintf(&b, `\u%04x`, r)
		default:
			b.WriteRune(r)
		}
	}
	return b.String()
}

func printable(s string) bool {
	for _, r := range s {
		if r == utf8.RuneError || !unicode.IsPrint(r) {
			return false
		}
	}
	return true
}

// sourceOf is the source a connection counts against: its IP address, or
// its /64 for IPv6, since one host usually holds a whole /64.
func sourceOf(a net.Addr) string {
	ap, err := netip.ParseAddrPort(a.String())
	if err != nil {
		return a.String()
	}
	ip := ap.Addr().Unmap()
	if ip.Is4() {
		return ip.String()
	}
	p, _ := ip.Prefix(64)
	return p.String()
}

// startups counts connections that have not authenticated yet, in all and
// per source, as sshd's MaxStartups and PerSourceMaxStartups do: beyond
// either limit a new connection is closed at once, before the SSH
// handshake costs anything. Authenticated connections do not count.
type startups struct {
	max, perSource int

	mu    sync.Mutex
	total int
	per   map[string]int
}

func newStartups(max, perSource int) *startups {
	return &startups{max: max, perSource: perSource, per: map[string]int{}}
}

// acquire takes a slot for a new connection from src. It returns the
// function that gives the slot back (idempotent), or nil and why not.
func (s *startups) acquire(src string) (release func(), refused string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	switch {
	case s.total >= s.max:
		return nil, fmt.Sprintf("%d unauthenticated connections in all (max_startups)", s.total)
	case s.per[src] >= s.perSource:
		return nil, fmt.Sprintf("%d unauthenticated connections from this source (max_startups_per_source)", s.per[src])
	}
	s.total++
	s.per[src]++
	var once sync.Once
	return func() {
		once.Do(func() {
			s.mu.Lock()
			defer s.mu.Unlock()
			s.total--
			if s.per[src]--; s.per[src] <= 0 {
				delete(s.per, src)
			}
		})
	}, ""
}

// refusedReason is the observer's reason for a refusal by acquire.
func refusedReason(refused string) string {
	if strings.Contains(refused, "max_startups_per_source") {
		return AuthMaxStartupsPerSource
	}
	return AuthMaxStartups
}

// failureLog bounds the log lines about failed connections (unknown keys,
// refused or timed-out handshakes): up to perSource lines per source and
// window, and up to total lines in all; the rest are counted, and each
// source's count is logged once as "suppressed" when the window ends.
type failureLog struct {
	perSource, total int
	window           time.Duration
	// summary logs one source's suppressed lines.
	summary func(src string, suppressed int)

	mu      sync.Mutex
	logged  int
	sources map[string]*failureCount
	timer   *time.Timer // runs flush at the end of the current window
}

type failureCount struct{ logged, suppressed int }

// maxFailureSources bounds the sources counted separately in one window;
// later ones (an attacker with many addresses) share one count.
const maxFailureSources = 1024

// otherSources is the count shared beyond maxFailureSources.
const otherSources = "other sources"

func newFailureLog(perSource, total int, window time.Duration, summary func(string, int)) *failureLog {
	return &failureLog{perSource: perSource, total: total, window: window, summary: summary, sources: map[string]*failureCount{}}
}

// allow says whether a line about src may be logged now.
func (f *failureLog) allow(src string) bool {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.timer == nil {
		f.timer = time.AfterFunc(f.window, f.flush)
	}
	c := f.sources[src]
	if c == nil {
		if len(f.sources) >= maxFailureSources {
			src = otherSources
			c = f.sources[src]
		}
		if c == nil {
			c = &failureCount{}
			f.sources[src] = c
		}
	}
	if c.logged >= f.perSource || f.logged >= f.total {
		c.suppressed++
		return false
	}
	c.logged++
	f.logged++
	return true
}

// flush ends the window: it reports what was suppressed and starts over.
func (f *failureLog) flush() {
	f.mu.Lock()
	sources := f.sources
	f.sources = map[string]*failureCount{}
	f.logged = 0
	f.timer = nil
	f.mu.Unlock()
	for src, c := range sources {
		if c.suppressed > 0 {
			f.summary(src, c.suppressed)
		}
	}
}

// The failure log's budget: lines per source and in all per window.
const (
	failureLinesPerSource = 10
	failureLinesTotal     = 200
	failureWindow         = time.Minute
)

// failure logs a line about a connection that failed before or during
// authentication, within the failure log's budget for its source.
func (s *Server) failure(remote net.Addr, level slog.Level, msg string, args ...any) {
	if !s.log.Enabled(context.Background(), level) || !s.failures.allow(sourceOf(remote)) {
		return
	}
	s.log.Log(context.Background(), level, msg, append([]any{"remote", remote.String()}, args...)...)
}

// countAuthenticated wraps the server config so that a connection stops
// counting against MaxStartups once it has authenticated.
func (s *Server) countAuthenticated(config func(gssh.Context) *gossh.ServerConfig) func(gssh.Context) *gossh.ServerConfig {
	return func(ctx gssh.Context) *gossh.ServerConfig {
		cfg := config(ctx)
		cs := stateOf(ctx)
		// Called only once the key's signature verified; offered keys
		// never get here (see early.go).
		cfg.VerifiedPublicKeyCallback = func(_ gossh.ConnMetadata, key gossh.PublicKey, perms *gossh.Permissions, _ string) (*gossh.Permissions, error) {
			cs.early.verified(key)
			return perms, nil
		}
		cfg.AuthLogCallback = func(conn gossh.ConnMetadata, method string, err error) {
			if err == nil {
				cs.authAt.Store(time.Now().UnixNano())
				cs.authenticated.Store(true)
				cs.unauthenticated()
				if method == "publickey" {
					s.startEarly(ctx, cs, conn.User())
				}
			}
		}
		return cfg
	}
}
