package gateway

import (
	"io"
	"time"
)

// touchEvery bounds how often a terminal's input is reported as activity:
// the idle policy samples far less often, and keystrokes are many.
const touchEvery = time.Second

// touchReader reports reads from a terminal's input as activity, at most
// once per touchEvery. It is read by one goroutine only.
type touchReader struct {
	r     io.Reader
	touch func()
	last  time.Time
	now   func() time.Time // nil: time.Now
}

func (t *touchReader) Read(p []byte) (int, error) {
	n, err := t.r.Read(p)
	if n > 0 {
		now := time.Now
		if t.now != nil {
			now = t.now
		}
		if at := now(); t.last.IsZero() || at.Sub(t.last) >= touchEvery {
			t.last = at
			t.touch()
		}
	}
	return n, err
}
