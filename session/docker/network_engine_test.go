package docker

import (
	"context"
	"fmt"
	"log/slog"
	"net/netip"
	"os"
	"testing"

	"github.com/docker/docker/api/types/network"
)

// engine returns a client of the local Docker engine, or skips the test
// when there is none (fails in CI, where the engine is required).
func engine(t *testing.T) *Docker {
	t.Helper()
	d, err := New(context.Background(), slog.New(slog.NewTextHandler(tlogWriter{t}, nil)), netip.MustParsePrefix("10.201.0.0/16"))
	if err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatalf("docker engine required in CI: %v", err)
		}
		t.Skipf("no docker engine: %v", err)
	}
	t.Cleanup(func() { d.Close() })
	return d
}

// Docker's default address pools hold 31 networks; a server for 50 users
// needs 50 of them, one per user, none overlapping.
func TestFiftyUserNetworks(t *testing.T) {
	d := engine(t)
	ctx := context.Background()
	seen := map[netip.Prefix]string{}
	for i := 0; i < 50; i++ {
		name := fmt.Sprintf("ds01-nettest-%d", i)
		t.Cleanup(func() { d.cli.NetworkRemove(context.Background(), name) })
		if err := d.ensureNetwork(ctx, name, map[string]string{"ds01.test": "1"}); err != nil {
			t.Fatalf("network %d: %v", i, err)
		}
		info, err := d.cli.NetworkInspect(ctx, name, network.InspectOptions{})
		if err != nil || len(info.IPAM.Config) != 1 {
			t.Fatalf("inspect %s: %v %+v", name, err, info.IPAM)
		}
		p := netip.MustParsePrefix(info.IPAM.Config[0].Subnet)
		if !d.pool.Overlaps(p) || p.Bits() != subnetBits {
			t.Errorf("%s got %s, want a /%d of %s", name, p, subnetBits, d.pool)
		}
		if other, dup := seen[p]; dup {
			t.Errorf("%s and %s share %s", name, other, p)
		}
		seen[p] = name
	}
}

type tlogWriter struct{ t *testing.T }

func (w tlogWriter) Write(p []byte) (int, error) {
	w.t.Log(string(p))
	return len(p), nil
}
