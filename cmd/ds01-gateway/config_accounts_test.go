package main

import (
	"strings"
	"testing"
)

func TestAccountsConfig(t *testing.T) {
	cfg, err := loadConfig(writeConfig(t, ""))
	if err != nil || cfg.UsersFrom != "store" || cfg.MinUID != 1000 || cfg.AllowedGroups != nil {
		t.Fatalf("defaults: %q %d %v %v", cfg.UsersFrom, cfg.MinUID, cfg.AllowedGroups, err)
	}
	for _, tc := range []struct{ body, want string }{
		{"users_from: ldap", `users_from: want store or host, got "ldap"`},
		{"users_from: host\nmin_uid: 0", "min_uid: must be at least 1"},
		{"allowed_groups: [gpu]", "allowed_groups: applies to users_from: host only"},
		{"users_from: host\nallowed_groups: ['a b']", "allowed_groups[0]: want a group name"},
	} {
		cfg, err := loadConfig(writeConfig(t, tc.body))
		if err == nil {
			err = cfg.Validate()
		}
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%q: got %v, want %q", tc.body, err, tc.want)
		}
	}
	cfg, err = loadConfig(writeConfig(t, "users_from: host\nallowed_groups: [gpu-users, admin]\nmin_uid: 2000"))
	if err == nil {
		err = cfg.Validate()
	}
	if err != nil || cfg.UsersFrom != "host" || len(cfg.AllowedGroups) != 2 || cfg.MinUID != 2000 {
		t.Errorf("set values: %v %+v", err, cfg)
	}
}
