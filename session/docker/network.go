package docker

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"strings"

	cerrdefs "github.com/containerd/errdefs"
	"github.com/docker/docker/api/types/network"
)

// subnetBits is the size of each user's network: 62 addresses, far more
// containers than any user may run.
const subnetBits = 26

// EnsureNetwork makes the network name ready ahead of a launch (an early
// start's preparation); Launch and Build make it too.
func (d *Docker) EnsureNetwork(ctx context.Context, name string, labels map[string]string) error {
	return d.ensureNetwork(ctx, name, labels)
}

// ensureNetwork creates a bridge network if it does not exist. Docker keeps
// separate bridge networks from reaching each other, which is what isolates
// one user's containers from another's.
//
// Each network gets an explicit /26 from the gateway's pool: Docker's
// default pools hold only 31 networks, so a server with 50 users would
// stop creating them.
func (d *Docker) ensureNetwork(ctx context.Context, name string, labels map[string]string) error {
	if name == "" {
		return nil
	}
	if _, ok := d.networks.Load(name); ok {
		return nil
	}
	d.netMu.Lock()
	defer d.netMu.Unlock()
	if _, ok := d.networks.Load(name); ok {
		return nil
	}
	_, err := d.cli.NetworkInspect(ctx, name, network.InspectOptions{})
	var createErr error
	var refused []netip.Prefix // subnets the engine holds without listing them
	// Each refused subnet is skipped next time, so every attempt makes
	// progress. Parallel gateways on one engine (the e2e suite) and
	// subnets the engine still holds after a removal can refuse many in
	// a row: 8 attempts were seen to run out in CI.
	for attempt := 0; cerrdefs.IsNotFound(err) && attempt < maxNetworkAttempts; attempt++ {
		var subnet netip.Prefix
		if subnet, err = d.freeSubnet(ctx, refused); err != nil {
			break
		}
		_, createErr = d.cli.NetworkCreate(ctx, name, network.CreateOptions{
			Driver: "bridge",
			Labels: labels,
			IPAM:   &network.IPAM{Config: []network.IPAMConfig{{Subnet: subnet.String()}}},
		})
		if createErr != nil {
			// Another process may have taken the subnet, or created this
			// very network: look again.
			d.log.Warn("create network", "network", name, "subnet", subnet, "err", createErr)
			refused = append(refused, subnet)
		}
		_, err = d.cli.NetworkInspect(ctx, name, network.InspectOptions{})
	}
	if err != nil {
		return fmt.Errorf("network %s: %w", name, errors.Join(err, createErr))
	}
	d.networks.Store(name, true)
	return nil
}

// networkMissing reports whether err is the engine saying that the network
// name does not exist: libnetwork's "network NAME not found" or the API's
// "No such network: NAME". Only the user's own network counts: any other
// missing network is no reason to create this one and retry.
func networkMissing(err error, name string) bool {
	if err == nil || name == "" {
		return false
	}
	msg := err.Error()
	if strings.Contains(msg, "network "+name+" not found") {
		return true
	}
	const api = "No such network: "
	for i := strings.Index(msg, api+name); i >= 0; {
		rest := msg[i+len(api)+len(name):]
		if rest == "" || !isNameByte(rest[0]) {
			return true // not a longer name that starts with this one
		}
		j := strings.Index(rest, api+name)
		if j < 0 {
			break
		}
		i += len(api) + len(name) + j
	}
	return false
}

func isNameByte(c byte) bool {
	return c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '-' || c == '_' || c == '.'
}

// maxNetworkAttempts bounds the creates of one ensureNetwork.
const maxNetworkAttempts = 64

// errPoolFull is returned when every subnet of the pool is in use.
var errPoolFull = errors.New("no free subnet left in network_pool")

// freeSubnet returns the first /26 of the pool that overlaps no existing
// network and none of avoid. The engine can hold a subnet it no longer
// lists (a network being removed), hence avoid.
func (d *Docker) freeSubnet(ctx context.Context, avoid []netip.Prefix) (netip.Prefix, error) {
	nets, err := d.cli.NetworkList(ctx, network.ListOptions{})
	if err != nil {
		return netip.Prefix{}, fmt.Errorf("list networks: %w", err)
	}
	used := append([]netip.Prefix(nil), avoid...)
	for _, n := range nets {
		for _, c := range n.IPAM.Config {
			if p, err := netip.ParsePrefix(c.Subnet); err == nil {
				used = append(used, p.Masked())
			}
		}
	}
	return firstFree(d.pool, subnetBits, used)
}

func firstFree(pool netip.Prefix, bits int, used []netip.Prefix) (netip.Prefix, error) {
	if !pool.IsValid() || pool.Bits() > bits {
		return netip.Prefix{}, fmt.Errorf("network pool %s cannot hold a /%d", pool, bits)
	}
	step := uint32(1) << (32 - bits)
	base := pool.Masked().Addr().As4()
	start := uint32(base[0])<<24 | uint32(base[1])<<16 | uint32(base[2])<<8 | uint32(base[3])
	count := uint32(1) << (bits - pool.Bits())
next:
	for i := uint32(0); i < count; i++ {
		a := start + i*step
		cand := netip.PrefixFrom(netip.AddrFrom4([4]byte{byte(a >> 24), byte(a >> 16), byte(a >> 8), byte(a)}), bits) //nolint:gosec // taking the address apart byte by byte
		for _, u := range used {
			if u.Overlaps(cand) {
				continue next
			}
		}
		return cand, nil
	}
	return netip.Prefix{}, fmt.Errorf("%w (%s)", errPoolFull, pool)
}
