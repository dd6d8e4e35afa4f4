// Package hostusers is the gateway's host accounts mode (users_from:
// host): users are the host's own accounts, as NSS (files, LDAP, SSSD)
// describes them, and their keys are the ones in their own
// ~/.ssh/authorized_keys.
//
// The SSH login name is a project, not an account, so the account is
// found from the key. A Directory keeps an index from key fingerprint to
// account, built in the background from the candidate accounts (see
// scan.go) and refreshed periodically; authentication is a map lookup.
// An unknown key may start one early rescan, at most one per RescanGap,
// so a key just added to authorized_keys works at once while a client
// offering random keys cannot make the gateway rescan per attempt.
//
// It sits beside the gateway rather than inside it: it implements the
// gateway's Users and KeyPolicy seams, and the gateway's store mode stays
// untouched.
package hostusers

import (
	"context"
	"errors"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"github.com/ds01/ds01-gateway/hostusers/authkeys"
	"github.com/ds01/ds01-gateway/store"
)

// Defaults for Config.
const (
	DefaultMinUID    = 1000 // login.defs' UID_MIN
	DefaultRefresh   = time.Minute
	DefaultRescanGap = 10 * time.Second
	// rescanWait bounds how long an unknown key's authentication waits
	// for the rescan it started.
	rescanWait = 3 * time.Second
	// nobodyUID is the overflow uid: never a person.
	nobodyUID = 65534
)

// Config configures a Directory.
type Config struct {
	// AllowedGroups: only their members may log in; empty means any
	// account with a uid of MinUID or more.
	AllowedGroups []string
	// MinUID: accounts below it are system accounts and never log in;
	// uid 0 never does, whatever MinUID says.
	MinUID int
	// Refresh is the period of the full rescan; RescanGap the least time
	// between two rescans.
	Refresh   time.Duration
	RescanGap time.Duration
}

// Store is what the directory needs of the store: the accounts it
// already knows (candidates for the index) and a way to record a host
// account on its first login, so projects and events have a user row.
type Store interface {
	ListUsers(ctx context.Context) ([]store.User, error)
	UpsertUser(ctx context.Context, u store.User) (store.User, bool, error)
}

// Directory is the host accounts' key index.
type Directory struct {
	cfg Config
	nss NSS
	st  Store
	log *slog.Logger
	now func() time.Time

	idx atomic.Pointer[index]

	mu       sync.Mutex
	scanning chan struct{} // closed when the running scan ends; nil when none
	lastScan time.Time     // when the last scan started
	problems map[string]string

	// synced is what the store holds for each account name (store.User),
	// so a login upserts only when the ids changed, and gets the group
	// recorded there.
	synced sync.Map
}

// index is one scan's result; replaced whole, never changed.
type index struct {
	keys  map[string]indexed // fingerprint → key and its account
	users map[string]member  // account name → account
}

type member struct {
	Account
	group string // primary group name
}

type indexed struct {
	acct  member
	entry authkeys.Entry
	line  string // the key in authorized_keys form, made once per scan
}

// New returns a Directory over the host's NSS; call Run, or Refresh, to
// fill its index.
func New(cfg Config, st Store, log *slog.Logger) *Directory {
	return newDirectory(cfg, osNSS{}, st, log, time.Now)
}

func newDirectory(cfg Config, nss NSS, st Store, log *slog.Logger, now func() time.Time) *Directory {
	if cfg.MinUID <= 0 {
		cfg.MinUID = DefaultMinUID
	}
	if cfg.Refresh <= 0 {
		cfg.Refresh = DefaultRefresh
	}
	if cfg.RescanGap <= 0 {
		cfg.RescanGap = DefaultRescanGap
	}
	d := &Directory{cfg: cfg, nss: nss, st: st, log: log, now: now, problems: map[string]string{}}
	d.idx.Store(&index{keys: map[string]indexed{}, users: map[string]member{}})
	return d
}

// Run refreshes the index every Refresh until ctx ends.
func (d *Directory) Run(ctx context.Context) {
	t := time.NewTicker(d.cfg.Refresh)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			d.Refresh(ctx)
		}
	}
}

// Refresh rescans now (or joins the scan running) and waits for it.
func (d *Directory) Refresh(ctx context.Context) {
	select {
	case <-d.startScan(true):
	case <-ctx.Done():
	}
}

// startScan starts a scan unless one runs, and returns its done channel.
// Unless forced, it starts none within RescanGap of the last one and
// returns nil.
func (d *Directory) startScan(force bool) <-chan struct{} {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.scanning != nil {
		return d.scanning
	}
	if !force && !d.lastScan.IsZero() && d.now().Sub(d.lastScan) < d.cfg.RescanGap {
		return nil
	}
	done := make(chan struct{})
	d.scanning, d.lastScan = done, d.now()
	go func() {
		// Not the caller's context: an unknown key's connection may go
		// away, the scan serves everyone.
		ctx, cancel := context.WithTimeout(context.Background(), 2*getentTimeout)
		defer cancel()
		idx := d.scan(ctx)
		d.idx.Store(idx)
		d.mu.Lock()
		d.scanning = nil
		d.mu.Unlock()
		close(done)
	}()
	return done
}

// lookup finds a key, rescanning once (rate-limited) when it is unknown.
func (d *Directory) lookup(ctx context.Context, fp string) (indexed, bool) {
	if e, ok := d.idx.Load().keys[fp]; ok {
		return e, true
	}
	done := d.startScan(false)
	if done == nil {
		return indexed{}, false
	}
	t := time.NewTimer(rescanWait)
	defer t.Stop()
	select {
	case <-done:
	case <-t.C:
		return indexed{}, false
	case <-ctx.Done():
		return indexed{}, false
	}
	e, ok := d.idx.Load().keys[fp]
	return e, ok
}

// ErrHostKeys refuses key-add and key-remove in host accounts mode.
var ErrHostKeys = errors.New("keys come from ~/.ssh/authorized_keys on the host: edit that file there")
