package main

import (
	"strings"
	"testing"
	"time"
)

func TestNetworkHolderKeys(t *testing.T) {
	cfg, err := loadConfig(writeConfig(t, ""))
	if err != nil || cfg.Validate() != nil {
		t.Fatalf("defaults: %v", err)
	}
	if cfg.NetworkLinger.Duration != 24*time.Hour || cfg.NetworkHoldersMax != 200 {
		t.Errorf("defaults: network_linger %v, network_holders_max %d; want 24h, 200", cfg.NetworkLinger, cfg.NetworkHoldersMax)
	}
	cfg, err = loadConfig(writeConfig(t, "network_linger: 0s\nnetwork_holders_max: 3\n"))
	if err != nil || cfg.Validate() != nil || cfg.NetworkLinger.Duration != 0 || cfg.NetworkHoldersMax != 3 {
		t.Fatalf("network_linger: 0s: %+v, %v", cfg.NetworkLinger, err)
	}
	for _, tc := range []struct{ body, want string }{
		{"network_linger: -1h", "network_linger: must not be negative"},
		{"network_linger: later", "network_linger: want a duration"},
		{"network_holders_max: 0", "network_holders_max: want 1 to 10000"},
	} {
		cfg, err := loadConfig(writeConfig(t, tc.body))
		if err == nil {
			err = cfg.Validate()
		}
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%q: got %v, want %q", tc.body, err, tc.want)
		}
	}
}
