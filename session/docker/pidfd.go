package docker

import (
	"errors"
	"fmt"
	"os"
	"time"

	"golang.org/x/sys/unix"
)

// An idle session must cost nothing while its process runs: asking the
// engine every second or so whether it still does costs the gateway and
// dockerd a request each time, and 500 sessions made that a few percent of
// a core. A pidfd becomes readable when its process exits, and the runtime
// poller waits on it like on a socket: no thread, no timer.

// openPidfd returns a pidfd for the host process pid, in the poller.
// A process that is already gone gives os.ErrProcessDone.
func openPidfd(pid int) (*os.File, error) {
	fd, err := unix.PidfdOpen(pid, 0)
	if errors.Is(err, unix.ESRCH) {
		return nil, os.ErrProcessDone
	}
	if err != nil {
		return nil, fmt.Errorf("pidfd open %d: %w", pid, err)
	}
	// Non-blocking, so that os.NewFile puts it in the poller rather than
	// having a read hold a thread. (PIDFD_NONBLOCK would do the same from
	// Linux 5.10; this works from 5.3.)
	if err := unix.SetNonblock(fd, true); err != nil {
		unix.Close(fd)
		return nil, fmt.Errorf("pidfd nonblock: %w", err)
	}
	return os.NewFile(uintptr(fd), fmt.Sprintf("pidfd:%d", pid)), nil
}

// awaitExit waits, in the poller, until the pidfd's process has exited
// (a pidfd reads ready then). Closing f ends the wait with an error
// (os.ErrClosed).
func awaitExit(f *os.File) error { return awaitReadable(f) }

// waitExit returns true once the exec's process has exited, false when
// done closes first.
func (p *execRef) waitExit(done <-chan struct{}) bool {
	pid, err := p.hostPID()
	if err != nil {
		return p.pollExit(done)
	}
	f, err := openPidfd(pid)
	if errors.Is(err, os.ErrProcessDone) {
		return true
	}
	if err != nil {
		return p.pollExit(done)
	}
	defer f.Close()
	// The PID came from the engine before the pidfd was opened: if the
	// process had exited in between, the number could name another one.
	// The engine reports the exec running only until it has reaped it, so
	// running now means the pidfd is the exec's process.
	running, err := p.state()
	if err != nil {
		return p.pollExit(done)
	}
	if !running {
		return true
	}
	exited := make(chan bool, 1)
	go func() { exited <- awaitExit(f) == nil }()
	select {
	case ok := <-exited:
		return ok
	case <-done:
		f.Close() // ends awaitExit
		<-exited
		return false
	}
}

// pollExit is the fallback where no pidfd can be had (a kernel before
// 5.3, an engine that did not give the PID): ask the engine, backing off.
func (p *execRef) pollExit(done <-chan struct{}) bool {
	delay := 100 * time.Millisecond
	for {
		t := time.NewTimer(delay)
		select {
		case <-done:
			t.Stop()
			return false
		case <-t.C:
		}
		if !p.running() {
			return true
		}
		if delay < time.Second {
			delay *= 2
		}
	}
}
