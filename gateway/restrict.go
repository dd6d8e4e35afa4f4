package gateway

import (
	"net"
	"net/netip"
	"time"

	gssh "github.com/gliderlabs/ssh"
)

// Restrictions are what a key's authorized_keys options forbid on the
// connection it authenticated (host accounts mode). The zero value
// forbids nothing: store-mode keys carry no options.
type Restrictions struct {
	NoPortForwarding  bool
	NoAgentForwarding bool
	NoPty             bool
}

// KeyPolicy is implemented by Users whose keys carry conditions (host
// accounts' from= and expiry-time=) and restrictions (restrict, no-pty,
// ...). KeyAccess is asked after UserByKey found the key, on the auth
// path, so it must be an in-memory check; a non-nil error refuses the key
// and says why, for the log.
type KeyPolicy interface {
	KeyAccess(fingerprint string, remote netip.Addr, now time.Time) (Restrictions, error)
}

// The connection's restrictions travel in its SSH permissions, which
// x/crypto hands to every channel of the connection. Authorize rewrites
// them whenever it approves a key; x/crypto's one-entry key cache means
// the last key approved is the one that signed (see identity).
const (
	extNoPortForwarding  = "ds01-no-port-forwarding"
	extNoAgentForwarding = "ds01-no-agent-forwarding"
	extNoPty             = "ds01-no-pty"
)

func setRestrictions(ctx gssh.Context, r Restrictions) {
	p := ctx.Permissions()
	if p.Permissions == nil {
		return
	}
	ext := map[string]string{}
	for k, v := range p.Extensions {
		ext[k] = v
	}
	for name, on := range map[string]bool{extNoPortForwarding: r.NoPortForwarding, extNoAgentForwarding: r.NoAgentForwarding, extNoPty: r.NoPty} {
		delete(ext, name)
		if on {
			ext[name] = ""
		}
	}
	p.Extensions = ext
}

// restrictionsOf reads the connection's restrictions.
func restrictionsOf(ctx gssh.Context) Restrictions {
	p := ctx.Permissions()
	if p.Permissions == nil || len(p.Extensions) == 0 {
		return Restrictions{}
	}
	has := func(k string) bool { _, ok := p.Extensions[k]; return ok }
	return Restrictions{
		NoPortForwarding:  has(extNoPortForwarding),
		NoAgentForwarding: has(extNoAgentForwarding),
		NoPty:             has(extNoPty),
	}
}

// errNoPortForwarding is the refusal a restricted key's forward gets.
const errNoPortForwarding = "ds01: port forwarding is disabled for this key (restrict or no-port-forwarding in ~/.ssh/authorized_keys)"

func remoteAddr(a net.Addr) netip.Addr {
	if ta, ok := a.(*net.TCPAddr); ok {
		if ip, ok := netip.AddrFromSlice(ta.IP); ok {
			return ip.Unmap()
		}
	}
	if ap, err := netip.ParseAddrPort(a.String()); err == nil {
		return ap.Addr().Unmap()
	}
	return netip.Addr{}
}
