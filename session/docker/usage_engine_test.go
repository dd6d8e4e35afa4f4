package docker

import (
	"context"
	"errors"
	"fmt"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/docker/docker/api/types/container"

	"github.com/ds01/ds01-gateway/session/runtime"
)

const usageTestImage = "ds01-base:bookworm"

// launchIdle starts a project-like container (docker-init, sleep infinity)
// and removes it after the test.
func launchIdle(t *testing.T, d *Docker) string {
	t.Helper()
	ctx := context.Background()
	if id, _ := d.ImageID(ctx, usageTestImage); id == "" {
		if os.Getenv("CI") == "true" {
			t.Fatalf("%s missing: run make base-image", usageTestImage)
		}
		t.Skipf("%s missing: run make base-image", usageTestImage)
	}
	id, err := d.Launch(ctx, runtime.ContainerSpec{
		Name:    fmt.Sprintf("ds01-usagetest-%d", time.Now().UnixNano()),
		Image:   usageTestImage,
		Labels:  map[string]string{"ds01.test": "usage"},
		User:    "1000:1000",
		Network: "bridge",
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { d.Retire(context.Background(), id) })
	return id
}

// execDetached is `docker exec -d`: it returns once the process started.
func execDetached(t *testing.T, d *Docker, id, script string) {
	t.Helper()
	ctx := context.Background()
	ex, err := d.cli.ContainerExecCreate(ctx, id, container.ExecOptions{Cmd: []string{"sh", "-c", script}})
	if err != nil {
		t.Fatal(err)
	}
	if err := d.cli.ContainerExecStart(ctx, ex.ID, container.ExecStartOptions{Detach: true}); err != nil {
		t.Fatal(err)
	}
}

// waitProcs polls Usage until UserProcs is want.
func waitProcs(t *testing.T, d *Docker, id string, want int, within time.Duration) runtime.Usage {
	t.Helper()
	var u runtime.Usage
	var err error
	n, nerr := -1, error(nil)
	for end := time.Now().Add(within); time.Now().Before(end); time.Sleep(50 * time.Millisecond) {
		if u, err = d.Usage(context.Background(), id); err == nil && u.UserProcs == want {
			// The cheap count must agree with the full sample. The two
			// reads are moments apart while an exec's shell may still be
			// exiting, so they must agree once the count has settled, not
			// on the first look.
			if n, nerr = d.UserProcs(context.Background(), id); nerr == nil && n == want {
				return u
			}
		}
	}
	t.Fatalf("user processes: Usage %+v, %v; UserProcs %d, %v; want %d from both within %s", u, err, n, nerr, want, within)
	return u
}

// waitExec waits until the container's only user process runs comm.
func waitExec(t *testing.T, d *Docker, id, comm string) {
	t.Helper()
	r, err := d.cgroupReader(context.Background(), id)
	if err != nil {
		t.Fatal(err)
	}
	for end := time.Now().Add(5 * time.Second); time.Now().Before(end); time.Sleep(20 * time.Millisecond) {
		pids, err := r.UserPIDs()
		if err != nil {
			t.Fatal(err)
		}
		if len(pids) == 1 {
			if b, _ := os.ReadFile(fmt.Sprintf("/proc/%d/comm", pids[0])); strings.TrimSpace(string(b)) == comm {
				return
			}
		}
	}
	t.Fatalf("no %s in the container after 5s", comm)
}

func TestUsageOfRealContainer(t *testing.T) {
	d := engine(t)
	ctx := context.Background()
	id := launchIdle(t, d)

	u0 := waitProcs(t, d, id, 0, 5*time.Second) // docker-init and the keeper only

	// A job left behind by a session (nohup ... &) counts while it runs.
	execDetached(t, d, id, "nohup sleep 2 >/dev/null 2>&1 &")
	waitProcs(t, d, id, 1, 5*time.Second)
	waitProcs(t, d, id, 0, 10*time.Second)

	// A busy loop shows as CPU time.
	execDetached(t, d, id, "timeout 1 sh -c 'while :; do :; done'")
	time.Sleep(1500 * time.Millisecond)
	u1 := waitProcs(t, d, id, 0, 5*time.Second)
	if busy := u1.CPU - u0.CPU; busy < 200*time.Millisecond {
		t.Errorf("CPU rose by %v over a 1s busy loop; want at least 200ms", busy)
	}

	// TerminateUser ends a plain job and one that traps TERM to save
	// its work; the container itself stays up.
	execDetached(t, d, id, "nohup sleep 100 >/dev/null 2>&1 &")
	execDetached(t, d, id, `nohup sh -c 'trap "echo saved >/tmp/ckpt; exit 0" TERM; while :; do sleep 0.1; done' >/dev/null 2>&1 &`)
	waitProcs(t, d, id, 3, 5*time.Second) // sleep 100, sh, its sleep 0.1 (mostly)
	start := time.Now()
	if err := d.TerminateUser(ctx, id, 10*time.Second); err != nil {
		t.Fatalf("TerminateUser: %v", err)
	}
	if took := time.Since(start); took > 5*time.Second {
		t.Errorf("TerminateUser took %v for processes that end on SIGTERM", took)
	}
	if u, err := d.Usage(ctx, id); err != nil || u.UserProcs != 0 {
		t.Errorf("after TerminateUser: %+v, %v; want no user processes", u, err)
	}
	if ok, _ := d.Running(ctx, id); !ok {
		t.Fatal("TerminateUser stopped the container itself")
	}

	// One that ignores TERM is still there after the grace: an error
	// that counts it.
	execDetached(t, d, id, `nohup sh -c 'trap "" TERM; exec sleep 100' >/dev/null 2>&1 &`)
	waitProcs(t, d, id, 1, 5*time.Second)
	waitExec(t, d, id, "sleep") // the trap is set: SIGTERM before it would end sh
	start = time.Now()
	err := d.TerminateUser(ctx, id, time.Second)
	if err == nil || !strings.Contains(err.Error(), "1 user processes still running") {
		t.Errorf("TerminateUser of a process ignoring TERM: %v; want an error counting 1", err)
	}
	if took := time.Since(start); took < time.Second || took > 3*time.Second {
		t.Errorf("TerminateUser returned after %v; want the grace, 1s", took)
	}

	// Forget drops the reader; the next Usage opens a fresh one. A
	// retired container is not running.
	d.Forget(id)
	waitProcs(t, d, id, 1, time.Second)
	if err := d.Retire(ctx, id); err != nil {
		t.Fatal(err)
	}
	if _, err := d.Usage(ctx, id); !errors.Is(err, runtime.ErrNotRunning) {
		t.Errorf("Usage of a retired container: %v; want ErrNotRunning", err)
	}
	if _, err := d.UserProcs(ctx, id); !errors.Is(err, runtime.ErrNotRunning) {
		t.Errorf("UserProcs of a retired container: %v; want ErrNotRunning", err)
	}
	if err := d.TerminateUser(ctx, id, time.Second); err != nil {
		t.Errorf("TerminateUser of a retired container: %v; want nil", err)
	}
}
