// Package cgroup reads one container's resource use straight from the
// kernel: its cgroup's CPU counter and process list, and /proc. Docker's
// stats API takes about a second per container and wakes the engine; a
// sample here is two small file reads.
//
// Both cgroup versions are supported. Where a container's cgroup lies is
// learned once, from /proc/<init>/cgroup of its init process, so Docker's
// cgroup driver (cgroupfs: docker/<id>; systemd: system.slice/docker-<id>.scope)
// and any custom cgroup parent need no configuration:
//   - v1 (and hybrid hosts, where the v1 cpuacct controller is mounted): the
//     cpuacct hierarchy's cpuacct.usage (nanoseconds) and cgroup.procs.
//   - v2: the unified hierarchy's cpu.stat (usage_usec) and cgroup.procs.
//
// Paths in /proc/<pid>/cgroup are relative to the reader's cgroup
// namespace: the gateway must run in the host's (it does, as a service).
package cgroup

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io/fs"
	"path"
	"path/filepath"
	"strconv"
	"strings"
	"sync/atomic"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
)

// FS names where the kernel's files are; tests point it at fake trees.
type FS struct {
	Cgroup string // where cgroupfs is mounted: /sys/fs/cgroup
	Proc   string // procfs: /proc
}

// Host is the running kernel's files.
func Host() FS { return FS{Cgroup: "/sys/fs/cgroup", Proc: "/proc"} }

// ErrGone means the container has stopped: its cgroup is gone, its init
// process has left it, or the init PID now belongs to another process.
var ErrGone = errors.New("container is gone")

// Sample is one reading of a container.
type Sample struct {
	// CPU is the cumulative CPU time of every process the container has
	// run, exited ones included.
	CPU time.Duration
	// UserProcs counts the container's processes other than its init and
	// keeper (see Open), zombies excluded.
	UserProcs int
}

// Reader reads one container. Its methods are safe for concurrent use.
type Reader struct {
	fs      FS
	initPID int
	// keeperPID is found at Open, or on a later read when docker-init had
	// not yet forked the keeper: a reader opened right after the start
	// must not count the keeper as user work for the container's life.
	keeperPID atomic.Int64
	v2        bool
	// member is the path /proc/<pid>/cgroup gives for a process of the
	// container, in the hierarchy read (v1: cpuacct; v2: unified).
	member    string
	dir       string
	cpuFile   string
	procsFile string
	// signal sends sig to pid if it is still the container's; tests
	// replace it so that fake PIDs never reach real processes.
	signal func(pid int, sig syscall.Signal) error
}

// Open finds the cgroup of the container whose init process (docker-init,
// PID 1 inside) has host PID initPID. When containerID is not empty, the
// cgroup's own name must contain it, so a PID reused after the container
// stopped is not mistaken for it.
//
// The keeper is the process that keeps the container alive (the gateway
// runs `sleep infinity` behind docker-init). It is identified once, here,
// as the earliest-started child of init: docker-init forks it first, and
// every other child of init is an orphan re-parented there later. A user's
// own `sleep infinity` is therefore a user process like any other.
func Open(fsys FS, initPID int, containerID string) (*Reader, error) {
	if initPID <= 0 {
		return nil, fmt.Errorf("cgroup: invalid init pid %d", initPID)
	}
	data, err := readSmall(filepath.Join(fsys.Proc, strconv.Itoa(initPID), "cgroup"))
	if err != nil {
		if gone(err) {
			return nil, ErrGone
		}
		return nil, fmt.Errorf("cgroup of pid %d: %w", initPID, err)
	}
	member, v2, err := parseProcCgroup(data)
	if err != nil {
		return nil, fmt.Errorf("cgroup of pid %d: %w", initPID, err)
	}
	if containerID != "" && !strings.Contains(path.Base(member), containerID) {
		return nil, fmt.Errorf("cgroup of pid %d is %s, not container %s's: %w", initPID, member, containerID, ErrGone)
	}
	r := &Reader{fs: fsys, initPID: initPID, v2: v2, member: member}
	r.signal = r.signalMember
	if v2 {
		root := fsys.Cgroup
		if !exists(filepath.Join(root, "cgroup.controllers")) {
			root = filepath.Join(root, "unified") // hybrid: v2 beside v1
		}
		r.dir = filepath.Join(root, filepath.FromSlash(member))
		r.cpuFile = filepath.Join(r.dir, "cpu.stat")
	} else {
		r.dir = filepath.Join(fsys.Cgroup, "cpuacct", filepath.FromSlash(member))
		if !exists(r.dir) {
			// Some distributions mount cpu and cpuacct together.
			r.dir = filepath.Join(fsys.Cgroup, "cpu,cpuacct", filepath.FromSlash(member))
		}
		r.cpuFile = filepath.Join(r.dir, "cpuacct.usage")
	}
	r.procsFile = filepath.Join(r.dir, "cgroup.procs")
	pids, err := r.pids()
	if err != nil {
		return nil, err
	}
	r.findKeeper(pids)
	return r, nil
}

// InitPID is the container's init process, as given to Open.
func (r *Reader) InitPID() int { return r.initPID }

// KeeperPID is the keeper's host PID, or 0 if init had no child at Open.
func (r *Reader) KeeperPID() int { return int(r.keeperPID.Load()) }

// Dir is the container's cgroup directory that is read.
func (r *Reader) Dir() string { return r.dir }

// Sample reads CPU time and counts user processes: two file reads, plus
// one /proc read per user process (at most maxStatReads) to leave out
// zombies.
func (r *Reader) Sample() (Sample, error) {
	cpu, err := r.CPU()
	if err != nil {
		return Sample{}, err
	}
	pids, err := r.pids()
	if err != nil {
		return Sample{}, err
	}
	keeper := r.KeeperPID()
	n := 0
	for _, pid := range pids {
		if pid == r.initPID || pid == keeper {
			continue
		}
		if n < maxStatReads {
			if st, err := r.stat(pid); err != nil || st.zombie() {
				continue // exited since the list was read, or a zombie
			}
		}
		n++
	}
	return Sample{CPU: cpu, UserProcs: n}, nil
}

// maxStatReads bounds the /proc reads of one Sample. A zombie lasts only
// while its parent lives, and its parent is itself a user process (init
// reaps the orphans), so beyond a few processes the check cannot change
// whether any is left.
const maxStatReads = 16

// CPU is the container's cumulative CPU time.
func (r *Reader) CPU() (time.Duration, error) {
	data, err := readSmall(r.cpuFile)
	if err != nil {
		return 0, r.readErr(err)
	}
	if !r.v2 {
		ns, err := strconv.ParseInt(string(bytes.TrimSpace(data)), 10, 64)
		if err != nil {
			return 0, fmt.Errorf("cgroup: %s: %w", r.cpuFile, err)
		}
		return time.Duration(ns), nil
	}
	for line := range bytes.Lines(data) {
		if v, ok := bytes.CutPrefix(line, []byte("usage_usec ")); ok {
			us, err := strconv.ParseInt(string(bytes.TrimSpace(v)), 10, 64)
			if err != nil {
				return 0, fmt.Errorf("cgroup: %s: %w", r.cpuFile, err)
			}
			return time.Duration(us) * time.Microsecond, nil
		}
	}
	return 0, fmt.Errorf("cgroup: %s: no usage_usec", r.cpuFile)
}

// UserPIDs lists the container's user processes (all but init and the
// keeper), zombies included.
func (r *Reader) UserPIDs() ([]int, error) {
	pids, err := r.pids()
	if err != nil {
		return nil, err
	}
	keeper := r.KeeperPID()
	out := pids[:0]
	for _, pid := range pids {
		if pid != r.initPID && pid != keeper {
			out = append(out, pid)
		}
	}
	return out, nil
}

// pids reads cgroup.procs. The container is gone when its init is no
// longer listed: init's exit ends the container.
func (r *Reader) pids() ([]int, error) {
	data, err := readSmall(r.procsFile)
	if err != nil {
		return nil, r.readErr(err)
	}
	pids := make([]int, 0, bytes.Count(data, []byte{'\n'}))
	hasInit := false
	for line := range bytes.Lines(data) {
		pid, err := strconv.Atoi(string(bytes.TrimSpace(line)))
		if err != nil || pid <= 0 {
			continue
		}
		if pid == r.initPID {
			if hasInit {
				continue // v1 may list a PID twice
			}
			hasInit = true
		}
		pids = append(pids, pid)
	}
	if !hasInit {
		return nil, ErrGone
	}
	pids = dedup(pids)
	if r.keeperPID.Load() == 0 {
		r.findKeeper(pids)
	}
	return pids, nil
}

// dedup drops repeated PIDs, which v1's cgroup.procs may list; the list is
// short and mostly distinct, so a quadratic scan beats sorting only past
// a few hundred.
func dedup(pids []int) []int {
	if len(pids) < 2 {
		return pids
	}
	out := pids[:1]
	seen := map[int]bool(nil)
	if len(pids) > 64 {
		seen = make(map[int]bool, len(pids))
		seen[pids[0]] = true
	}
next:
	for _, p := range pids[1:] {
		if seen != nil {
			if seen[p] {
				continue
			}
			seen[p] = true
		} else {
			for _, q := range out {
				if q == p {
					continue next
				}
			}
		}
		out = append(out, p)
	}
	return out
}

// findKeeper sets keeperPID to init's earliest-started child, if init has
// one yet. Orphaned user jobs also become init's children, but never
// before the keeper, which init forks first.
func (r *Reader) findKeeper(pids []int) {
	var best procStat
	keeper := 0
	for _, pid := range pids {
		if pid == r.initPID {
			continue
		}
		st, err := r.stat(pid)
		if err != nil || st.ppid != r.initPID {
			continue
		}
		if keeper == 0 || st.start < best.start || (st.start == best.start && pid < keeper) {
			keeper, best = pid, st
		}
	}
	if keeper != 0 {
		r.keeperPID.CompareAndSwap(0, int64(keeper))
	}
}

func (r *Reader) readErr(err error) error {
	if gone(err) {
		return ErrGone
	}
	return fmt.Errorf("cgroup: %w", err)
}

// parseProcCgroup picks the hierarchy to read from /proc/<pid>/cgroup: v1's
// cpuacct controller when it is mounted (v1 and hybrid hosts), else the
// unified one ("0::/path").
func parseProcCgroup(data []byte) (member string, v2 bool, err error) {
	unified := ""
	sc := bufio.NewScanner(bytes.NewReader(data))
	for sc.Scan() {
		// hierarchy-ID:controller-list:path
		_, rest, ok := strings.Cut(sc.Text(), ":")
		if !ok {
			continue
		}
		ctls, p, ok := strings.Cut(rest, ":")
		if !ok {
			continue
		}
		if ctls == "" {
			unified = p
			continue
		}
		for _, c := range strings.Split(ctls, ",") {
			if c == "cpuacct" {
				return p, false, nil
			}
		}
	}
	if unified == "" {
		return "", false, errors.New("no cpuacct or unified cgroup")
	}
	return unified, true, nil
}

// memberOf reports whether pid is (still) in the container's cgroup.
func (r *Reader) memberOf(pid int) bool {
	data, err := readSmall(filepath.Join(r.fs.Proc, strconv.Itoa(pid), "cgroup"))
	if err != nil {
		return false
	}
	p, _, err := parseProcCgroup(data)
	return err == nil && p == r.member
}

// procStat is what Sample and Terminate need of /proc/<pid>/stat.
type procStat struct {
	state byte
	ppid  int
	start uint64 // clock ticks after boot
}

func (s procStat) zombie() bool { return s.state == 'Z' || s.state == 'X' }

func (r *Reader) stat(pid int) (procStat, error) {
	data, err := readSmall(filepath.Join(r.fs.Proc, strconv.Itoa(pid), "stat"))
	if err != nil {
		return procStat{}, err
	}
	return parseStat(data)
}

// parseStat reads "pid (comm) state ppid ..." where comm may hold spaces
// and parentheses: the fields start after the last ')'.
func parseStat(data []byte) (procStat, error) {
	i := bytes.LastIndexByte(data, ')')
	if i < 0 {
		return procStat{}, errors.New("malformed stat")
	}
	f := strings.Fields(string(data[i+1:]))
	// state(3) ppid(4) ... starttime(22): indices from state = 0.
	if len(f) < 20 || len(f[0]) != 1 {
		return procStat{}, errors.New("malformed stat")
	}
	ppid, err := strconv.Atoi(f[1])
	if err != nil {
		return procStat{}, errors.New("malformed stat")
	}
	start, err := strconv.ParseUint(f[19], 10, 64)
	if err != nil {
		return procStat{}, errors.New("malformed stat")
	}
	return procStat{state: f[0][0], ppid: ppid, start: start}, nil
}

// gone reports errors that mean the file's cgroup or process is gone:
// a removed cgroup's open files read ENODEV.
func gone(err error) bool {
	return errors.Is(err, fs.ErrNotExist) || errors.Is(err, unix.ENODEV) || errors.Is(err, unix.ESRCH)
}

func exists(p string) bool {
	var st unix.Stat_t
	return unix.Stat(p, &st) == nil
}

// readSmall reads a kernel file with plain syscalls: open, read until EOF,
// close. Kernel files report size 0, and os.ReadFile's extra fstat and
// poller registration are most of a sample's cost.
func readSmall(name string) ([]byte, error) {
	fd, err := unix.Open(name, unix.O_RDONLY|unix.O_CLOEXEC, 0)
	if err != nil {
		return nil, &fs.PathError{Op: "open", Path: name, Err: err}
	}
	defer unix.Close(fd)
	buf := make([]byte, 0, 512)
	for {
		if len(buf) == cap(buf) {
			buf = append(buf, 0)[:len(buf)]
		}
		n, err := unix.Read(fd, buf[len(buf):cap(buf)])
		if err == unix.EINTR {
			continue
		}
		if err != nil {
			return nil, &fs.PathError{Op: "read", Path: name, Err: err}
		}
		if n == 0 {
			return buf, nil
		}
		buf = buf[:len(buf)+n]
	}
}
