// Package hostfw keeps the users' containers away from the host's own
// services. Docker isolates one user's bridge network from another's, but
// any container can still open connections to the host itself: the
// bridge's gateway address, the host's other addresses, every service
// listening on 0.0.0.0 (a database, an exporter, the gateway's own
// ports). Such packets are addressed to the host, so they pass the
// filter table's INPUT chain, not FORWARD where Docker's rules are.
//
// The gateway therefore installs, at start, one chain of its own per
// network pool, jumped to from INPUT for every packet from the pool:
// replies to connections the host opened pass, so do the ports the admin
// allows, everything else is rejected. Traffic to the outside world
// (apt-get, pip, DNS upstream) is routed through FORWARD and NAT and never
// meets the chain; Docker's embedded DNS answers inside each container's
// own namespace.
//
// The rule uses the iptables binary (Debian's docker.io depends on it, with
// either the nft or the legacy backend) and is idempotent: a restart, or
// several gateways sharing a pool, leave one jump and one chain. A stopped
// gateway leaves it in place, because its containers keep running and a
// restart adopts them; turning host_firewall off removes it.
package hostfw

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/netip"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// comment marks every rule of ours, so an admin reading `iptables -S`
// knows where it comes from.
const comment = "ds01-gateway host_firewall"

// Port is a host port, or a range of them, the containers may reach.
type Port struct {
	Proto    string // "tcp" or "udp"
	From, To uint16
}

// ParsePort reads "PORT", "PORT/tcp", "PORT/udp" or "FROM-TO[/proto]";
// the protocol defaults to tcp.
func ParsePort(s string) (Port, error) {
	p := Port{Proto: "tcp"}
	num := s
	if i := strings.IndexByte(s, '/'); i >= 0 {
		num, p.Proto = s[:i], s[i+1:]
		if p.Proto != "tcp" && p.Proto != "udp" {
			return Port{}, fmt.Errorf("want tcp or udp after the port, got %q", s)
		}
	}
	from, to, isRange := strings.Cut(num, "-")
	a, errA := strconv.ParseUint(from, 10, 16)
	b := a
	var errB error
	if isRange {
		b, errB = strconv.ParseUint(to, 10, 16)
	}
	if errA != nil || errB != nil || a == 0 || b < a {
		return Port{}, fmt.Errorf("want a port like 3128, 8125/udp or 8000-8100/tcp, got %q", s)
	}
	p.From, p.To = uint16(a), uint16(b)
	return p, nil
}

func (p Port) String() string {
	if p.From == p.To {
		return fmt.Sprintf("%d/%s", p.From, p.Proto)
	}
	return fmt.Sprintf("%d-%d/%s", p.From, p.To, p.Proto)
}

// Config is the rule for one network pool.
type Config struct {
	// Pool is where the users' networks take their subnets.
	Pool netip.Prefix
	// Allow are the host ports the containers may still reach (a site
	// proxy, say), on any of the host's addresses.
	Allow []Port
	// Resolvers are DNS servers on the host's own addresses: Docker's
	// embedded DNS forwards the containers' queries to the host's
	// resolv.conf servers from inside each container, so a resolver on
	// the host must stay reachable on port 53.
	Resolvers []netip.Addr
}

// Chain is the name of the pool's chain: one per pool, so gateways with
// different pools on one host keep separate rules, and gateways sharing a
// pool share one.
func Chain(pool netip.Prefix) string {
	a := pool.Masked().Addr().As4()
	return fmt.Sprintf("DS01-HOSTFW-%02x%02x%02x%02x-%d", a[0], a[1], a[2], a[3], pool.Bits())
}

// rules is the chain's content in iptables-restore's format. Restoring it
// with --noflush replaces the chain's rules in one transaction, leaving
// every other chain alone: the pool is never unprotected for a moment.
func (c Config) rules() string {
	chain := Chain(c.Pool)
	var b strings.Builder
	fmt.Fprintf(&b, "*filter\n:%s - [0:0]\n", chain)
	// Replies to connections the host opened into a container (the
	// gateway's forwards, Docker's DNS proxy), and their ICMP errors.
	fmt.Fprintf(&b, "-A %s -m conntrack --ctstate ESTABLISHED,RELATED -j RETURN\n", chain)
	for _, r := range c.Resolvers {
		for _, proto := range []string{"udp", "tcp"} {
			fmt.Fprintf(&b, "-A %s -d %s/32 -p %s -m %s --dport 53 -j RETURN\n", chain, r, proto, proto)
		}
	}
	for _, p := range c.Allow {
		ports := strconv.Itoa(int(p.From))
		if p.To != p.From {
			ports += ":" + strconv.Itoa(int(p.To))
		}
		fmt.Fprintf(&b, "-A %s -p %s -m %s --dport %s -j RETURN\n", chain, p.Proto, p.Proto, ports)
	}
	// Reject rather than drop: a user's client fails at once ("no route to
	// host") instead of hanging, and every port looks the same, so nothing
	// is learnt by probing.
	fmt.Fprintf(&b, "-A %s -m comment --comment %q -j REJECT --reject-with icmp-admin-prohibited\n", chain, comment)
	b.WriteString("COMMIT\n")
	return b.String()
}

// rejectArgs is the chain's last rule, as rules() writes it, for iptables
// -C: its presence says the chain is ours and whole.
func rejectArgs() []string {
	return []string{"-m", "comment", "--comment", comment, "-j", "REJECT", "--reject-with", "icmp-admin-prohibited"}
}

// jump is INPUT's rule that sends the pool's packets to the chain.
func jump(pool netip.Prefix) []string {
	return []string{"-s", pool.Masked().String(), "-m", "comment", "--comment", comment, "-j", Chain(pool)}
}

// Firewall installs and removes the rule with the host's iptables.
type Firewall struct {
	cfg      Config
	log      *slog.Logger
	iptables string
	restore  string
}

// New finds the iptables binaries. It fails when they are missing: the
// setting is on, and the gateway must not start unprotected.
func New(cfg Config, log *slog.Logger) (*Firewall, error) {
	if !cfg.Pool.Addr().Is4() {
		return nil, fmt.Errorf("host firewall: pool %s is not IPv4", cfg.Pool)
	}
	ipt, err := lookPath("iptables")
	if err != nil {
		return nil, err
	}
	restore, err := lookPath("iptables-restore")
	if err != nil {
		return nil, err
	}
	return &Firewall{cfg: cfg, log: log, iptables: ipt, restore: restore}, nil
}

// lookPath finds a binary on PATH or in the sbin directories, which a
// service's PATH may lack.
func lookPath(name string) (string, error) {
	if p, err := exec.LookPath(name); err == nil {
		return p, nil
	}
	for _, dir := range []string{"/usr/sbin", "/sbin"} {
		p := dir + "/" + name
		if st, err := os.Stat(p); err == nil && !st.IsDir() {
			return p, nil
		}
	}
	return "", fmt.Errorf("host firewall: %s not found (install iptables)", name)
}

// Install puts the chain and INPUT's jump to it in place, replacing the
// chain's content if it exists. Running it again changes nothing.
func (f *Firewall) Install(ctx context.Context) error {
	unlock := lockHost()
	defer unlock()
	if err := f.run(ctx, f.cfg.rules(), f.restore, "-w", "10", "--noflush"); err != nil {
		return fmt.Errorf("host firewall: write chain %s: %w", Chain(f.cfg.Pool), err)
	}
	j := jump(f.cfg.Pool)
	ok, err := f.exists(ctx, "INPUT", j)
	if err != nil {
		return err
	}
	if !ok {
		// First in INPUT: a host firewall's broad ACCEPT further down
		// must not let the pool through before it is seen.
		if err := f.ipt(ctx, append([]string{"-I", "INPUT", "1"}, j...)...); err != nil {
			return fmt.Errorf("host firewall: insert jump to %s in INPUT: %w", Chain(f.cfg.Pool), err)
		}
	}
	return nil
}

// Installed reports whether the jump and the chain's final rule are both
// there.
func (f *Firewall) Installed(ctx context.Context) (bool, error) {
	// The chain first: iptables fails (rather than says no) on a jump to
	// a chain that does not exist.
	ok, err := f.exists(ctx, Chain(f.cfg.Pool), rejectArgs())
	if err != nil || !ok {
		return false, err
	}
	return f.exists(ctx, "INPUT", jump(f.cfg.Pool))
}

// Keep checks every interval that the rule is still there, and puts it
// back if something removed it: a firewall service's reload flushes INPUT
// while the containers keep running.
func (f *Firewall) Keep(ctx context.Context, interval time.Duration) {
	t := time.NewTicker(interval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		f.repair(ctx)
	}
}

// repair installs the rule again if it is gone.
func (f *Firewall) repair(ctx context.Context) {
	ok, err := f.Installed(ctx)
	if err != nil {
		f.log.Warn("host firewall: check", "err", err)
		return
	}
	if ok {
		return
	}
	f.log.Warn("host firewall: rule gone (a firewall reload?); installing it again", "chain", Chain(f.cfg.Pool))
	if err := f.Install(ctx); err != nil && ctx.Err() == nil {
		f.log.Error("host firewall: reinstall", "err", err)
	}
}

// Remove deletes the pool's jump and chain, if any; for when the admin
// turns host_firewall off. Without iptables there is nothing to remove.
func Remove(ctx context.Context, pool netip.Prefix, log *slog.Logger) error {
	ipt, err := lookPath("iptables")
	if err != nil {
		return nil
	}
	f := &Firewall{cfg: Config{Pool: pool}, log: log, iptables: ipt}
	unlock := lockHost()
	defer unlock()
	chain := Chain(pool)
	if !f.chainExists(ctx, chain) {
		return nil // and no jump to it: iptables refuses those
	}
	j := jump(pool)
	// Several gateways racing without the lock may have left duplicates.
	for range 64 {
		ok, err := f.exists(ctx, "INPUT", j)
		if err != nil {
			return err
		}
		if !ok {
			break
		}
		if err := f.ipt(ctx, append([]string{"-D", "INPUT"}, j...)...); err != nil {
			return fmt.Errorf("host firewall: delete jump: %w", err)
		}
	}
	if err := f.ipt(ctx, "-F", chain); err != nil {
		return fmt.Errorf("host firewall: flush %s: %w", chain, err)
	}
	if err := f.ipt(ctx, "-X", chain); err != nil {
		return fmt.Errorf("host firewall: delete %s: %w", chain, err)
	}
	log.Info("host firewall: removed", "chain", chain, "pool", pool)
	return nil
}

// exists runs iptables -C: exit status 1 means "no such rule" (or no such
// chain); anything else that fails is an error.
func (f *Firewall) exists(ctx context.Context, chain string, rule []string) (bool, error) {
	err := f.ipt(ctx, append([]string{"-C", chain}, rule...)...)
	var ee *exec.ExitError
	switch {
	case err == nil:
		return true, nil
	case errors.As(err, &ee) && ee.ExitCode() == 1:
		return false, nil
	default:
		return false, fmt.Errorf("host firewall: check %s: %w", chain, err)
	}
}

func (f *Firewall) chainExists(ctx context.Context, chain string) bool {
	return f.ipt(ctx, "-S", chain) == nil
}

func (f *Firewall) ipt(ctx context.Context, args ...string) error {
	return f.run(ctx, "", f.iptables, append([]string{"-w", "10"}, args...)...)
}

// run execs a binary; its stderr becomes the error's text.
func (f *Firewall) run(ctx context.Context, stdin, bin string, args ...string) error {
	cmd := exec.CommandContext(ctx, bin, args...)
	if stdin != "" {
		cmd.Stdin = strings.NewReader(stdin)
	}
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	if err := cmd.Run(); err != nil {
		if msg := strings.TrimSpace(stderr.String()); msg != "" {
			return fmt.Errorf("%s: %w", msg, err)
		}
		return err
	}
	return nil
}

// lockPath serialises gateways changing the rules on one host, so two
// starting at once do not both insert the jump.
const lockPath = "/run/ds01-gateway-hostfw.lock"

func lockHost() func() {
	fd, err := os.OpenFile(lockPath, os.O_CREATE|os.O_RDWR, 0o600)
	if err != nil {
		return func() {} // duplicates are harmless, and Remove clears them
	}
	if err := syscall.Flock(int(fd.Fd()), syscall.LOCK_EX); err != nil {
		_ = fd.Close()
		return func() {}
	}
	// Closing the file releases the lock: nothing to check.
	return func() { _ = fd.Close() }
}
