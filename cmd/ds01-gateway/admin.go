package main

import (
	"context"

	"github.com/ds01/ds01-gateway/store"
)

// isAdmin is gateway.Options.IsAdmin: the members of admin_group are the
// lab's admins. It reads the user record the login authenticated with, so
// it adds nothing to a login; "" makes nobody an admin.
func isAdmin(group string) func(ctx context.Context, u store.User) bool {
	return func(_ context.Context, u store.User) bool {
		return group != "" && u.Group == group
	}
}
