// Package authkeys reads a user's ~/.ssh/authorized_keys the way sshd
// does, for the gateway's host accounts mode: the file is opened without
// following symlinks and must pass sshd's StrictModes (read.go), and each
// line's options are either honoured or the key is refused (this file),
// because a key whose options the gateway ignored would give its holder
// more than the file's owner granted.
package authkeys

import (
	"fmt"
	"net/netip"
	"strings"
	"time"

	gossh "golang.org/x/crypto/ssh"
)

// Options are the authorized_keys options the gateway honours for a key.
// The zero value allows everything, like a line without options.
type Options struct {
	NoPortForwarding  bool
	NoAgentForwarding bool
	NoPty             bool
	NoX11Forwarding   bool
	// From is from="pattern-list": the client's address must match.
	From []string
	// Expiry is expiry-time=: the key is refused from then on.
	Expiry time.Time
}

// Entry is one usable line of an authorized_keys file.
type Entry struct {
	Key         gossh.PublicKey
	Fingerprint string
	Comment     string
	Options     Options
}

// Check says why the key may not be used now from remote, or nil.
func (o Options) Check(remote netip.Addr, now time.Time) error {
	if !o.Expiry.IsZero() && !now.Before(o.Expiry) {
		return fmt.Errorf("key expired at %s (expiry-time)", o.Expiry.UTC().Format(time.RFC3339))
	}
	if o.From != nil {
		ok, err := MatchFrom(o.From, remote)
		if err != nil {
			return err
		}
		if !ok {
			return fmt.Errorf("address %s does not match from=%q", remote, strings.Join(o.From, ","))
		}
	}
	return nil
}

// parseOptions applies sshd's option list (auth-options.c) to Options.
// Options the gateway cannot honour refuse the key: command= (a forced
// command), environment=, principals= and cert-authority (certificates),
// tunnel=, permitopen=/permitlisten= (the gateway has its own forwarding
// rules and would ignore the list), the FIDO ones and any it does not
// know. Names are case-insensitive, as in sshd.
func parseOptions(opts []string, loc *time.Location) (Options, error) {
	var o Options
	for _, raw := range opts {
		name, value, hasValue := strings.Cut(raw, "=")
		name = strings.ToLower(name)
		if hasValue {
			v, err := unquote(value)
			if err != nil {
				return Options{}, fmt.Errorf("option %s: %w", name, err)
			}
			value = v
		}
		flag := func() error {
			if hasValue {
				return fmt.Errorf("option %s takes no value", name)
			}
			return nil
		}
		var err error
		switch name {
		case "restrict":
			if err = flag(); err == nil {
				o.NoPortForwarding, o.NoAgentForwarding, o.NoPty, o.NoX11Forwarding = true, true, true, true
			}
		case "no-port-forwarding", "port-forwarding":
			err = flag()
			o.NoPortForwarding = name == "no-port-forwarding"
		case "no-agent-forwarding", "agent-forwarding":
			err = flag()
			o.NoAgentForwarding = name == "no-agent-forwarding"
		case "no-pty", "pty":
			err = flag()
			o.NoPty = name == "no-pty"
		case "no-x11-forwarding", "x11-forwarding":
			err = flag()
			o.NoX11Forwarding = name == "no-x11-forwarding"
		case "no-user-rc", "user-rc":
			err = flag() // the gateway never runs ~/.ssh/rc
		case "from":
			if !hasValue || value == "" {
				return Options{}, fmt.Errorf("option from= needs a pattern list")
			}
			pats := strings.Split(value, ",")
			if _, err := MatchFrom(pats, netip.IPv6Loopback()); err != nil {
				return Options{}, err
			}
			o.From = pats
		case "expiry-time":
			t, perr := parseExpiry(value, loc)
			if perr != nil {
				return Options{}, perr
			}
			if o.Expiry.IsZero() || t.Before(o.Expiry) {
				o.Expiry = t
			}
		default:
			return Options{}, fmt.Errorf("option %s is not supported by the gateway", name)
		}
		if err != nil {
			return Options{}, err
		}
	}
	return o, nil
}

// unquote takes an option's value out of its double quotes; sshd allows
// \" inside them.
func unquote(v string) (string, error) {
	if len(v) < 2 || v[0] != '"' || v[len(v)-1] != '"' {
		return "", fmt.Errorf("value %q must be in double quotes", v)
	}
	return strings.ReplaceAll(v[1:len(v)-1], `\"`, `"`), nil
}

// parseExpiry reads sshd's expiry-time: YYYYMMDD, YYYYMMDDHHMM or
// YYYYMMDDHHMMSS, in local time unless it ends in Z (UTC).
func parseExpiry(v string, loc *time.Location) (time.Time, error) {
	s := v
	if strings.HasSuffix(s, "Z") || strings.HasSuffix(s, "z") {
		s, loc = s[:len(s)-1], time.UTC
	}
	layouts := map[int]string{8: "20060102", 12: "200601021504", 14: "20060102150405"}
	layout, ok := layouts[len(s)]
	if !ok {
		return time.Time{}, fmt.Errorf("expiry-time %q: want YYYYMMDD[HHMM[SS]][Z]", v)
	}
	t, err := time.ParseInLocation(layout, s, loc)
	if err != nil {
		return time.Time{}, fmt.Errorf("expiry-time %q: want YYYYMMDD[HHMM[SS]][Z]", v)
	}
	return t, nil
}

// String writes the options back in authorized_keys form, for key-list.
func (o Options) String() string {
	var parts []string
	add := func(on bool, name string) {
		if on {
			parts = append(parts, name)
		}
	}
	add(o.NoPortForwarding, "no-port-forwarding")
	add(o.NoAgentForwarding, "no-agent-forwarding")
	add(o.NoPty, "no-pty")
	add(o.NoX11Forwarding, "no-X11-forwarding")
	if o.From != nil {
		parts = append(parts, `from="`+strings.Join(o.From, ",")+`"`)
	}
	if !o.Expiry.IsZero() {
		parts = append(parts, `expiry-time="`+o.Expiry.UTC().Format("20060102150405")+`Z"`)
	}
	return strings.Join(parts, ",")
}
