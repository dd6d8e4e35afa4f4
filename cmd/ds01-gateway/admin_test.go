package main

import (
	"context"
	"errors"
	"log/slog"
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
	is := isAdmin(cfg.AdminGroup, nil, slog.New(slog.DiscardHandler))
	if !is(ctx, store.User{Name: "boss", Group: "admin"}) || is(ctx, store.User{Name: "ann", Group: "student"}) || is(ctx, store.User{Name: "x"}) {
		t.Error("isAdmin: only members of admin_group are admins")
	}
	// "" makes nobody an admin, not everybody without a group.
	if isAdmin("", nil, nil)(ctx, store.User{Name: "x"}) {
		t.Error(`admin_group "" made a user without a group an admin`)
	}
	for body, ok := range map[string]bool{"admin_group: lab-admins\n": true, "admin_group: \"\"\n": true, "admin_group: Lab-Admins\n": true, "admin_group: \"a b\"\n": false} {
		cfg, err := loadConfig(writeConfig(t, body))
		if err == nil {
			err = cfg.Validate()
		}
		if (err == nil) != ok || (err != nil && !strings.HasPrefix(err.Error(), "admin_group: ")) {
			t.Errorf("%q: %v", body, err)
		}
	}
}

// TestAdminHostGroup: in host mode NSS membership counts too, and a failed
// lookup makes nobody an admin.
func TestAdminHostGroup(t *testing.T) {
	ctx := context.Background()
	log := slog.New(slog.DiscardHandler)
	member := func(name, group string) (bool, error) {
		switch name {
		case "boss":
			return group == "admin", nil
		case "flaky":
			return true, errors.New("sssd down")
		}
		return false, nil
	}
	is := isAdmin("admin", member, log)
	if !is(ctx, store.User{Name: "boss", Group: "boss"}) {
		t.Error("a supplementary member of admin_group is not an admin")
	}
	if is(ctx, store.User{Name: "ann", Group: "ann"}) || is(ctx, store.User{Name: "flaky", Group: "flaky"}) {
		t.Error("a non-member, or a failed lookup, made an admin")
	}
}
