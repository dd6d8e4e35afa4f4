package session

import (
	"context"
	"errors"
	"fmt"
	"io"
	"sync"
	"time"

	"github.com/ds01/ds01-gateway/store"
)

// errNobodyWaits ends a build that everyone waiting for it has left.
var errNobodyWaits = errors.New("everyone waiting for it has gone")

// buildSlot serialises a project's builds; cur is the running build, for
// requests that arrive meanwhile. Guarded by Images.mu.
type buildSlot struct {
	cur *broadcast
	// pruning is closed when a prune of the project's old images ends
	// (image_prune.go); a build waits for it.
	pruning chan struct{}
}

// acquireBuild takes the project's build slot, following the output of
// builds that hold it first. The build then runs on the returned context,
// not on the caller's: it lives as long as anyone waits for it (this
// caller, or a request following it), so a follower sees a build through
// after the user who started it left, and a build nobody waits for any
// more is cancelled.
func (im *Images) acquireBuild(ctx context.Context, k key, project string, out io.Writer) (context.Context, func(), *broadcast, error) {
	announced := false
	for {
		im.mu.Lock()
		s := im.builds[k]
		if s == nil {
			s = &buildSlot{}
			im.builds[k] = s
		}
		if s.cur == nil && s.pruning != nil {
			done := s.pruning
			im.mu.Unlock()
			select {
			case <-done:
			case <-ctx.Done():
				return nil, nil, nil, context.Cause(ctx)
			}
			continue
		}
		if s.cur == nil {
			bctx, cancel := context.WithCancelCause(context.WithoutCancel(ctx))
			bc := newBroadcast(cancel)
			bc.join() // the owner
			s.cur = bc
			im.mu.Unlock()
			stop := context.AfterFunc(ctx, bc.leave)
			return bctx, func() {
				stop()
				im.mu.Lock()
				s.cur = nil
				delete(im.builds, k)
				im.mu.Unlock()
				bc.finish()
				cancel(nil)
			}, bc, nil
		}
		cur := s.cur
		im.mu.Unlock()
		if !announced {
			fmt.Fprintf(out, "ds01: another build of %s is running (started %s ago); following it\n", project, time.Since(cur.started).Round(time.Second))
			announced = true
		}
		if err := cur.follow(ctx, out); err != nil {
			return nil, nil, nil, err
		}
	}
}

// Building reports whether a build of the project is running.
func (im *Images) Building(u store.User, project string) bool {
	im.mu.Lock()
	defer im.mu.Unlock()
	s := im.builds[key{u.UID, project}]
	return s != nil && s.cur != nil
}

// broadcast keeps the output of work under way (a build, a launch) so that
// others can follow it from the start, and counts who waits for it: when
// the last one leaves before the work is done, the work is cancelled.
type broadcast struct {
	started time.Time
	mu      sync.Mutex
	buf     []byte
	changed chan struct{}
	done    bool
	// waiting counts the work's owner and its followers still there;
	// the last one to leave cancels the work.
	waiting int
	cancel  context.CancelCauseFunc
}

// maxFollow bounds what a broadcast keeps; builds are chatty.
const maxFollow = 1 << 20

func newBroadcast(cancel context.CancelCauseFunc) *broadcast {
	return &broadcast{started: time.Now(), changed: make(chan struct{}), cancel: cancel}
}

// join records one more waiter that is not a follower (a build's owner).
func (b *broadcast) join() {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.waiting++
}

func (b *broadcast) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if len(b.buf)+len(p) <= maxFollow {
		b.buf = append(b.buf, p...)
	}
	close(b.changed)
	b.changed = make(chan struct{})
	return len(p), nil
}

func (b *broadcast) finish() {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.done = true
	close(b.changed)
	b.changed = make(chan struct{})
}

// leave records that one waiter has gone.
func (b *broadcast) leave() {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.waiting--
	if b.waiting == 0 && !b.done {
		b.cancel(errNobodyWaits)
	}
}

// follow copies the output to w until the build ends or ctx is done; the
// build counts the follower as waiting for it meanwhile.
func (b *broadcast) follow(ctx context.Context, w io.Writer) error {
	b.mu.Lock()
	b.waiting++
	b.mu.Unlock()
	off := 0
	for {
		b.mu.Lock()
		chunk := b.buf[off:]
		off = len(b.buf)
		changed, done := b.changed, b.done
		b.mu.Unlock()
		if len(chunk) > 0 {
			// A follower whose connection is gone finds out from ctx.
			_, _ = w.Write(chunk)
		}
		if done {
			return nil
		}
		select {
		case <-changed:
		case <-ctx.Done():
			b.leave()
			return ctx.Err()
		}
	}
}

// teeWriter writes to the followers first, then to the owner, whose
// connection may be gone: its errors must not cut the followers off.
type teeWriter struct {
	followers io.Writer
	owner     io.Writer
}

func (t teeWriter) Write(p []byte) (int, error) {
	_, _ = t.followers.Write(p) // a broadcast never fails
	_, _ = t.owner.Write(p)     // see above
	return len(p), nil
}
