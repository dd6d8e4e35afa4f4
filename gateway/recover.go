package gateway

import (
	"fmt"
	"log/slog"
	"runtime/debug"
)

// recoverPanic, deferred at the top of a goroutine that serves one channel
// or one request, keeps a bug there from ending every session of every
// user: it logs the panic with its stack and runs cleanup (close that
// channel, fail that request). It must be deferred directly.
func recoverPanic(log *slog.Logger, what string, cleanup func()) {
	r := recover()
	if r == nil {
		return
	}
	log.Error("panic", "in", what, "panic", fmt.Sprint(r), "stack", string(debug.Stack()))
	if cleanup != nil {
		defer func() { _ = recover() }() // a broken channel must not panic again
		cleanup()
	}
}
