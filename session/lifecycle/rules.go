package lifecycle

import (
	"time"

	"github.com/ds01/ds01-gateway/session/gpu"
)

// Rules are the limits one container runs under: the gateway's lifecycle
// block, overridden per user by the limits file (RulesFrom). A duration of 0
// means never (no timeout, no hold).
type Rules struct {
	// IdleTimeout stops an idle GPU container, attached or not.
	IdleTimeout time.Duration
	// IdleTimeoutNoGPU stops an idle detached container without GPUs;
	// attached ones are never stopped for idleness.
	IdleTimeoutNoGPU time.Duration
	// MaxRuntime stops any container this long after it started.
	MaxRuntime time.Duration
	// CPUIdleThreshold is in percent of one core; 0 ignores CPU use.
	CPUIdleThreshold float64
	// GPUIdleThreshold is in percent utilisation of a slot; 0 ignores GPUs.
	GPUIdleThreshold float64
	// GPUHoldAfterStop is not used by Decide; it travels here so that one
	// RulesFrom resolves every per-user lifecycle value.
	GPUHoldAfterStop time.Duration
	// KeepAliveWindow is how long a touch of /workspace/.keep-alive
	// postpones an idle stop; 0 ignores the file.
	KeepAliveWindow time.Duration
	// KeepMax is the longest single container-keep lease; 0 turns
	// container-keep off.
	KeepMax time.Duration
	// KeepTotal caps all leases of one container together; 0 = no cap
	// beyond the maximum runtime.
	KeepTotal time.Duration
	// PressureIdleFloor: under GPU pressure IdleTimeout halves, but never
	// below this (nor below IdleTimeout itself when that is smaller).
	PressureIdleFloor time.Duration
	// PressureKeepCap: under GPU pressure keep-alive (file or lease)
	// postpones an idle stop by at most this past the idle deadline.
	PressureKeepCap time.Duration
}

// DefaultRules are the lifecycle block's defaults (design11.md), which are
// DS01's where DS01 has one.
func DefaultRules() Rules {
	return Rules{
		IdleTimeout:       30 * time.Minute,
		IdleTimeoutNoGPU:  24 * time.Hour,
		MaxRuntime:        24 * time.Hour,
		CPUIdleThreshold:  2,
		GPUIdleThreshold:  5,
		GPUHoldAfterStop:  15 * time.Minute,
		KeepAliveWindow:   24 * time.Hour,
		KeepMax:           12 * time.Hour,
		KeepTotal:         48 * time.Hour,
		PressureIdleFloor: 10 * time.Minute,
		PressureKeepCap:   time.Hour,
	}
}

// RulesFrom applies one user's limits-file values (gpu.Policy.For) over the
// block's: a key the file sets, in any tier, wins; a null there means never
// (0); a key absent from every tier keeps the block's value.
func RulesFrom(block Rules, l gpu.Limits) Rules {
	r := block
	optDuration(&r.IdleTimeout, l.IdleTimeout)
	optDuration(&r.MaxRuntime, l.MaxRuntime)
	optDuration(&r.GPUHoldAfterStop, l.GPUHoldAfterStop)
	if l.CPUIdleThreshold.Set && !l.CPUIdleThreshold.Never {
		r.CPUIdleThreshold = l.CPUIdleThreshold.V
	}
	if l.GPUIdleThreshold.Set && !l.GPUIdleThreshold.Never {
		r.GPUIdleThreshold = l.GPUIdleThreshold.V
	}
	return r
}

func optDuration(dst *time.Duration, o gpu.Opt[time.Duration]) {
	switch {
	case !o.Set:
	case o.Never:
		*dst = 0
	default:
		*dst = o.V
	}
}

// idleTimeout is the timeout that applies to the container now, before
// pressure; 0 when it is never stopped for idleness.
func (in Input) idleTimeout() time.Duration {
	if in.HasGPU {
		return in.Rules.IdleTimeout
	}
	if in.Detached {
		return in.Rules.IdleTimeoutNoGPU
	}
	return 0
}

// effectiveIdle is T after pressure: halved for GPU containers, but never
// below the floor or T itself.
func (in Input) effectiveIdle() time.Duration {
	t := in.idleTimeout()
	if t <= 0 || !in.Pressure || !in.HasGPU {
		return t
	}
	return max(t/2, min(t, in.Rules.PressureIdleFloor))
}
