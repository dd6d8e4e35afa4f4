package lifecycle

import "time"

// Input is what the session layer knows about a container at a sweep,
// besides its State and Sample.
type Input struct {
	Rules Rules
	// HasGPU: the container holds at least one GPU slot.
	HasGPU bool
	// Attached is the number of open connections.
	Attached int
	// Detached: no connection, but user processes still run.
	Detached bool
	// Pressure: someone waits for a GPU or most GPU-equivalents are held.
	Pressure bool
	// Exempt is the owner's exemption now (Exemptions.For).
	Exempt Exemption
	// Project names the container in notices.
	Project string
	// KeepHint is how the user runs container-keep, e.g.
	// "ssh ds01@host container-keep my-thesis"; "" = "container-keep <project>".
	KeepHint string
}

// Sample is one sweep's reading of a container.
type Sample struct {
	// At is when it was read; zero means now.
	At time.Time
	// CPU is the container's cumulative CPU time.
	CPU time.Duration
	// NoCPU: CPU could not be read. The sweep then counts as active: a job
	// the gateway cannot see is not stopped for idleness.
	NoCPU bool
	// GPUUtil is the utilisation in percent of each GPU slot held.
	GPUUtil []int
	// LastInput is when a session last typed into a pty (zero: never).
	LastInput time.Time
	// KeepAlive is the mtime of /workspace/.keep-alive (zero: no file).
	KeepAlive time.Time
	// SessionStarted is when the latest shell or exec session started.
	SessionStarted time.Time
}

// State is what Decide remembers between sweeps; the session layer stores it
// as JSON so that a gateway restart keeps deadlines and warnings. The zero
// State is a container that starts at the first Decide.
type State struct {
	Started    time.Time `json:"started"`
	LastActive time.Time `json:"last_active"`

	// The CPU reading of the last sweep, the base of the next CPU delta.
	LastCPU      time.Duration `json:"last_cpu_ns"`
	LastSampleAt time.Time     `json:"last_sample_at,omitzero"`

	// IdleWarned is how many idle warnings went out for the deadline
	// IdleWarnedFor (0, 1 or 2), the last at IdleWarnedAt; IdleWarnedInfo
	// says they were informational (exempt), so do not count for a stop.
	IdleWarned     int       `json:"idle_warned,omitempty"`
	IdleWarnedAt   time.Time `json:"idle_warned_at,omitzero"`
	IdleWarnedFor  time.Time `json:"idle_warned_for,omitzero"`
	IdleWarnedInfo bool      `json:"idle_warned_info,omitempty"`

	RuntimeWarned     int       `json:"runtime_warned,omitempty"`
	RuntimeWarnedAt   time.Time `json:"runtime_warned_at,omitzero"`
	RuntimeWarnedInfo bool      `json:"runtime_warned_info,omitempty"`

	// KeepUntil is the container-keep lease; KeepGranted sums every lease
	// granted to this container, against Rules.KeepTotal.
	KeepUntil   time.Time     `json:"keep_until,omitzero"`
	KeepGranted time.Duration `json:"keep_granted_ns,omitempty"`
	// KeepAliveSeen is the last .keep-alive mtime seen; Kept says a file
	// window or a lease was running at the last sweep.
	KeepAliveSeen time.Time `json:"keep_alive_seen,omitzero"`
	Kept          bool      `json:"kept,omitempty"`

	// PressureTold: the owner was told during this pressure episode that
	// someone waits for a GPU.
	PressureTold bool `json:"pressure_told,omitempty"`
}

// Decision is what the session layer does after a sweep.
type Decision struct {
	// State replaces the stored one.
	State State
	// Notices go to every open session, .ds01-alerts and the store.
	Notices []Notice
	// Stop, when set, says to stop the container now; its Text is the
	// notice to deliver (it is not repeated in Notices).
	Stop *Stop
	// Deadline is when the container stops next if nothing changes, zero
	// if never; DeadlineReason is "idle" or "max runtime".
	Deadline       time.Time
	DeadlineReason string
	// IdleSince is the last activity, zero when this sweep was active.
	IdleSince time.Time
	// Events go to the store's events.
	Events []Event
}

// Notice is one line for the user.
type Notice struct {
	// Kind is NoticeIdle, NoticeRuntime or NoticePressure.
	Kind string
	// Text is one line starting "ds01: ", no newline.
	Text string
}

// Notice kinds.
const (
	NoticeIdle     = "idle_warning"
	NoticeRuntime  = "runtime_warning"
	NoticePressure = "pressure"
)

// Stop kinds; also Decision.DeadlineReason values.
const (
	StopIdle    = "idle"
	StopRuntime = "runtime"

	ReasonIdle    = "idle"
	ReasonRuntime = "max runtime"
)

// Stop is a decision to stop the container.
type Stop struct {
	Kind   string // StopIdle or StopRuntime
	Text   string // the notice for the user
	Reason string // for the event and the log
}

// Event is one store event.
type Event struct {
	Type     string
	Details  string
	Duration time.Duration // idle so far, runtime so far, or keep-alive length
}

// Event types Decide emits. The session layer adds container.detached,
// container.work_ended, gpu.pressure_on|off (one per episode, not per
// container) and gpu.hold*; Keep emits none, so the caller records
// EventKeepaliveSet for a lease.
const (
	EventIdleWarning      = "container.idle_warning"
	EventIdleStop         = "container.idle_stop"
	EventRuntimeWarning   = "container.runtime_warning"
	EventRuntimeStop      = "container.runtime_stop"
	EventKeepaliveSet     = "container.keepalive_set"
	EventKeepaliveExpired = "container.keepalive_expired"
)
