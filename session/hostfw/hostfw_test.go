package hostfw

import (
	"context"
	"log/slog"
	"net/netip"
	"os"
	"os/exec"
	"strings"
	"testing"
)

func TestParsePort(t *testing.T) {
	for _, tc := range []struct {
		in   string
		want Port
	}{
		{"3128", Port{"tcp", 3128, 3128}},
		{"8125/udp", Port{"udp", 8125, 8125}},
		{"8000-8100/tcp", Port{"tcp", 8000, 8100}},
		{"65535", Port{"tcp", 65535, 65535}},
	} {
		got, err := ParsePort(tc.in)
		if err != nil || got != tc.want {
			t.Errorf("ParsePort(%q) = %v, %v; want %v", tc.in, got, err, tc.want)
		}
	}
	for _, bad := range []string{"", "0", "65536", "x", "80/icmp", "90-80", "80-", "-80", "80/", "1.5", " 80"} {
		if p, err := ParsePort(bad); err == nil {
			t.Errorf("ParsePort(%q) = %v, want an error", bad, p)
		}
	}
}

func TestChainName(t *testing.T) {
	got := Chain(netip.MustParsePrefix("10.201.0.0/16"))
	if got != "DS01-HOSTFW-0ac90000-16" {
		t.Errorf("Chain = %q", got)
	}
	// iptables refuses chain names over 28 characters.
	if long := Chain(netip.MustParsePrefix("255.255.255.192/26")); len(long) > 28 {
		t.Errorf("Chain %q is %d characters", long, len(long))
	}
}

func TestRules(t *testing.T) {
	c := Config{
		Pool:      netip.MustParsePrefix("10.201.0.0/16"),
		Allow:     []Port{{"tcp", 3128, 3128}, {"udp", 8000, 8100}},
		Resolvers: []netip.Addr{netip.MustParseAddr("192.0.2.53")},
	}
	want := `*filter
:DS01-HOSTFW-0ac90000-16 - [0:0]
-A DS01-HOSTFW-0ac90000-16 -m conntrack --ctstate ESTABLISHED,RELATED -j RETURN
-A DS01-HOSTFW-0ac90000-16 -d 192.0.2.53/32 -p udp -m udp --dport 53 -j RETURN
-A DS01-HOSTFW-0ac90000-16 -d 192.0.2.53/32 -p tcp -m tcp --dport 53 -j RETURN
-A DS01-HOSTFW-0ac90000-16 -p tcp -m tcp --dport 3128 -j RETURN
-A DS01-HOSTFW-0ac90000-16 -p udp -m udp --dport 8000:8100 -j RETURN
-A DS01-HOSTFW-0ac90000-16 -m comment --comment "ds01-gateway host_firewall" -j REJECT --reject-with icmp-admin-prohibited
COMMIT
`
	if got := c.rules(); got != want {
		t.Errorf("rules:\n%s\nwant:\n%s", got, want)
	}
}

func TestLocalResolvers(t *testing.T) {
	conf := []byte("# generated\nsearch example.org\nnameserver 127.0.0.53\nnameserver 192.0.2.2\nnameserver 10.255.255.53\nnameserver fd00::2\noptions ndots:1\n")
	local := map[netip.Addr]bool{
		netip.MustParseAddr("127.0.0.53"): true,
		netip.MustParseAddr("192.0.2.2"):  true,
		netip.MustParseAddr("fd00::2"):    true,
	}
	got := localResolvers(conf, local)
	if len(got) != 1 || got[0] != netip.MustParseAddr("192.0.2.2") {
		t.Errorf("localResolvers = %v, want [192.0.2.2]", got)
	}
}

// The real iptables, on a pool nothing uses: installing twice leaves one
// jump; a new allow list replaces the chain's content; a rule removed
// behind the gateway's back is noticed; Remove leaves nothing.
func TestInstallRemove(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root for iptables")
	}
	if _, err := lookPath("iptables"); err != nil {
		t.Skip(err)
	}
	ctx := context.Background()
	log := slog.New(slog.DiscardHandler)
	pool := netip.MustParsePrefix("10.254.254.0/26")
	chain := Chain(pool)
	t.Cleanup(func() {
		if err := Remove(context.Background(), pool, log); err != nil {
			t.Errorf("cleanup: %v", err)
		}
	})

	f, err := New(Config{Pool: pool, Allow: []Port{{"tcp", 3128, 3128}}}, log)
	if err != nil {
		t.Fatal(err)
	}
	for range 2 {
		if err := f.Install(ctx); err != nil {
			t.Fatal(err)
		}
	}
	if n := strings.Count(iptablesS(t, "INPUT"), "-j "+chain); n != 1 {
		t.Errorf("after two installs: %d jumps to %s in INPUT, want 1:\n%s", n, chain, iptablesS(t, "INPUT"))
	}
	if first := strings.SplitN(iptablesS(t, "INPUT"), "\n", 3)[1]; !strings.Contains(first, "-j "+chain) {
		t.Errorf("the jump is not INPUT's first rule: %q", first)
	}
	if s := iptablesS(t, chain); !strings.Contains(s, "--dport 3128 -j RETURN") || !strings.Contains(s, "REJECT") {
		t.Errorf("chain:\n%s", s)
	}

	f2, err := New(Config{Pool: pool, Allow: []Port{{"udp", 9000, 9000}}}, log)
	if err != nil {
		t.Fatal(err)
	}
	if err := f2.Install(ctx); err != nil {
		t.Fatal(err)
	}
	if s := iptablesS(t, chain); strings.Contains(s, "3128") || !strings.Contains(s, "--dport 9000") || strings.Count(s, "REJECT") != 1 {
		t.Errorf("chain after a new allow list:\n%s", s)
	}

	if ok, err := f2.Installed(ctx); !ok || err != nil {
		t.Errorf("Installed = %v, %v", ok, err)
	}
	if out, err := exec.Command("iptables", append([]string{"-w", "-D", "INPUT"}, jump(pool)...)...).CombinedOutput(); err != nil {
		t.Fatalf("delete jump: %v %s", err, out)
	}
	if ok, err := f2.Installed(ctx); ok || err != nil {
		t.Errorf("Installed after the jump was deleted = %v, %v; want false", ok, err)
	}
	f2.repair(ctx) // what Keep does every interval
	if ok, err := f2.Installed(ctx); !ok || err != nil {
		t.Errorf("Installed after repair = %v, %v; want true", ok, err)
	}

	if err := Remove(ctx, pool, log); err != nil {
		t.Fatal(err)
	}
	if strings.Contains(iptablesS(t, "INPUT"), chain) {
		t.Errorf("jump left after Remove")
	}
	if exec.Command("iptables", "-w", "-S", chain).Run() == nil {
		t.Errorf("chain %s left after Remove", chain)
	}
	if ok, err := f2.Installed(ctx); ok || err != nil {
		t.Errorf("Installed after Remove = %v, %v; want false", ok, err)
	}
	if err := Remove(ctx, pool, log); err != nil {
		t.Errorf("second Remove: %v", err)
	}
}

func iptablesS(t *testing.T, chain string) string {
	t.Helper()
	out, err := exec.Command("iptables", "-w", "-S", chain).CombinedOutput()
	if err != nil {
		t.Fatalf("iptables -S %s: %v %s", chain, err, out)
	}
	return string(out)
}
