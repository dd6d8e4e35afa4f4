package workspace

import (
	"errors"
	"fmt"
	"runtime"

	"golang.org/x/sys/unix"
)

// asUser runs fn on an OS thread whose file-system credentials are the
// user's: fsuid and fsgid, and the gid as its only group. The kernel then
// checks every path fn resolves and every file it opens, creates or
// renames as it would for the user, and files fn creates belong to the
// user. Changing the fsuid away from 0 also clears the file capabilities
// (CAP_DAC_OVERRIDE, CAP_FOWNER, ...) of that thread, so root's bypasses
// do not apply. Only this thread changes: Linux credentials are per
// thread, and x/sys/unix makes these as plain system calls, not the
// all-threads variants of package syscall.
//
// The thread is locked for the duration, so the runtime neither schedules
// other goroutines on it nor clones new threads from it (it uses its
// template thread for that while a thread is locked). If the credentials
// cannot be restored, the thread is never unlocked: the runtime then ends
// it with the goroutine instead of reusing it.
func asUser(uid, gid int, fn func() error) error {
	if uid <= 0 || gid <= 0 {
		return fmt.Errorf("workspace: refusing to act as uid %d gid %d", uid, gid)
	}
	errc := make(chan error, 1)
	go func() {
		runtime.LockOSThread()
		restored := false
		defer func() {
			if r := recover(); r != nil {
				errc <- fmt.Errorf("workspace: panic as uid %d: %v", uid, r)
			}
			if restored {
				runtime.UnlockOSThread()
			}
		}()
		saved, err := unix.Getgroups()
		if err != nil {
			errc <- fmt.Errorf("workspace: groups: %w", err)
			restored = true
			return
		}
		if err := become(uid, gid); err != nil {
			restored = restore(saved) == nil
			errc <- err
			return
		}
		ferr := fn()
		if err := restore(saved); err != nil {
			errc <- errors.Join(ferr, err)
			return
		}
		restored = true
		errc <- ferr
	}()
	return <-errc
}

func become(uid, gid int) error {
	if err := unix.Setgroups([]int{gid}); err != nil {
		return fmt.Errorf("workspace: set groups: %w", err)
	}
	// setfsgid and setfsuid report failure only through the previous
	// value, so each is set, then read back by setting it again.
	_, _ = unix.SetfsgidRetGid(gid)
	if prev, _ := unix.SetfsgidRetGid(gid); prev != gid {
		return fmt.Errorf("workspace: set fsgid %d failed", gid)
	}
	_, _ = unix.SetfsuidRetUid(uid)
	if prev, _ := unix.SetfsuidRetUid(uid); prev != uid {
		return fmt.Errorf("workspace: set fsuid %d failed", uid)
	}
	return nil
}

func restore(groups []int) error {
	_, _ = unix.SetfsuidRetUid(0)
	if prev, _ := unix.SetfsuidRetUid(0); prev != 0 {
		return errors.New("workspace: cannot restore fsuid 0")
	}
	_, _ = unix.SetfsgidRetGid(0)
	if prev, _ := unix.SetfsgidRetGid(0); prev != 0 {
		return errors.New("workspace: cannot restore fsgid 0")
	}
	if err := unix.Setgroups(groups); err != nil {
		return fmt.Errorf("workspace: restore groups: %w", err)
	}
	return nil
}
