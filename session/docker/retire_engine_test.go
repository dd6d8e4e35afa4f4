package docker

import (
	"context"
	"sync"
	"testing"

	cerrdefs "github.com/containerd/errdefs"
)

// Two removers of one container at once (user remove --purge beside the
// live gateway) both succeed: Docker's "removal already in progress" to
// the second means the container is going, not that it failed.
func TestRetireConcurrently(t *testing.T) {
	d := engine(t)
	ctx := context.Background()
	for round := 0; round < 3; round++ {
		id := launchIdle(t, d)
		var wg sync.WaitGroup
		errs := make(chan error, 4)
		for i := 0; i < 4; i++ {
			wg.Add(1)
			go func() {
				defer wg.Done()
				errs <- d.Retire(ctx, id)
			}()
		}
		wg.Wait()
		close(errs)
		for err := range errs {
			if err != nil {
				t.Errorf("round %d: a concurrent Retire failed: %v", round, err)
			}
		}
		if _, err := d.cli.ContainerInspect(ctx, id); !cerrdefs.IsNotFound(err) {
			t.Errorf("round %d: the container is still there: %v", round, err)
		}
	}
}
