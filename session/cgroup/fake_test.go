package cgroup

import (
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// fakeHost is a fake /sys/fs/cgroup and /proc holding containers the way
// Docker lays them out, for each cgroup version and driver.
type fakeHost struct {
	t    testing.TB
	fs   FS
	kind string // "v1", "v2-systemd", "v2-cgroupfs", "v2-parent"
}

func newFakeHost(t testing.TB, kind string) *fakeHost {
	root := t.TempDir()
	h := &fakeHost{t: t, fs: FS{Cgroup: filepath.Join(root, "cgroup"), Proc: filepath.Join(root, "proc")}, kind: kind}
	if kind != "v1" {
		h.write(filepath.Join(h.fs.Cgroup, "cgroup.controllers"), "cpuset cpu io memory pids\n")
	}
	return h
}

// fakeContainer is one container on a fakeHost.
type fakeContainer struct {
	h      *fakeHost
	id     string
	member string // path in /proc/<pid>/cgroup
	dir    string
	init   int
	mu     sync.Mutex
	procs  []int
}

// container adds a running container: init (pid base) and its keeper
// (base+1, started right after).
func (h *fakeHost) container(n int) *fakeContainer {
	id := fmt.Sprintf("%064x", n+1)
	c := &fakeContainer{h: h, id: id, init: 1000 * (n + 1)}
	switch h.kind {
	case "v1", "v2-cgroupfs":
		c.member = "/docker/" + id
	case "v2-systemd":
		c.member = "/system.slice/docker-" + id + ".scope"
	case "v2-parent":
		c.member = "/ds01.slice/ds01-user-30000.slice/docker-" + id + ".scope"
	}
	if h.kind == "v1" {
		c.dir = filepath.Join(h.fs.Cgroup, "cpuacct", c.member)
		c.h.write(filepath.Join(h.fs.Cgroup, "pids", c.member, "cgroup.procs"), "")
	} else {
		c.dir = filepath.Join(h.fs.Cgroup, c.member)
	}
	c.setCPU(5 * time.Millisecond)
	c.proc(c.init, 900, 'S', 100)
	c.proc(c.init+1, c.init, 'S', 101) // the keeper
	return c
}

func (h *fakeHost) write(name, data string) {
	h.t.Helper()
	if err := os.MkdirAll(filepath.Dir(name), 0o755); err != nil {
		h.t.Fatal(err)
	}
	if err := os.WriteFile(name, []byte(data), 0o644); err != nil {
		h.t.Fatal(err)
	}
}

func (c *fakeContainer) setCPU(d time.Duration) {
	if c.h.kind == "v1" {
		c.h.write(filepath.Join(c.dir, "cpuacct.usage"), strconv.FormatInt(d.Nanoseconds(), 10)+"\n")
		return
	}
	c.h.write(filepath.Join(c.dir, "cpu.stat"), fmt.Sprintf(
		"usage_usec %d\nuser_usec 1\nsystem_usec 2\nnr_periods 0\nnr_throttled 0\nthrottled_usec 0\n", d.Microseconds()))
}

// proc adds a process of the container.
func (c *fakeContainer) proc(pid, ppid int, state byte, start int) {
	c.h.write(filepath.Join(c.h.fs.Proc, strconv.Itoa(pid), "cgroup"), procCgroup(c.h.kind, c.member))
	c.h.write(filepath.Join(c.h.fs.Proc, strconv.Itoa(pid), "stat"), fmt.Sprintf(
		"%d (a (b) c) %c %d %d %d 0 -1 4194560 100 0 0 0 0 0 0 0 20 0 1 0 %d 2506752 130 18446744073709551615\n",
		pid, state, ppid, pid, pid, start))
	c.mu.Lock()
	c.procs = append(c.procs, pid)
	c.mu.Unlock()
	c.writeProcs()
}

func (c *fakeContainer) exit(pid int) {
	c.mu.Lock()
	c.procs = slices.DeleteFunc(c.procs, func(p int) bool { return p == pid })
	c.mu.Unlock()
	os.RemoveAll(filepath.Join(c.h.fs.Proc, strconv.Itoa(pid)))
	c.writeProcs()
}

func (c *fakeContainer) writeProcs() {
	c.mu.Lock()
	var b strings.Builder
	for _, p := range c.procs {
		fmt.Fprintln(&b, p)
	}
	c.mu.Unlock()
	c.h.write(filepath.Join(c.dir, "cgroup.procs"), b.String())
}

// stop removes the container's cgroup, as the runtime does.
func (c *fakeContainer) stop() {
	os.RemoveAll(c.dir)
}

func procCgroup(kind, member string) string {
	if kind == "v1" {
		// Docker 20.10, cgroupfs driver, hybrid host: every v1
		// controller, name=systemd and the unified line.
		return strings.Join([]string{
			"12:pids:" + member, "11:blkio:" + member, "10:cpuacct:" + member, "9:cpu:" + member,
			"8:memory:" + member, "7:name=systemd:" + member, "0::/system.slice/containerd.service",
		}, "\n") + "\n"
	}
	return "0::" + member + "\n"
}

// fakeSignals records signals instead of sending them, and plays the
// processes' part: by default a process exits on SIGTERM.
type fakeSignals struct {
	mu     sync.Mutex
	c      *fakeContainer
	got    map[int][]syscall.Signal
	ignore map[int]bool
	onTerm func(pid int)
}

func (f *fakeSignals) signal(pid int, sig syscall.Signal) error {
	f.mu.Lock()
	f.got[pid] = append(f.got[pid], sig)
	ignore, on := f.ignore[pid], f.onTerm
	f.mu.Unlock()
	if on != nil {
		on(pid)
	}
	if !ignore {
		f.c.exit(pid)
	}
	return nil
}

func (f *fakeSignals) count(pid int) int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return len(f.got[pid])
}
