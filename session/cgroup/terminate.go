package cgroup

import (
	"context"
	"errors"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
)

// pollInterval is how often Terminate looks for processes left and new ones.
const pollInterval = 100 * time.Millisecond

// Terminate sends SIGTERM to every user process (never to init or the
// keeper) and waits until none is left, grace has passed, or ctx ends. It
// returns how many user processes still run. The list is read again each
// round, so a process forked during the grace (a checkpoint writer, a
// shell's next command) is signalled too; a process is signalled once,
// so a handler that saves a checkpoint is not interrupted by a second
// SIGTERM. A container that stops meanwhile has none left.
func (r *Reader) Terminate(ctx context.Context, grace time.Duration) (int, error) {
	timer := time.NewTimer(grace)
	defer timer.Stop()
	tick := time.NewTicker(pollInterval)
	defer tick.Stop()
	signalled := map[int]uint64{} // pid -> start time, against reuse
	for {
		left, err := r.termRound(signalled, true)
		if errors.Is(err, ErrGone) || (err == nil && left == 0) {
			return 0, nil
		}
		if err != nil {
			return left, err
		}
		select {
		case <-ctx.Done():
			return left, ctx.Err()
		case <-timer.C:
			left, err := r.termRound(signalled, false)
			if errors.Is(err, ErrGone) {
				return 0, nil
			}
			return left, err
		case <-tick.C:
		}
	}
}

// termRound counts the live user processes and, if send, signals those not
// signalled yet.
func (r *Reader) termRound(signalled map[int]uint64, send bool) (int, error) {
	pids, err := r.UserPIDs()
	if err != nil {
		return 0, err
	}
	left := 0
	for _, pid := range pids {
		st, err := r.stat(pid)
		if err != nil || st.zombie() {
			continue
		}
		left++
		if start, ok := signalled[pid]; !send || (ok && start == st.start) {
			continue
		}
		signalled[pid] = st.start
		if err := r.signal(pid, unix.SIGTERM); err != nil && !errors.Is(err, unix.ESRCH) {
			return left, err
		}
	}
	return left, nil
}

// signalMember sends sig to pid only while pid is a process of the
// container. A pidfd pins the process first, so the check and the signal
// are about the same process even if the PID is reused in between; the
// PID was read from the container's own list, so it cannot name init.
func (r *Reader) signalMember(pid int, sig syscall.Signal) error {
	fd, err := unix.PidfdOpen(pid, 0)
	if errors.Is(err, unix.ENOSYS) {
		// Kernels before 5.3: check, then kill, with the small race.
		if !r.memberOf(pid) {
			return nil
		}
		return unix.Kill(pid, sig)
	}
	if err != nil {
		return err
	}
	defer unix.Close(fd)
	if !r.memberOf(pid) {
		return nil
	}
	return unix.PidfdSendSignal(fd, sig, nil, 0)
}
