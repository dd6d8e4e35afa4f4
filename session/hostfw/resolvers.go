package hostfw

import (
	"bufio"
	"bytes"
	"net"
	"net/netip"
	"os"
	"strings"
)

// LocalResolvers returns the IPv4 DNS servers of resolvConf (the host's
// /etc/resolv.conf, which Docker's embedded DNS forwards to) that are
// addresses of this host other than loopback: a dnsmasq or unbound on
// the host's LAN address, say. Docker skips loopback servers itself.
func LocalResolvers(resolvConf string) []netip.Addr {
	data, err := os.ReadFile(resolvConf)
	if err != nil {
		return nil
	}
	ifaddrs, err := net.InterfaceAddrs()
	if err != nil {
		return nil
	}
	local := map[netip.Addr]bool{}
	for _, a := range ifaddrs {
		if p, err := netip.ParsePrefix(a.String()); err == nil {
			local[p.Addr().Unmap()] = true
		}
	}
	return localResolvers(data, local)
}

func localResolvers(resolvConf []byte, local map[netip.Addr]bool) []netip.Addr {
	var out []netip.Addr
	sc := bufio.NewScanner(bytes.NewReader(resolvConf))
	for sc.Scan() {
		f := strings.Fields(sc.Text())
		if len(f) < 2 || f[0] != "nameserver" {
			continue
		}
		a, err := netip.ParseAddr(f[1])
		if err != nil || !a.Is4() || a.IsLoopback() || !local[a] {
			continue
		}
		out = append(out, a)
	}
	return out
}
