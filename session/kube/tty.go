package kube

import (
	"sync"
	"syscall"
	"time"

	"k8s.io/client-go/tools/remotecommand"
)

// signalTimeout bounds the exec that delivers a signal.
const signalTimeout = 10 * time.Second

// signalNames are the signals an ssh client may name (RFC 4254 6.10),
// as kill(1) takes them.
var signalNames = map[syscall.Signal]string{
	syscall.SIGABRT: "ABRT", syscall.SIGALRM: "ALRM", syscall.SIGFPE: "FPE", syscall.SIGHUP: "HUP",
	syscall.SIGILL: "ILL", syscall.SIGINT: "INT", syscall.SIGKILL: "KILL", syscall.SIGPIPE: "PIPE",
	syscall.SIGQUIT: "QUIT", syscall.SIGSEGV: "SEGV", syscall.SIGTERM: "TERM", syscall.SIGUSR1: "USR1",
	syscall.SIGUSR2: "USR2",
}

// sizeQueue is a terminal's resize queue: only the latest size is kept,
// so a burst of window changes costs one resize.
type sizeQueue struct {
	mu     sync.Mutex
	next   *remotecommand.TerminalSize
	wake   chan struct{}
	closed bool
}

func newSizeQueue() *sizeQueue { return &sizeQueue{wake: make(chan struct{}, 1)} }

func (q *sizeQueue) push(rows, cols uint32) {
	q.mu.Lock()
	q.next = &remotecommand.TerminalSize{Height: uint16(min(rows, 65535)), Width: uint16(min(cols, 65535))}
	q.mu.Unlock()
	select {
	case q.wake <- struct{}{}:
	default:
	}
}

func (q *sizeQueue) close() {
	q.mu.Lock()
	q.closed = true
	q.mu.Unlock()
	select {
	case q.wake <- struct{}{}:
	default:
	}
}

// Next blocks until a size is pushed; nil (after close) ends the stream's
// resize loop.
func (q *sizeQueue) Next() *remotecommand.TerminalSize {
	for {
		q.mu.Lock()
		if q.closed {
			q.mu.Unlock()
			return nil
		}
		if s := q.next; s != nil {
			q.next = nil
			q.mu.Unlock()
			return s
		}
		q.mu.Unlock()
		<-q.wake
	}
}
