package session

import (
	"errors"
	"sync/atomic"

	"github.com/ds01/ds01-gateway/session/gpu"
	"github.com/ds01/ds01-gateway/session/lifecycle"
)

// reloadable is what a reload (SIGHUP) may change while the gateway serves:
// the limits file's policy and the lifecycle rules. Readers load them per
// decision, so a change applies to the next login or sweep; nothing that
// runs is touched. Until a reload stores one, the configuration's values
// are in force.
type reloadable struct {
	policy atomic.Pointer[gpu.Policy]
	rules  atomic.Pointer[lifecycle.Rules]
}

// lifecycleRules are the lifecycle rules in force: the configuration's
// until a reload set others.
func (d *deps) lifecycleRules() lifecycle.Rules {
	if d.live != nil {
		if r := d.live.rules.Load(); r != nil {
			return *r
		}
	}
	return d.cfg.Lifecycle.Rules
}

// SetPolicy puts p (a limits file read again) in force for every decision
// from now on: logins, GPU requests, builds, transfers and the lifecycle.
// Containers that run keep the limits they were started with.
func (g *GPUs) SetPolicy(p *gpu.Policy) error {
	if p == nil {
		return errors.New("set policy: nil")
	}
	g.live.policy.Store(p)
	return nil
}

// SetLifecycleRules puts the lifecycle block's rules in force from the
// reaper's next sweep (the limits file's per-group values still take
// precedence over them).
func (m *Manager) SetLifecycleRules(r lifecycle.Rules) {
	m.live.rules.Store(&r)
}

// ReloadExemptions reads the exemptions file now, changed or not. A file
// that does not parse keeps the last good exemptions and is the error.
func (r *Reaper) ReloadExemptions() error {
	return r.exempt.reload(r.log)
}
