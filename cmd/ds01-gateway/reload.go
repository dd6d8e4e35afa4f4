package main

import (
	"fmt"
	"log/slog"
	"reflect"
	"slices"
	"strings"

	"github.com/ds01/ds01-gateway/session"
	"github.com/ds01/ds01-gateway/session/gpu"
	"github.com/ds01/ds01-gateway/session/lifecycle"
)

// reloadable are the configuration keys a SIGHUP applies while serving;
// every other key needs a restart (and a reload says so). The limits
// file and the exemptions file are read again too, whether or not their
// paths changed (a changed path needs a restart).
var reloadable = map[string]bool{
	"log_level":                     true,
	"lifecycle.idle_timeout":        true,
	"lifecycle.idle_timeout_no_gpu": true,
	"lifecycle.max_runtime":         true,
	"lifecycle.cpu_idle_threshold":  true,
	"lifecycle.gpu_idle_threshold":  true,
	"lifecycle.gpu_hold_after_stop": true,
	"lifecycle.keep_alive_window":   true,
	"lifecycle.keep_max":            true,
	"lifecycle.keep_total":          true,
	"lifecycle.pressure_idle_floor": true,
	"lifecycle.pressure_keep_cap":   true,
}

// reloader applies a changed configuration on SIGHUP. A file that does not
// load or validate, or a limits file that does not parse, changes nothing:
// the running values stay, and the log says why.
type reloader struct {
	log *slog.Logger
	// load reads and validates the configuration as serve did (with its
	// flags over the file).
	load func() (Config, error)
	cur  Config // as in force: reloaded keys new, the others as started

	level            *slog.LevelVar
	setPolicy        func(*gpu.Policy) error // nil: no limits file at start
	setRules         func(lifecycle.Rules)
	reloadExemptions func() error // nil: the lifecycle is off
	reopenEvents     func() error // nil: no events file
}

// newReloader is the reloader of a gateway started with cfg.
func newReloader(cfg Config, load func() (Config, error), level *slog.LevelVar, mgr *session.Manager, events *eventsFile, log *slog.Logger) *reloader {
	r := &reloader{log: log, load: load, cur: cfg, level: level, setRules: mgr.SetLifecycleRules, reopenEvents: events.reopen()}
	if cfg.LimitsFile != "" {
		r.setPolicy = mgr.GPUs().SetPolicy
	}
	if rp := mgr.Reaper(); rp != nil {
		r.reloadExemptions = rp.ReloadExemptions
	}
	return r
}

// reload reads the configuration file again, with serve's flags over it
// (listen overrides listen), and validates it.
func (c *common) reload(listen string) (Config, error) {
	next, err := c.load()
	if err != nil {
		return next, err
	}
	if listen != "" {
		next.Listen = listen
	}
	if err := next.Validate(); err != nil {
		return next, fmt.Errorf("config: %w", err)
	}
	return next, nil
}

func (r *reloader) reload() {
	r.log.Info("reload: SIGHUP")
	if r.reopenEvents != nil {
		if err := r.reopenEvents(); err != nil {
			r.log.Error("reload: events file not reopened; writing on to the old one", "err", err)
		}
	}
	next, err := r.load()
	if err != nil {
		r.log.Error("reload: configuration not applied; the running values stay", "err", err)
		return
	}
	var pol *gpu.Policy
	if r.setPolicy != nil && next.LimitsFile == r.cur.LimitsFile {
		if pol, err = gpu.LoadPolicy(next.LimitsFile); err != nil {
			r.log.Error("reload: configuration not applied; the running values stay", "err", err)
			return
		}
	}

	restart := false
	for _, c := range diffConfig(r.cur, next) {
		if !reloadable[c.key] {
			r.log.Warn("reload: changed, needs a restart", "key", c.key, "running", c.old, "file", c.new)
			restart = true
			continue
		}
		r.log.Info("reload: changed", "key", c.key, "old", c.old, "new", c.new)
	}
	r.level.Set(parseLevel(next.LogLevel))
	r.cur.LogLevel = next.LogLevel
	r.cur.Lifecycle = withRules(r.cur.Lifecycle, next.Lifecycle)
	if r.setRules != nil {
		r.setRules(r.cur.lifecycleConfig(nil).Rules)
	}
	if pol != nil {
		if err := r.setPolicy(pol); err != nil {
			r.log.Error("reload: limits file", "err", err)
		} else {
			r.log.Info("reload: limits file applied", "path", next.LimitsFile, "groups", pol.Groups())
		}
	}
	if r.reloadExemptions != nil {
		if err := r.reloadExemptions(); err != nil {
			r.log.Error("reload: exemptions file not applied; the last good one stays", "err", err)
		}
	}
	if restart {
		r.log.Warn("reload: done; some changes wait for a restart (systemctl restart ds01-gateway)")
		return
	}
	r.log.Info("reload: done")
}

// withRules is cur with next's reloadable lifecycle keys.
func withRules(cur, next Lifecycle) Lifecycle {
	cur.IdleTimeout, cur.IdleTimeoutNoGPU, cur.MaxRuntime = next.IdleTimeout, next.IdleTimeoutNoGPU, next.MaxRuntime
	cur.CPUIdleThreshold, cur.GPUIdleThreshold = next.CPUIdleThreshold, next.GPUIdleThreshold
	cur.GPUHoldAfterStop = next.GPUHoldAfterStop
	cur.KeepAliveWindow, cur.KeepMax, cur.KeepTotal = next.KeepAliveWindow, next.KeepMax, next.KeepTotal
	cur.PressureIdleFloor, cur.PressureKeepCap = next.PressureIdleFloor, next.PressureKeepCap
	return cur
}

// change is one configuration key whose value differs.
type change struct{ key, old, new string }

// diffConfig lists the keys (YAML paths, e.g. lifecycle.max_runtime)
// whose values differ, sorted.
func diffConfig(a, b Config) []change {
	fa, fb := map[string]string{}, map[string]string{}
	flatten(reflect.ValueOf(a), "", fa)
	flatten(reflect.ValueOf(b), "", fb)
	var out []change
	for k, va := range fa {
		if vb := fb[k]; va != vb {
			out = append(out, change{k, va, vb})
		}
	}
	slices.SortFunc(out, func(x, y change) int { return strings.Compare(x.key, y.key) })
	return out
}

// flatten writes v's fields by YAML path, as text.
func flatten(v reflect.Value, prefix string, out map[string]string) {
	t := v.Type()
	for i := 0; i < t.NumField(); i++ {
		tag := strings.Split(t.Field(i).Tag.Get("yaml"), ",")[0]
		if tag == "" {
			continue
		}
		f := v.Field(i)
		key := prefix + tag
		switch val := f.Interface().(type) {
		case Duration:
			out[key] = val.String()
		case Size:
			out[key] = fmt.Sprint(int64(val))
		default:
			if f.Kind() == reflect.Struct {
				flatten(f, key+".", out)
				continue
			}
			out[key] = fmt.Sprint(val)
		}
	}
}
