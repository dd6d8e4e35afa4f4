package e2e

import (
	"context"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"slices"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/ds01/ds01-gateway/session/hostfw"
)

// hostListener accepts connections on addr and counts them.
type hostListener struct {
	ln    net.Listener
	port  int
	conns atomic.Int32
}

func listenHost(t *testing.T, addr string) *hostListener {
	t.Helper()
	ln, err := net.Listen("tcp4", addr)
	if err != nil {
		t.Fatal(err)
	}
	h := &hostListener{ln: ln, port: ln.Addr().(*net.TCPAddr).Port}
	t.Cleanup(func() { ln.Close() })
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			h.conns.Add(1)
			c.Close()
		}
	}()
	return h
}

// hostIPv4s are the host's own IPv4 addresses, loopback aside: what a
// container could address the host by.
func hostIPv4s(t *testing.T) []string {
	t.Helper()
	addrs, err := net.InterfaceAddrs()
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, a := range addrs {
		p, err := netip.ParsePrefix(a.String())
		if err == nil && p.Addr().Is4() && !p.Addr().IsLoopback() {
			out = append(out, p.Addr().String())
		}
	}
	return out
}

// probeScript tries each host:port from inside a container and prints
// "open" or "closed" for each; nc fails at once on a rejected connection.
func probeScript(targets []string) string {
	var b strings.Builder
	for _, tg := range targets {
		h, p, _ := strings.Cut(tg, ":")
		fmt.Fprintf(&b, "if nc -z -w 3 %s %s 2>/dev/null; then echo 'open %s'; else echo 'closed %s'; fi; ", h, p, tg, tg)
	}
	return b.String()
}

func parseProbe(out string) map[string]bool {
	open := map[string]bool{}
	for _, line := range strings.Split(strings.TrimSpace(out), "\n") {
		state, tg, ok := strings.Cut(line, " ")
		if ok {
			open[tg] = state == "open"
		}
	}
	return open
}

// setConfig rewrites top-level keys of the gateway's config file; the next
// start reads them.
func (g *gw) setConfig(t *testing.T, kv map[string]string) {
	t.Helper()
	data, err := os.ReadFile(g.cfgPath)
	if err != nil {
		t.Fatal(err)
	}
	var lines []string
	for _, l := range strings.Split(strings.TrimSpace(string(data)), "\n") {
		k, _, _ := strings.Cut(l, ":")
		if _, replaced := kv[k]; !replaced {
			lines = append(lines, l)
		}
	}
	for k, v := range kv {
		lines = append(lines, k+": "+v)
	}
	if err := os.WriteFile(g.cfgPath, []byte(strings.Join(lines, "\n")+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
}

func iptablesRules(t *testing.T, chain string) string {
	t.Helper()
	out, err := exec.Command("iptables", "-w", "-S", chain).CombinedOutput()
	if err != nil {
		return ""
	}
	return string(out)
}

// Containers cannot reach the host's own services (a listener on 0.0.0.0
// or on the user network's gateway address) by default; the admin's hole
// opens exactly its port; the rule survives a gateway stop, since the
// containers keep running, and a restart does not duplicate it; turning
// host_firewall off removes it. DNS and the outside still work.
func TestHostFirewall(t *testing.T) {
	if _, err := exec.LookPath("iptables"); err != nil {
		t.Skip("no iptables")
	}
	// A pool of its own, so the test's rules never touch other gateways';
	// removed after the gateway has stopped (cleanups run last-in first).
	pool := netip.MustParsePrefix("10.224.0.0/22")
	chain := hostfw.Chain(pool)
	t.Cleanup(func() {
		if err := hostfw.Remove(context.Background(), pool, slog.New(slog.DiscardHandler)); err != nil {
			t.Errorf("remove the test's firewall rule: %v", err)
		}
	})
	g := startGateway(t, gwOpts{Extra: map[string]string{"network_pool": pool.String()}})
	u := g.addUser(t, "fern", 24001, 24001)
	const proj = "fw"

	if !strings.Contains(iptablesRules(t, "INPUT"), "-s "+pool.String()+" -m comment --comment \"ds01-gateway host_firewall\" -j "+chain) {
		t.Errorf("no jump to %s in INPUT:\n%s", chain, iptablesRules(t, "INPUT"))
	}

	// The container, and its network's gateway: the host's address on the
	// user's bridge.
	if v6 := g.mustSSH(t, u, proj, "cat /proc/net/if_inet6"); strings.TrimSpace(v6) != "" {
		t.Errorf("the container has IPv6 addresses, which the IPv4 rule does not cover:\n%s", v6)
	}
	// Docker gives the bridge the subnet's first address.
	subnet, err := netip.ParsePrefix(strings.TrimSpace(docker(t, "network", "inspect", "-f", "{{range .IPAM.Config}}{{.Subnet}}{{end}}", fmt.Sprintf("ds01-u%d", u.uid))))
	if err != nil || !pool.Overlaps(subnet) {
		t.Fatalf("user network subnet %v (%v): not in %s", subnet, err, pool)
	}
	gwIP := subnet.Masked().Addr().Next().String()
	if !slices.Contains(hostIPv4s(t), gwIP) {
		t.Fatalf("%s is not an address of this host (%v)", gwIP, hostIPv4s(t))
	}
	everywhere := listenHost(t, "0.0.0.0:0") // a service on every address
	onBridge := listenHost(t, gwIP+":0")     // one on the bridge address only
	targets := []string{gwIP + ":" + strconv.Itoa(onBridge.port)}
	for _, ip := range hostIPv4s(t) {
		targets = append(targets, ip+":"+strconv.Itoa(everywhere.port))
	}
	probe := probeScript(targets)

	r := g.ssh(t, u, proj, probe)
	for _, tg := range targets {
		if open, seen := parseProbe(r.stdout)[tg]; !seen || open {
			t.Errorf("default: %s seen %v open %v from the container, want closed\n%s", tg, seen, open, r)
		}
	}
	if n := everywhere.conns.Load() + onBridge.conns.Load(); n != 0 {
		t.Errorf("default: the host's listeners accepted %d connections from the container", n)
	}

	// The rest of the network still works: Docker's DNS, and the outside
	// through NAT (where the host itself reaches it).
	if _, err := net.LookupHost("deb.debian.org"); err == nil {
		if out := g.ssh(t, u, proj, "getent hosts deb.debian.org"); out.code != 0 {
			t.Errorf("DNS from the container: %s", out)
		}
		if c, err := net.DialTimeout("tcp", "deb.debian.org:80", 5*time.Second); err == nil {
			c.Close()
			if out := g.ssh(t, u, proj, "nc -z -w 5 deb.debian.org 80"); out.code != 0 {
				t.Errorf("the outside from the container: %s", out)
			}
		}
	} else {
		t.Logf("no DNS on this host (%v): not checking it from the container", err)
	}

	// Stopping the gateway keeps the rule: its containers keep running.
	g.setConfig(t, map[string]string{"host_firewall_allow": "[" + strconv.Itoa(everywhere.port) + "]", "retire_after": "1m"})
	hold := g.startSSH(t, u, proj, "echo up; sleep 300")
	hold.waitOutput(t, "up", timeoutLong)
	ids := containers(t, u.uid, proj)
	if len(ids) != 1 {
		t.Fatalf("want 1 container, have %v", ids)
	}
	g.stop(t)
	hold.stop()
	if !strings.Contains(iptablesRules(t, "INPUT"), "-j "+chain) || !strings.Contains(iptablesRules(t, chain), "REJECT") {
		t.Errorf("gateway stopped: the rule is gone while its containers run")
	}
	exe := docker(t, "exec", "-u", strconv.Itoa(u.uid), ids[0], "sh", "-c", probe)
	if open := parseProbe(exe); open[targets[0]] || len(open) != len(targets) {
		t.Errorf("gateway stopped: probe from the running container: %s", exe)
	}

	// A hole for one port: open on every host address, the other port
	// still closed. The restart adopts the container and keeps one jump.
	g.start(t)
	if n := strings.Count(iptablesRules(t, "INPUT"), "-j "+chain); n != 1 {
		t.Errorf("after a restart: %d jumps to %s, want 1", n, chain)
	}
	r = g.ssh(t, u, proj, probe)
	open := parseProbe(r.stdout)
	for i, tg := range targets {
		if want := i > 0; open[tg] != want {
			t.Errorf("host_firewall_allow [%d]: %s open %v, want %v\n%s", everywhere.port, tg, open[tg], want, r)
		}
	}
	if everywhere.conns.Load() == 0 {
		t.Errorf("the allowed port's listener saw no connection")
	}

	// Off: the rule goes, and everything on the host is reachable again.
	g.setConfig(t, map[string]string{"host_firewall": "false"})
	g.restart(t)
	if strings.Contains(iptablesRules(t, "INPUT"), chain) || iptablesRules(t, chain) != "" {
		t.Errorf("host_firewall: false left the rule:\n%s", iptablesRules(t, "INPUT"))
	}
	r = g.ssh(t, u, proj, probe)
	if !parseProbe(r.stdout)[targets[0]] {
		t.Errorf("host_firewall: false: %s still closed\n%s", targets[0], r)
	}
	if !strings.Contains(g.out.String(), "host firewall off") {
		t.Errorf("turning the firewall off is not logged")
	}
}
