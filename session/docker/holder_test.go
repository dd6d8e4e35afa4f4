package docker

import (
	"slices"
	"testing"

	"github.com/ds01/ds01-gateway/session/runtime"
)

// A holder runs nothing of the user's: nobody, no capabilities, no
// privilege gain, a read-only root, no mounts, tiny limits, and the
// hostname its project's container will show.
func TestHolderConfigIsLockedDown(t *testing.T) {
	cfg, host := holderConfig(runtime.HolderSpec{Name: "n", Image: "base", Hostname: "proj", Network: "ds01-u1",
		Labels: map[string]string{"ds01.role": "netholder", labelIODir: "/forged"}})
	if cfg.User != "65534:65534" || cfg.Hostname != "proj" || cfg.Image != "base" || !slices.Equal(cfg.Cmd, idleCmd) || len(cfg.Entrypoint) != 0 {
		t.Errorf("config %+v", cfg)
	}
	if cfg.Labels[labelIODir] != "" || cfg.Labels["ds01.role"] != "netholder" {
		t.Errorf("labels %v", cfg.Labels)
	}
	if !slices.Equal(host.CapDrop, []string{"ALL"}) || !slices.Contains(host.SecurityOpt, "no-new-privileges:true") ||
		!host.ReadonlyRootfs || len(host.Mounts) != 0 || len(host.Binds) != 0 || host.Init == nil || !*host.Init ||
		host.LogConfig.Type != "none" || string(host.NetworkMode) != "ds01-u1" || host.Privileged {
		t.Errorf("host config %+v", host)
	}
	if host.PidsLimit == nil || *host.PidsLimit != 8 || host.Memory != 32<<20 || host.NanoCPUs == 0 || host.NanoCPUs > 1e8 {
		t.Errorf("limits: pids %v memory %d cpus %d", host.PidsLimit, host.Memory, host.NanoCPUs)
	}
}
