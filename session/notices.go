package session

import (
	"io"
	"sync"
	"time"
)

// activity and the sessions that hear a container's notices; embedded in
// entry.
type activity struct {
	// inputAt and sessionAt are when a session last typed into a pty and
	// when the last session started (unix ns): activity for the policy.
	inputAt   atomicTime
	sessionAt atomicTime

	watchMu  sync.Mutex
	watchers map[*Lease]*watcher
}

// watcher delivers notices to one session's stderr in order, on its own
// goroutine: a client that stops reading (a full SSH window) blocks
// neither the reaper nor the other sessions. A full queue drops.
type watcher struct{ ch chan string }

const watcherQueue = 16

func (a *activity) watch(l *Lease, out io.Writer) {
	if out == nil || out == io.Discard {
		return // forwards: no terminal to tell
	}
	w := &watcher{ch: make(chan string, watcherQueue)}
	go func() {
		for s := range w.ch {
			if _, err := io.WriteString(out, s); err != nil {
				for range w.ch { // drain until Release closes it
				}
				return
			}
		}
	}()
	a.watchMu.Lock()
	if a.watchers == nil {
		a.watchers = map[*Lease]*watcher{}
	}
	a.watchers[l] = w
	a.watchMu.Unlock()
}

func (a *activity) unwatch(l *Lease) {
	a.watchMu.Lock()
	w := a.watchers[l]
	delete(a.watchers, l)
	a.watchMu.Unlock()
	if w != nil {
		close(w.ch)
	}
}

// tell queues text for every watching session; it reports whether any
// took it.
func (a *activity) tell(text string) bool {
	a.watchMu.Lock()
	defer a.watchMu.Unlock()
	told := false
	for _, w := range a.watchers {
		select {
		case w.ch <- text:
			told = true
		default:
		}
	}
	return told
}

// Touch records that the lease's user typed into a pty: activity. It is
// on the input path, so it is one atomic store.
func (l *Lease) Touch() { l.e.inputAt.Store(time.Now()) }
