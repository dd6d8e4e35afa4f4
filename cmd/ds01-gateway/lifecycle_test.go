package main

import (
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func TestLifecycleBlock(t *testing.T) {
	cfg, err := loadConfig(writeConfig(t, `
limits_file: /etc/ds01/resource-limits.yaml
lifecycle:
  check_interval: 2s
  idle_timeout: 20s
  max_runtime: 70s
  cpu_idle_threshold: 5
  sigterm_grace: 3s
`))
	if err != nil {
		t.Fatal(err)
	}
	if err := cfg.Validate(); err != nil {
		t.Fatal(err)
	}
	lc := cfg.lifecycleConfig(nil)
	if lc.CheckInterval != 2*time.Second || lc.Rules.IdleTimeout != 20*time.Second || lc.Rules.MaxRuntime != 70*time.Second ||
		lc.Rules.CPUIdleThreshold != 5 || lc.SigtermGrace != 3*time.Second {
		t.Errorf("block not applied: %+v", lc)
	}
	// Keys the file leaves out keep DS01's defaults.
	if lc.Rules.GPUIdleThreshold != 5 || lc.Rules.IdleTimeoutNoGPU != 24*time.Hour || lc.Rules.GPUHoldAfterStop != 15*time.Minute || lc.PressureThreshold != 0.8 {
		t.Errorf("defaults lost: %+v", lc)
	}
	if want := filepath.Join("/etc/ds01", "lifecycle-exemptions.yaml"); lc.ExemptionsFile != want {
		t.Errorf("exemptions file %q, want DS01's beside the limits file %q", lc.ExemptionsFile, want)
	}
	if hint := lc.KeepHint("p"); !strings.HasSuffix(hint, "container-keep p") || !strings.HasPrefix(hint, "ssh ds01@") {
		t.Errorf("keep hint %q", hint)
	}
}

func TestLifecycleBlockErrors(t *testing.T) {
	for _, tc := range []struct{ body, want string }{
		{"lifecycle:\n  idle_timeot: 1m\n", "lifecycle.idle_timeot: unknown option"},
		{"lifecycle:\n  idle_timeout: soon\n", "lifecycle.idle_timeout"},
		{"lifecycle:\n  check_interval: 100ms\n", "lifecycle.check_interval"},
		{"lifecycle:\n  max_runtime: -1h\n", "lifecycle.max_runtime"},
		{"lifecycle:\n  gpu_idle_threshold: 150\n", "lifecycle.gpu_idle_threshold"},
		{"lifecycle:\n  pressure_threshold: 0\n", "lifecycle.pressure_threshold"},
		{"lifecycle:\n  keep_max: 10h\n  keep_total: 5h\n", "lifecycle.keep_total"},
	} {
		cfg, err := loadConfig(writeConfig(t, tc.body))
		if err == nil {
			err = cfg.Validate()
		}
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%q: %v, want an error naming %s", tc.body, err, tc.want)
		}
	}
}
