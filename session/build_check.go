package session

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"strings"
	"time"

	"github.com/ds01/ds01-gateway/session/image"
	"github.com/ds01/ds01-gateway/store"
)

// lookupTimeout bounds the name lookup of a base image's registry.
const lookupTimeout = 3 * time.Second

// refPolicy is what the user's builds may name.
func (im *Images) refPolicy(ctx context.Context, u store.User) image.RefPolicy {
	return image.RefPolicy{
		UID:          u.UID,
		AllowedBases: im.cfg.AllowedBases,
		Lookup: func(host string) ([]netip.Addr, error) {
			lctx, cancel := context.WithTimeout(ctx, lookupTimeout)
			defer cancel()
			return net.DefaultResolver.LookupNetIP(lctx, "ip", host)
		},
	}
}

// checkDockerfile refuses what a build of the user may not do (see
// image.Check) and returns the images its FROM lines pull. Hand edits go
// through here as well as the gateway's own.
func (im *Images) checkDockerfile(ctx context.Context, u store.User, df []byte) ([]string, error) {
	if !image.HasFrom(df) {
		return nil, errors.New("the Dockerfile has no FROM line")
	}
	return image.Check(df, im.refPolicy(ctx, u))
}

// checkBase vets a base image once the engine has it, before any step of
// the build runs: its ONBUILD triggers run in this build as if the user had
// written them, and its labels end up on the user's image (and so on its
// containers). Only the user's own project images may carry ds01.*
// labels: the gateway put them there.
func (im *Images) checkBase(ctx context.Context, u store.User) func(string, map[string]string, []string) error {
	pol := im.refPolicy(ctx, u)
	return func(ref string, labels map[string]string, triggers []string) error {
		if !image.OwnImage(ref, u.UID) {
			for k := range labels {
				if strings.HasPrefix(strings.ToLower(k), "ds01.") {
					return fmt.Errorf("%w: base image %s carries the label %s; ds01.* labels belong to the gateway", ErrBaseRefused, ref, k)
				}
			}
		}
		if err := image.CheckTriggers(triggers, pol); err != nil {
			return fmt.Errorf("base image %s: %w", ref, err)
		}
		return nil
	}
}
