package authkeys

import (
	"fmt"
	"net/netip"
	"path"
	"strings"
)

// MatchFrom applies a from= pattern list to the client's address as sshd
// does with UseDNS off (its default), where the "host name" is the address
// itself: a pattern is a wildcard pattern (* and ?) matched against the
// address, or an address/prefix in CIDR notation; a leading ! negates it.
// A negated match refuses whatever else matches; otherwise one positive
// match allows. A malformed CIDR pattern is an error (sshd refuses the
// key), as is a CIDR with bits set beyond its prefix.
func MatchFrom(patterns []string, remote netip.Addr) (bool, error) {
	remote = remote.Unmap()
	addr := remote.String()
	allowed := false
	for _, p := range patterns {
		neg := strings.HasPrefix(p, "!")
		body := strings.TrimPrefix(p, "!")
		if body == "" {
			return false, fmt.Errorf("from=: empty pattern")
		}
		var hit bool
		if strings.Contains(body, "/") {
			pf, err := netip.ParsePrefix(body)
			if err != nil || pf.Masked() != pf {
				return false, fmt.Errorf("from=: bad address/prefix %q", body)
			}
			hit = remote.IsValid() && pf.Contains(remote)
		} else {
			// path.Match's * does not cross '/', which never appears in
			// an address; '[' is literal in sshd, so escape it.
			m, err := path.Match(strings.ToLower(strings.NewReplacer(`[`, `\[`, `\`, `\\`).Replace(body)), strings.ToLower(addr))
			if err != nil {
				return false, fmt.Errorf("from=: bad pattern %q", body)
			}
			hit = m
		}
		if hit && neg {
			return false, nil
		}
		allowed = allowed || hit
	}
	return allowed, nil
}
