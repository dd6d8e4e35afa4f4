package podhelper

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"syscall"
	"time"
)

// proc is one process of the pod as /proc shows it.
type proc struct {
	pid    int
	start  uint64 // clock ticks after boot
	zombie bool
	group  string // /proc/<pid>/cgroup verbatim: one container's processes share it
}

// scan reads every process under procRoot. A process that ends while it
// is read is left out.
func scan(procRoot string) ([]proc, error) {
	entries, err := os.ReadDir(procRoot)
	if err != nil {
		return nil, fmt.Errorf("read processes: %w", err)
	}
	var ps []proc
	for _, e := range entries {
		pid, err := strconv.Atoi(e.Name())
		if err != nil || pid <= 0 {
			continue
		}
		dir := filepath.Join(procRoot, e.Name())
		cg, err := os.ReadFile(filepath.Join(dir, "cgroup"))
		if err != nil {
			continue // gone meanwhile
		}
		stat, err := os.ReadFile(filepath.Join(dir, "stat"))
		if err != nil {
			continue
		}
		state, start, err := parseStat(stat)
		if err != nil {
			return nil, fmt.Errorf("process %d: %w", pid, err)
		}
		ps = append(ps, proc{pid: pid, start: start, zombie: state == 'Z' || state == 'X', group: string(cg)})
	}
	return ps, nil
}

// parseStat returns a /proc/<pid>/stat's state and start time. The command
// name may hold spaces and parentheses: fields count from the last ')'.
func parseStat(data []byte) (byte, uint64, error) {
	i := bytes.LastIndexByte(data, ')')
	if i < 0 {
		return 0, 0, errors.New("malformed stat")
	}
	f := bytes.Fields(data[i+1:])
	if len(f) < 20 || len(f[0]) != 1 {
		return 0, 0, errors.New("malformed stat")
	}
	start, err := strconv.ParseUint(string(f[19]), 10, 64)
	if err != nil {
		return 0, 0, fmt.Errorf("malformed stat: %w", err)
	}
	return f[0][0], start, nil
}

// classify finds the project container's processes among the pod's (its
// process namespace is shared): their cgroup is neither PID 1's (the
// pod's pause process) nor self's (this helper container). Should several
// such containers exist (a debug container added later), the project's is
// the one whose first process started earliest. That first process is
// its keeper (`sleep infinity`); the others, zombies left out, are the
// user's, sorted by PID.
func classify(ps []proc, self int) (keeper int, user []int) {
	var initGroup, selfGroup string
	for _, p := range ps {
		switch p.pid {
		case 1:
			initGroup = p.group
		case self:
			selfGroup = p.group
		}
	}
	first := map[string]proc{}
	for _, p := range ps {
		if p.group == initGroup || p.group == selfGroup {
			continue
		}
		if f, ok := first[p.group]; !ok || earlier(p, f) {
			first[p.group] = p
		}
	}
	var main proc
	found := false
	for _, f := range first {
		if !found || earlier(f, main) {
			main, found = f, true
		}
	}
	if !found {
		return 0, nil
	}
	for _, p := range ps {
		if p.group == main.group && p.pid != main.pid && !p.zombie {
			user = append(user, p.pid)
		}
	}
	sort.Ints(user)
	return main.pid, user
}

func earlier(a, b proc) bool {
	if a.start != b.start {
		return a.start < b.start
	}
	return a.pid < b.pid
}

// userProcs scans procRoot and classifies it.
func userProcs(procRoot string, self int) (keeper int, user []int, err error) {
	ps, err := scan(procRoot)
	if err != nil {
		return 0, nil, err
	}
	keeper, user = classify(ps, self)
	return keeper, user, nil
}

// terminate sends SIGTERM to the user's processes, and to any that
// appear meanwhile, and waits up to grace for them to end. It returns how
// many are left.
func terminate(ctx context.Context, procRoot string, self int, grace time.Duration, kill func(int, syscall.Signal) error) (int, error) {
	deadline := time.Now().Add(grace)
	signalled := map[int]bool{}
	for {
		_, user, err := userProcs(procRoot, self)
		if err != nil {
			return 0, err
		}
		if len(user) == 0 {
			return 0, nil
		}
		for _, pid := range user {
			if signalled[pid] {
				continue
			}
			signalled[pid] = true
			if err := kill(pid, syscall.SIGTERM); err != nil && !errors.Is(err, syscall.ESRCH) {
				return 0, fmt.Errorf("signal %d: %w", pid, err)
			}
		}
		if !time.Now().Before(deadline) {
			return len(user), nil
		}
		select {
		case <-ctx.Done():
			return len(user), ctx.Err()
		case <-time.After(min(50*time.Millisecond, time.Until(deadline))):
		}
	}
}
