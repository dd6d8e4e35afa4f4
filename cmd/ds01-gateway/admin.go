package main

import (
	"context"
	"log/slog"

	"github.com/ds01/ds01-gateway/store"
)

// memberOf asks the host (NSS) whether a user is in a group; nil in store
// mode, where the store's group is the only one.
type memberOf func(name, group string) (bool, error)

// isAdmin is gateway.Options.IsAdmin: the members of admin_group are the
// lab's admins. In store mode it reads the user record the login
// authenticated with, so it adds nothing to a login; in host mode it also
// asks NSS (supplementary groups, LDAP/SSSD), once per command session,
// never on a project login. "" makes nobody an admin.
func isAdmin(group string, member memberOf, log *slog.Logger) func(ctx context.Context, u store.User) bool {
	return func(_ context.Context, u store.User) bool {
		if group == "" {
			return false
		}
		if u.Group == group {
			return true
		}
		if member == nil {
			return false
		}
		ok, err := member(u.Name, group)
		if err != nil {
			// An NSS outage must not make anyone an admin.
			log.Warn("admin check: group lookup failed", "user", u.Name, "group", group, "err", err)
			return false
		}
		return ok
	}
}
