// Package lifecycle is the policy that decides when a project container is
// warned and stopped: idle reclaim, maximum runtime, keep-alive and GPU
// pressure (issue 11).
//
// It is pure: no I/O (except LoadExemptions, which reads the admin's file),
// no goroutines and no clock of its own. The session layer samples each
// container every check interval, calls Decide with the container's
// persisted State and the Sample, stores the returned State, delivers the
// Notices, records the Events and obeys the Stop. Everything here is tested
// with plain time values.
//
// # Activity
//
// A sweep is active when the container's CPU use since the previous sweep is
// at least Rules.CPUIdleThreshold percent of one core, or any of its GPU
// slots is at least Rules.GPUIdleThreshold percent busy, or a session typed
// into a pty, or a new session started. The container's start counts as
// activity too. Processes merely existing and open connections do not.
// A threshold of 0 turns that signal off: it never counts as activity.
//
// # Deadlines
//
// The idle deadline applies to GPU containers always (Rules.IdleTimeout) and
// to containers without GPUs only while detached (Rules.IdleTimeoutNoGPU):
// D = LastActive + T, where T halves under GPU pressure (GPU containers
// only) but never below min(T, Rules.PressureIdleFloor). A
// /workspace/.keep-alive touched at k postpones it to k +
// Rules.KeepAliveWindow, a container-keep lease to State.KeepUntil; under
// pressure these postpone it by at most Rules.PressureKeepCap past LastActive
// + T. The runtime deadline is Started + Rules.MaxRuntime; nothing postpones
// it. A timeout of 0 means never.
//
// # Warnings
//
// Each kind has a lead L (idle: min(10m, T/3); runtime: min(30m, R/3)) and
// two warnings ("80 %" and "95 %" for idle, "75 %" and "90 %" for runtime,
// moved earlier where needed so that the first comes at least 2L and the
// last at least L before the deadline). A stop happens only once the last
// warning for the current deadline was delivered at least L earlier; when a
// deadline arrives without it (a restart, pressure, a sweep gap) the last
// warning goes out at once and the stop waits L. Warnings belong to one
// deadline: when the idle deadline moves (activity, keep-alive, pressure)
// the idle warnings start again; runtime warnings never reset. A clock that
// goes backwards delays stops, never causes one.
//
// # Exemptions
//
// An exempt user (see LoadExemptions) gets the same warnings marked
// "(info)", and no stop of the kinds exempted. Warnings given as
// information do not count once the exemption ends: the real ones follow.
package lifecycle
