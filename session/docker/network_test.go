package docker

import (
	"errors"
	"fmt"
	"net/netip"
	"testing"
)

func TestFirstFree(t *testing.T) {
	pool := netip.MustParsePrefix("10.201.0.0/24")
	used := []netip.Prefix{
		netip.MustParsePrefix("172.17.0.0/16"),
		netip.MustParsePrefix("10.201.0.0/26"),
		netip.MustParsePrefix("10.201.0.96/27"), // overlaps the second /26
	}
	got, err := firstFree(pool, 26, used)
	if err != nil || got != netip.MustParsePrefix("10.201.0.128/26") {
		t.Fatalf("firstFree = %v, %v; want 10.201.0.128/26", got, err)
	}
	used = append(used, got, netip.MustParsePrefix("10.201.0.192/26"))
	if _, err := firstFree(pool, 26, used); !errors.Is(err, errPoolFull) {
		t.Fatalf("full pool: err = %v", err)
	}
	// The whole pool inside a bigger network in use: nothing is free.
	if _, err := firstFree(pool, 26, []netip.Prefix{netip.MustParsePrefix("10.0.0.0/8")}); !errors.Is(err, errPoolFull) {
		t.Fatalf("covered pool: err = %v", err)
	}
	if _, err := firstFree(netip.MustParsePrefix("10.0.0.0/28"), 26, nil); err == nil {
		t.Fatal("a pool smaller than one subnet must be refused")
	}
}

// Only the engine's "not found" for the user's own network is worth
// ensuring it again and retrying.
func TestNetworkMissing(t *testing.T) {
	for _, c := range []struct {
		err  error
		name string
		want bool
	}{
		{errors.New("build ds01-26082/p: network ds01-u26082 not found"), "ds01-u26082", true},
		{errors.New("Error response from daemon: No such network: ds01-u26082"), "ds01-u26082", true},
		{fmt.Errorf("create container: %w", errors.New("network ds01-u26082 not found")), "ds01-u26082", true},
		{errors.New("network ds01-u26083 not found"), "ds01-u26082", false},
		{errors.New("network ds01-u260821 not found"), "ds01-u26082", false},
		{errors.New("No such network: ds01-u260821"), "ds01-u26082", false},
		{errors.New("No such network: ds01-u260821; No such network: ds01-u26082"), "ds01-u26082", true},
		{errors.New("no space left on device"), "ds01-u26082", false},
		{errors.New("network  not found"), "", false},
		{nil, "ds01-u26082", false},
	} {
		if got := networkMissing(c.err, c.name); got != c.want {
			t.Errorf("networkMissing(%v, %q) = %v, want %v", c.err, c.name, got, c.want)
		}
	}
}
