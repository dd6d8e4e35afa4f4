package main

import (
	"errors"
	"fmt"
	"log/slog"
	"path/filepath"
	"time"

	"github.com/ds01/ds01-gateway/session"
	"github.com/ds01/ds01-gateway/session/lifecycle"
	"github.com/ds01/ds01-gateway/session/runtime"
)

// Lifecycle is the `lifecycle:` block: when detached and idle containers
// are reclaimed (session/lifecycle). A limits_file's per-user and per-group
// idle_timeout_h, max_runtime_h, gpu_idle_threshold, cpu_idle_threshold and
// gpu_hold_after_stop_h take precedence over it.
type Lifecycle struct {
	CheckInterval     Duration `yaml:"check_interval"`
	IdleTimeout       Duration `yaml:"idle_timeout"`
	IdleTimeoutNoGPU  Duration `yaml:"idle_timeout_no_gpu"`
	MaxRuntime        Duration `yaml:"max_runtime"`
	CPUIdleThreshold  float64  `yaml:"cpu_idle_threshold"`
	GPUIdleThreshold  float64  `yaml:"gpu_idle_threshold"`
	SigtermGrace      Duration `yaml:"sigterm_grace"`
	GPUHoldAfterStop  Duration `yaml:"gpu_hold_after_stop"`
	KeepAliveWindow   Duration `yaml:"keep_alive_window"`
	KeepMax           Duration `yaml:"keep_max"`
	KeepTotal         Duration `yaml:"keep_total"`
	PressureThreshold float64  `yaml:"pressure_threshold"`
	PressureIdleFloor Duration `yaml:"pressure_idle_floor"`
	PressureKeepCap   Duration `yaml:"pressure_keep_cap"`
	// ExemptionsFile is DS01's lifecycle-exemptions.yaml; by default the
	// one beside limits_file.
	ExemptionsFile string `yaml:"exemptions_file"`
}

// defaultLifecycle follows DS01 (resource-limits.yaml defaults, its cron
// jobs' thresholds) where it has a value.
func defaultLifecycle() Lifecycle {
	return Lifecycle{
		CheckInterval:     Duration{time.Minute},
		IdleTimeout:       Duration{30 * time.Minute},
		IdleTimeoutNoGPU:  Duration{24 * time.Hour},
		MaxRuntime:        Duration{24 * time.Hour},
		CPUIdleThreshold:  2,
		GPUIdleThreshold:  5,
		SigtermGrace:      Duration{time.Minute},
		GPUHoldAfterStop:  Duration{15 * time.Minute},
		KeepAliveWindow:   Duration{24 * time.Hour},
		KeepMax:           Duration{12 * time.Hour},
		KeepTotal:         Duration{48 * time.Hour},
		PressureThreshold: 0.8,
		PressureIdleFloor: Duration{10 * time.Minute},
		PressureKeepCap:   Duration{time.Hour},
	}
}

func (l *Lifecycle) validate() error {
	if l.CheckInterval.Duration < time.Second {
		return fmt.Errorf("lifecycle.check_interval: must be at least 1s, got %s", l.CheckInterval.Duration)
	}
	for _, d := range []struct {
		name string
		v    time.Duration
	}{
		{"idle_timeout", l.IdleTimeout.Duration}, {"idle_timeout_no_gpu", l.IdleTimeoutNoGPU.Duration},
		{"max_runtime", l.MaxRuntime.Duration}, {"sigterm_grace", l.SigtermGrace.Duration},
		{"gpu_hold_after_stop", l.GPUHoldAfterStop.Duration}, {"keep_alive_window", l.KeepAliveWindow.Duration},
		{"keep_max", l.KeepMax.Duration}, {"keep_total", l.KeepTotal.Duration},
		{"pressure_idle_floor", l.PressureIdleFloor.Duration}, {"pressure_keep_cap", l.PressureKeepCap.Duration},
	} {
		if d.v < 0 {
			return fmt.Errorf("lifecycle.%s: must not be negative (0 turns it off), got %s", d.name, d.v)
		}
	}
	for _, p := range []struct {
		name string
		v    float64
	}{{"cpu_idle_threshold", l.CPUIdleThreshold}, {"gpu_idle_threshold", l.GPUIdleThreshold}} {
		if p.v < 0 || p.v > 100 {
			return fmt.Errorf("lifecycle.%s: want a percentage from 0 to 100, got %g", p.name, p.v)
		}
	}
	if l.PressureThreshold <= 0 || l.PressureThreshold > 1 {
		return fmt.Errorf("lifecycle.pressure_threshold: want a share of the GPUs above 0 and at most 1, got %g", l.PressureThreshold)
	}
	if l.KeepTotal.Duration < l.KeepMax.Duration {
		return errors.New("lifecycle.keep_total: must be at least keep_max")
	}
	return nil
}

// exemptionsPath is the exemptions file: the block's, or DS01's beside the
// limits file; "" when there is neither.
func (c *Config) exemptionsPath() string {
	if c.Lifecycle.ExemptionsFile != "" {
		return c.Lifecycle.ExemptionsFile
	}
	if c.LimitsFile == "" {
		return ""
	}
	return filepath.Join(filepath.Dir(c.LimitsFile), "lifecycle-exemptions.yaml")
}

// lifecycleConfig is the session layer's view of the block.
func (c *Config) lifecycleConfig(s runtime.Sampler) session.LifecycleConfig {
	l := c.Lifecycle
	login, host := c.CommandLogin, c.publicName()
	return session.LifecycleConfig{
		Rules: lifecycle.Rules{
			IdleTimeout:       l.IdleTimeout.Duration,
			IdleTimeoutNoGPU:  l.IdleTimeoutNoGPU.Duration,
			MaxRuntime:        l.MaxRuntime.Duration,
			CPUIdleThreshold:  l.CPUIdleThreshold,
			GPUIdleThreshold:  l.GPUIdleThreshold,
			GPUHoldAfterStop:  l.GPUHoldAfterStop.Duration,
			KeepAliveWindow:   l.KeepAliveWindow.Duration,
			KeepMax:           l.KeepMax.Duration,
			KeepTotal:         l.KeepTotal.Duration,
			PressureIdleFloor: l.PressureIdleFloor.Duration,
			PressureKeepCap:   l.PressureKeepCap.Duration,
		},
		CheckInterval:     l.CheckInterval.Duration,
		SigtermGrace:      l.SigtermGrace.Duration,
		PressureThreshold: l.PressureThreshold,
		ExemptionsFile:    c.exemptionsPath(),
		KeepHint: func(project string) string {
			return fmt.Sprintf("ssh %s@%s container-keep %s", login, host, project)
		},
		Sampler: s,
	}
}

// sampler is the runtime's sampler, if it has one; without one the
// lifecycle is off (containers retire at the grace), which the log says.
func sampler(rt runtime.Runtime, log *slog.Logger) runtime.Sampler {
	s, ok := rt.(runtime.Sampler)
	if !ok {
		log.Warn("the runtime samples no usage: idle and detached containers are not reclaimed", "runtime", fmt.Sprintf("%T", rt))
	}
	return s
}
