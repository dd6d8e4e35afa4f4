package main

import (
	"context"
	"fmt"
	"log/slog"
	"net/netip"
	"time"

	"github.com/ds01/ds01-gateway/session/hostfw"
)

// firewallCheck is how often the gateway makes sure its host firewall rule
// is still there: a firewall service's reload can flush INPUT at any time.
const firewallCheck = time.Minute

// startHostFirewall installs the rule that keeps the network pool's
// containers off the host's own services, and keeps it installed while
// ctx lasts; with host_firewall off it removes the pool's rule instead.
// Stopping the gateway leaves the rule: the containers keep running, and
// the next start adopts them.
func startHostFirewall(ctx context.Context, cfg Config, log *slog.Logger) error {
	pool := netip.MustParsePrefix(cfg.NetworkPool).Masked() // validated
	if !cfg.HostFirewall {
		if err := hostfw.Remove(ctx, pool, log); err != nil {
			return fmt.Errorf("host_firewall is off, but its rule could not be removed: %w", err)
		}
		log.Warn("host firewall off: containers can reach every service of this host", "pool", pool)
		return nil
	}
	fc := hostfw.Config{Pool: pool, Resolvers: hostfw.LocalResolvers("/etc/resolv.conf")}
	for _, p := range cfg.HostFirewallAllow {
		port, _ := hostfw.ParsePort(p) // validated
		fc.Allow = append(fc.Allow, port)
	}
	fw, err := hostfw.New(fc, log)
	if err == nil {
		err = fw.Install(ctx)
	}
	if err != nil {
		return fmt.Errorf("%w (host_firewall: false runs the gateway without it)", err)
	}
	log.Info("host firewall installed", "chain", hostfw.Chain(pool), "pool", pool, "allow", cfg.HostFirewallAllow, "resolvers", fc.Resolvers)
	go fw.Keep(ctx, firewallCheck)
	return nil
}
