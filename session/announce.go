package session

import (
	"context"
	"strings"
	"time"

	"github.com/ds01/ds01-gateway/store"
)

// Broadcast: a line for every open container session at once (an admin's
// announcement), through the same per-session watchers as the reaper's
// notices, so a client that stops reading blocks nobody.

// Broadcast queues text for every session watching a running container
// and returns how many took it. A session whose queue is full misses it.
func (m *Manager) Broadcast(text string) int {
	if !strings.HasSuffix(text, "\n") {
		text += "\n"
	}
	n := 0
	for _, e := range m.runningEntries() {
		n += e.tellCount(text)
	}
	return n
}

// runningEntries are the entries whose container runs, as last published.
func (m *Manager) runningEntries() []*entry {
	m.mu.Lock()
	defer m.mu.Unlock()
	var out []*entry
	for _, e := range m.entries {
		if e.snap.Load() != nil {
			out = append(out, e)
		}
	}
	return out
}

// tellCount is tell that counts the sessions that took text.
func (a *activity) tellCount(text string) int {
	a.watchMu.Lock()
	defer a.watchMu.Unlock()
	n := 0
	for _, w := range a.watchers {
		select {
		case w.ch <- text:
			n++
		default:
		}
	}
	return n
}

// alertLine is one line of DS01's .ds01-alerts: the time, then the notice
// without its "ds01: " prefix.
func alertLine(now time.Time, text string) []byte {
	text = strings.TrimPrefix(text, "ds01: ")
	if !strings.HasSuffix(text, "\n") {
		text += "\n"
	}
	return []byte(now.UTC().Format(time.RFC3339) + " " + text)
}

// Announced is what an announcement reached.
type Announced struct {
	Sessions int // open sessions that got the line
	Files    int // .ds01-alerts files it was appended to
	// Failed counts the workspaces whose alerts file could not be
	// written (a user's symlink or FIFO there, a full disk); logged.
	Failed int
}

// announce tells every open session text and appends it to the alerts
// file of every project with a running container. A project none of whose
// sessions took it gets a stored notice, shown at its user's next login.
func (m *Manager) announce(ctx context.Context, text string) Announced {
	if !strings.HasSuffix(text, "\n") {
		text += "\n"
	}
	now := time.Now()
	var res Announced
	for _, e := range m.runningEntries() {
		sn := e.snap.Load()
		if sn == nil {
			continue
		}
		told := e.tellCount(text)
		res.Sessions += told
		// As the user, without following their symlinks (package
		// workspace), like the reaper's notices.
		err := func() error {
			ws, err := m.workspaces.open(ctx, sn.user, sn.project, false)
			if err != nil {
				return err
			}
			defer ws.Close()
			return ws.AppendFile(alertsFile, alertLine(now, text), 0o644)
		}()
		if err != nil {
			res.Failed++
			m.log.Warn("announce: alerts file", "user", sn.user.Name, "project", sn.project, "err", err)
		} else {
			res.Files++
		}
		n := store.Notice{Time: now, User: sn.user.Name, Project: sn.project, Container: sn.id, Text: strings.TrimSuffix(text, "\n")}
		if _, err := m.store.AddNotice(ctx, n, told > 0); err != nil {
			m.log.Error("announce: record notice", "err", err)
		}
	}
	return res
}
