package cgroup

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strconv"
	"syscall"
	"testing"
	"testing/synctest"
	"time"
)

var kinds = []string{"v1", "v2-systemd", "v2-cgroupfs", "v2-parent"}

func TestSampleEachLayout(t *testing.T) {
	for _, kind := range kinds {
		t.Run(kind, func(t *testing.T) {
			h := newFakeHost(t, kind)
			c := h.container(0)
			other := h.container(1)
			r, err := Open(h.fs, c.init, c.id)
			if err != nil {
				t.Fatal(err)
			}
			if r.KeeperPID() != c.init+1 {
				t.Errorf("keeper = %d, want %d", r.KeeperPID(), c.init+1)
			}
			if r.Dir() != c.dir {
				t.Errorf("dir = %s, want %s", r.Dir(), c.dir)
			}
			s, err := r.Sample()
			if err != nil {
				t.Fatal(err)
			}
			if s.CPU != 5*time.Millisecond || s.UserProcs != 0 {
				t.Errorf("fresh container: %+v, want 5ms and no user processes", s)
			}

			// A nohup job (orphan, child of init), a session (child of
			// the shim, outside), the user's own sleep infinity, a zombie.
			c.proc(c.init+2, c.init, 'S', 500)
			c.proc(c.init+3, 77, 'R', 600)
			c.proc(c.init+4, c.init, 'S', 700)
			c.proc(c.init+5, c.init+3, 'Z', 800)
			c.setCPU(2 * time.Second)
			other.setCPU(time.Hour)
			s, err = r.Sample()
			if err != nil {
				t.Fatal(err)
			}
			if s.CPU != 2*time.Second || s.UserProcs != 3 {
				t.Errorf("busy container: %+v, want 2s and 3 user processes (zombie left out)", s)
			}
			pids, err := r.UserPIDs()
			if err != nil || len(pids) != 4 {
				t.Errorf("UserPIDs = %v, %v; want the 4 user pids", pids, err)
			}

			for _, p := range []int{c.init + 2, c.init + 3, c.init + 4, c.init + 5} {
				c.exit(p)
			}
			if s, err := r.Sample(); err != nil || s.UserProcs != 0 {
				t.Errorf("after the jobs ended: %+v, %v; want 0 user processes", s, err)
			}

			c.stop()
			if _, err := r.Sample(); !errors.Is(err, ErrGone) {
				t.Errorf("stopped container: err %v, want ErrGone", err)
			}
			if _, err := Open(h.fs, c.init, c.id); !errors.Is(err, ErrGone) {
				t.Errorf("open of a stopped container: err %v, want ErrGone", err)
			}
		})
	}
}

// The keeper is init's first child, whatever its name; a later sleep
// infinity of the user's counts, even when it is open's only other child.
func TestKeeperIsEarliestChildOfInit(t *testing.T) {
	h := newFakeHost(t, "v1")
	c := h.container(0)
	c.exit(c.init + 1)
	c.proc(c.init+9, c.init, 'S', 900) // the user's, started later
	c.proc(c.init+7, c.init, 'S', 101) // the keeper, started first, higher-numbered than init+1
	r, err := Open(h.fs, c.init, "")
	if err != nil {
		t.Fatal(err)
	}
	if r.KeeperPID() != c.init+7 {
		t.Errorf("keeper = %d, want %d", r.KeeperPID(), c.init+7)
	}
	if s, _ := r.Sample(); s.UserProcs != 1 {
		t.Errorf("user processes = %d, want 1", s.UserProcs)
	}
}

// After a container stops its init PID can be reused; the new process is
// in another cgroup and must not be read as the container.
func TestPIDReuse(t *testing.T) {
	for _, kind := range kinds {
		t.Run(kind, func(t *testing.T) {
			h := newFakeHost(t, kind)
			a, b := h.container(0), h.container(1)
			// a's init PID now belongs to one of b's processes.
			h.write(filepath.Join(h.fs.Proc, strconv.Itoa(a.init), "cgroup"), procCgroup(kind, b.member))
			if _, err := Open(h.fs, a.init, a.id); !errors.Is(err, ErrGone) {
				t.Errorf("open with a reused init PID: err %v, want ErrGone", err)
			}
			// Opened before; init left the cgroup (the dir lingers).
			r, err := Open(h.fs, b.init, b.id)
			if err != nil {
				t.Fatal(err)
			}
			b.exit(b.init)
			if _, err := r.Sample(); !errors.Is(err, ErrGone) {
				t.Errorf("init gone from the cgroup: err %v, want ErrGone", err)
			}
		})
	}
}

func TestTerminate(t *testing.T) {
	for _, kind := range []string{"v1", "v2-systemd"} {
		t.Run(kind, func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				h := newFakeHost(t, kind)
				c := h.container(0)
				job, shell, forked := c.init+2, c.init+3, c.init+4
				c.proc(job, c.init, 'S', 500)
				c.proc(shell, 77, 'S', 600)
				r, err := Open(h.fs, c.init, c.id)
				if err != nil {
					t.Fatal(err)
				}
				sig := &fakeSignals{c: c, got: map[int][]syscall.Signal{}, ignore: map[int]bool{shell: true}}
				// The shell forks a child when it gets SIGTERM, then ends
				// 300ms later (a trap that checkpoints).
				sig.onTerm = func(pid int) {
					if pid == shell {
						c.proc(forked, shell, 'S', 650)
						time.AfterFunc(300*time.Millisecond, func() { c.exit(shell) })
					}
				}
				r.signal = sig.signal
				start := time.Now()
				left, err := r.Terminate(context.Background(), 10*time.Second)
				if err != nil || left != 0 {
					t.Errorf("Terminate = %d, %v; want 0 left", left, err)
				}
				if d := time.Since(start); d < 300*time.Millisecond || d > time.Second {
					t.Errorf("Terminate took %v; want it to end soon after the last process", d)
				}
				for _, p := range []int{job, shell, forked} {
					if n := sig.count(p); n != 1 {
						t.Errorf("pid %d got %d signals, want one SIGTERM", p, n)
					}
				}
				for _, p := range []int{c.init, c.init + 1} {
					if n := sig.count(p); n != 0 {
						t.Errorf("init or keeper %d was signalled", p)
					}
				}
				if s, _ := r.Sample(); s.UserProcs != 0 {
					t.Errorf("user processes left: %d", s.UserProcs)
				}
			})
		})
	}
}

func TestTerminateGraceEnds(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		h := newFakeHost(t, "v2-cgroupfs")
		c := h.container(0)
		stubborn := c.init + 2
		c.proc(stubborn, c.init, 'S', 500)
		r, err := Open(h.fs, c.init, c.id)
		if err != nil {
			t.Fatal(err)
		}
		sig := &fakeSignals{c: c, got: map[int][]syscall.Signal{}, ignore: map[int]bool{stubborn: true}}
		r.signal = sig.signal
		start := time.Now()
		left, err := r.Terminate(context.Background(), 5*time.Second)
		if err != nil || left != 1 {
			t.Errorf("Terminate = %d, %v; want 1 left", left, err)
		}
		if d := time.Since(start); d != 5*time.Second {
			t.Errorf("Terminate returned after %v, want the grace, 5s", d)
		}
		if n := sig.count(stubborn); n != 1 {
			t.Errorf("stubborn process got %d signals, want 1", n)
		}

		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		defer cancel()
		if left, err := r.Terminate(ctx, time.Minute); left != 1 || !errors.Is(err, context.DeadlineExceeded) {
			t.Errorf("Terminate with a short ctx = %d, %v", left, err)
		}

		// The container stops during the grace: nothing is left.
		time.AfterFunc(time.Second, c.stop)
		if left, err := r.Terminate(context.Background(), time.Minute); left != 0 || err != nil {
			t.Errorf("Terminate of a stopping container = %d, %v; want 0, nil", left, err)
		}
	})
}

// The real signal path checks membership: a PID outside the container is
// never signalled.
func TestSignalMemberRefusesOutsiders(t *testing.T) {
	h := newFakeHost(t, "v1")
	c := h.container(0)
	if p := os.Getpid(); p >= c.init && p < c.init+10 {
		t.Skip("our PID is one of the fake container's")
	}
	r, err := Open(h.fs, c.init, c.id)
	if err != nil {
		t.Fatal(err)
	}
	// Our own PID: in the fake tree it has no cgroup file, so it is no
	// member, and the test survives to say so.
	if err := r.signalMember(os.Getpid(), syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
}

func TestParseStat(t *testing.T) {
	st, err := parseStat([]byte("42 (tmux: server) (x)) S 1 42 42 0 -1 4194560 100 0 0 0 0 0 0 0 20 0 1 0 12345 2506752 130\n"))
	if err != nil || st.state != 'S' || st.ppid != 1 || st.start != 12345 {
		t.Errorf("parseStat = %+v, %v", st, err)
	}
	for _, bad := range []string{"", "1 (x) S", "1 (x) SS 1 " + "0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0"} {
		if _, err := parseStat([]byte(bad)); err == nil {
			t.Errorf("parseStat(%q) accepted", bad)
		}
	}
}

func TestDedup(t *testing.T) {
	big := make([]int, 0, 200)
	for i := range 100 {
		big = append(big, i+1, i+1)
	}
	for _, tc := range []struct {
		in   []int
		want int
	}{{nil, 0}, {[]int{1}, 1}, {[]int{1, 2, 1, 3, 2}, 3}, {big, 100}} {
		if got := dedup(append([]int(nil), tc.in...)); len(got) != tc.want {
			t.Errorf("dedup(%v) = %v", tc.in, got)
		}
	}
}

// A reader opened before docker-init forked the keeper (the first sample
// right after a start, on a loaded host) finds the keeper later instead of
// counting it as user work for the container's whole life.
func TestKeeperStartedAfterOpen(t *testing.T) {
	h := newFakeHost(t, "v1")
	c := h.container(0)
	c.exit(c.init + 1) // not forked yet
	r, err := Open(h.fs, c.init, c.id)
	if err != nil {
		t.Fatal(err)
	}
	if s, err := r.Sample(); err != nil || s.UserProcs != 0 {
		t.Fatalf("before the keeper: %+v, %v; want no user processes", s, err)
	}
	c.proc(c.init+1, c.init, 'S', 101)
	if s, err := r.Sample(); err != nil || s.UserProcs != 0 {
		t.Errorf("keeper started after Open: %+v, %v; want no user processes", s, err)
	}
	if r.KeeperPID() != c.init+1 {
		t.Errorf("keeper = %d, want %d", r.KeeperPID(), c.init+1)
	}
	// A job orphaned later is init's child too, but started after the
	// keeper: it counts.
	c.proc(c.init+2, c.init, 'S', 500)
	if pids, err := r.UserPIDs(); err != nil || len(pids) != 1 || pids[0] != c.init+2 {
		t.Errorf("UserPIDs = %v, %v; want [%d]", pids, err, c.init+2)
	}
}
