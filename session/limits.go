package session

import (
	"errors"

	"github.com/ds01/ds01-gateway/session/gpu"
	"github.com/ds01/ds01-gateway/session/runtime"
	"github.com/ds01/ds01-gateway/store"
)

// ErrLimit is wrapped by refusals that name a limit of the user's.
var ErrLimit = errors.New("limit reached")

// userLimits resolves each user's limits (DS01's resource-limits.yaml)
// and the container limits that follow from them. Launches, builds and
// transfers all ask it.
type userLimits struct {
	cfg  *Config
	live *reloadable // the policy a reload set, if any; else cfg.Policy
}

// of resolves the user's limits from the policy, with the group they come
// from.
func (p userLimits) of(u store.User) (gpu.Limits, string) {
	pol := p.cfg.Policy
	if p.live != nil {
		if lp := p.live.policy.Load(); lp != nil {
			pol = lp
		}
	}
	if pol == nil {
		return gpu.Limits{}, ""
	}
	return pol.For(u.Name, u.Group)
}

// container is the runtime limits of the user's containers: the
// configuration's, overridden by the limits file where it sets a value.
func (p userLimits) container(l gpu.Limits) runtime.Limits {
	out := p.cfg.Limits
	if !p.cfg.LimitsFromPolicy {
		return out
	}
	if l.Memory != nil {
		out.Memory = *l.Memory
	}
	if l.ShmSize != nil {
		out.ShmSize = *l.ShmSize
	}
	if l.PidsLimit != nil {
		out.PidsLimit = *l.PidsLimit
	}
	if l.MaxCPUs != nil {
		n := int64(*l.MaxCPUs * 1e9)
		if p.cfg.MaxNanoCPUs > 0 && n > p.cfg.MaxNanoCPUs {
			n = p.cfg.MaxNanoCPUs // Docker refuses more than the host has
		}
		out.NanoCPUs = n
	}
	return out
}
