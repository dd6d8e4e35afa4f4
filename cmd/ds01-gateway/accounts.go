package main

import (
	"context"
	"log/slog"
	"time"

	"github.com/ds01/ds01-gateway/commands"
	"github.com/ds01/ds01-gateway/gateway"
	"github.com/ds01/ds01-gateway/hostusers"
	"github.com/ds01/ds01-gateway/store"
)

// accountsFor picks where users and their keys come from: the store
// (users_from: store), or the host's accounts and their authorized_keys
// (users_from: host), whose index is built before the gateway listens and
// refreshed until ctx ends. dir is the host directory (nil in store
// mode), whose InGroup is host mode's group-membership test.
func accountsFor(ctx context.Context, cfg Config, st *store.Store, log *slog.Logger) (users gateway.Users, keys commands.Keys, dir *hostusers.Directory) {
	if cfg.UsersFrom != "host" {
		return st, storeKeys{st}, nil
	}
	d := hostusers.New(hostusers.Config{AllowedGroups: cfg.AllowedGroups, MinUID: cfg.MinUID}, st, log)
	start := time.Now()
	d.Refresh(ctx)
	nu, nk := d.Size()
	log.Info("host accounts: key index built", "accounts", nu, "keys", nk, "took", time.Since(start).Round(time.Millisecond), "allowed_groups", cfg.AllowedGroups, "min_uid", cfg.MinUID)
	go d.Run(ctx)
	return d, hostKeys{d}, d
}
