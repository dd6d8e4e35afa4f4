package main

import (
	"strings"
	"testing"
)

func TestConnLimitsConfig(t *testing.T) {
	cfg, err := loadConfig(writeConfig(t, ""))
	if err != nil {
		t.Fatal(err)
	}
	if cfg.MaxSessions != 10 || cfg.MaxForwardChannels != 256 || cfg.MaxStartups != 100 || cfg.MaxStartupsPerSource != 10 {
		t.Errorf("defaults: sessions %d, forwards %d, startups %d, per source %d",
			cfg.MaxSessions, cfg.MaxForwardChannels, cfg.MaxStartups, cfg.MaxStartupsPerSource)
	}
	for _, tc := range []struct{ body, want string }{
		{"max_sessions: 0", "max_sessions: must be at least 1"},
		{"max_forward_channels: -1", "max_forward_channels: must be at least 1"},
		{"max_startups: 0", "max_startups: must be at least 1"},
		{"max_startups: 5\nmax_startups_per_source: 6", "max_startups_per_source: must not exceed max_startups"},
		{"max_sessions: many", "max_sessions:"},
	} {
		cfg, err := loadConfig(writeConfig(t, tc.body))
		if err == nil {
			err = cfg.Validate()
		}
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%q: got error %v, want it to contain %q", tc.body, err, tc.want)
		}
	}
	cfg, err = loadConfig(writeConfig(t, "max_sessions: 3\nmax_startups: 20\nmax_startups_per_source: 20"))
	if err == nil {
		err = cfg.Validate()
	}
	if err != nil || cfg.MaxSessions != 3 || cfg.MaxStartupsPerSource != 20 {
		t.Errorf("set values: %v %+v", err, cfg)
	}
}
