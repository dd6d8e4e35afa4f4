package main

import (
	"strings"
	"testing"
	"time"
)

func TestHostFirewallAndTransferKeys(t *testing.T) {
	cfg, err := loadConfig(writeConfig(t, ""))
	if err != nil {
		t.Fatal(err)
	}
	if !cfg.HostFirewall || len(cfg.HostFirewallAllow) != 0 || cfg.TransferTimeout.Duration != 24*time.Hour {
		t.Errorf("defaults: host_firewall %v, allow %v, transfer_timeout %v", cfg.HostFirewall, cfg.HostFirewallAllow, cfg.TransferTimeout)
	}

	cfg, err = loadConfig(writeConfig(t, "host_firewall: false\nhost_firewall_allow: [3128, 8125/udp, 9000-9100/tcp]\ntransfer_timeout: 2h\n"))
	if err != nil {
		t.Fatal(err)
	}
	if err := cfg.Validate(); err != nil {
		t.Fatal(err)
	}
	if cfg.HostFirewall || strings.Join(cfg.HostFirewallAllow, ",") != "3128,8125/udp,9000-9100/tcp" || cfg.TransferTimeout.Duration != 2*time.Hour {
		t.Errorf("keys not applied: %v %v %v", cfg.HostFirewall, cfg.HostFirewallAllow, cfg.TransferTimeout)
	}

	for body, want := range map[string]string{
		"host_firewall_allow: [80, 70000]\n": "host_firewall_allow[1]: want a port",
		"host_firewall_allow: [53/icmp]\n":   "host_firewall_allow[0]: want tcp or udp",
		"transfer_timeout: -1s\n":            "transfer_timeout: must not be negative",
		"host_firewall: maybe\n":             "host_firewall:",
	} {
		cfg, err := loadConfig(writeConfig(t, body))
		if err == nil {
			err = cfg.Validate()
		}
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("%q: got %v, want an error containing %q", body, err, want)
		}
	}
}
