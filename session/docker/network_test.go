package docker

import (
	"errors"
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
