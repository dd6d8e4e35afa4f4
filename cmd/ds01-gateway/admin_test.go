package main

import (
	"context"
	"strings"
	"testing"

	"github.com/ds01/ds01-gateway/store"
)

func TestAdminGroup(t *testing.T) {
	cfg, err := loadConfig(writeConfig(t, ""))
	if err != nil {
		t.Fatal(err)
	}
	if cfg.AdminGroup != "admin" {
		t.Errorf("admin_group defaults to %q, want DS01's admin", cfg.AdminGroup)
	}
	ctx := context.Background()
	is := isAdmin(cfg.AdminGroup)
	if !is(ctx, store.User{Name: "boss", Group: "admin"}) || is(ctx, store.User{Name: "ann", Group: "student"}) || is(ctx, store.User{Name: "x"}) {
		t.Error("isAdmin: only members of admin_group are admins")
	}
	// "" makes nobody an admin, not everybody without a group.
	if isAdmin("")(ctx, store.User{Name: "x"}) {
		t.Error(`admin_group "" made a user without a group an admin`)
	}
	for body, ok := range map[string]bool{"admin_group: lab-admins\n": true, "admin_group: \"\"\n": true, "admin_group: Admins\n": false, "admin_group: \"a b\"\n": false} {
		cfg, err := loadConfig(writeConfig(t, body))
		if err == nil {
			err = cfg.Validate()
		}
		if (err == nil) != ok || (err != nil && !strings.HasPrefix(err.Error(), "admin_group: ")) {
			t.Errorf("%q: %v", body, err)
		}
	}
}
