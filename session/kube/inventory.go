package kube

import (
	"context"
	"fmt"
	"regexp"
	"slices"
	"strconv"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"

	"github.com/ds01/ds01-gateway/session/gpu"
)

// Inventory is the cluster's GPUs as a gpu.Inventory: every slot of every
// Ready, schedulable node that matches Config.NodeSelector, from the
// node's status capacity of Config.GPUResource (a full GPU each) and of
// each of Config.MIGResources (a MIG instance each). The gateway's
// allocator hands the slots out as on one host, and Launch pins a pod to
// the node of its slots, so the allocator's accounting and the
// scheduler's agree.
//
// The slots are read when Slots is called: the gateway does so once at
// start, and its allocator keeps that set while it runs. A node whose
// capacity changes, or that joins or leaves, counts after a restart; until
// then a pod pinned to a node that lost its GPUs fails to launch with the
// kubelet's reason, and the session says so.
type Inventory struct {
	c   *Client
	cfg Config
}

// NewInventory is the GPU inventory of the nodes cfg selects.
func NewInventory(c *Client, cfg Config) *Inventory {
	return &Inventory{c: c, cfg: cfg}
}

// migProfile reads a MIG resource name: "nvidia.com/mig-3g.20gb" is 3
// compute slices and 20 GB.
var migProfile = regexp.MustCompile(`(?:^|/)mig-([1-7])g\.(\d+)gb$`)

// MIGSlices is the compute slices of a MIG resource name, from its
// profile ("nvidia.com/mig-3g.20gb" is 3).
func MIGSlices(resource string) (int, error) {
	m := migProfile.FindStringSubmatch(resource)
	if m == nil {
		return 0, fmt.Errorf("%q: want a MIG resource name like nvidia.com/mig-3g.20gb", resource)
	}
	n, _ := strconv.Atoi(m[1])
	return n, nil
}

// Slots lists the selected nodes' GPU slots, by node name, full GPUs
// before MIG instances.
func (inv *Inventory) Slots(ctx context.Context) ([]gpu.Slot, error) {
	sel := labels.SelectorFromSet(inv.cfg.NodeSelector).String()
	nodes, err := inv.c.Clientset.CoreV1().Nodes().List(ctx, metav1.ListOptions{LabelSelector: sel})
	if err != nil {
		return nil, fmt.Errorf("list nodes: %w", err)
	}
	items := nodes.Items
	slices.SortFunc(items, func(a, b corev1.Node) int {
		switch {
		case a.Name < b.Name:
			return -1
		case a.Name > b.Name:
			return 1
		}
		return 0
	})
	var out []gpu.Slot
	for i := range items {
		n := &items[i]
		if !schedulable(n) {
			continue
		}
		idx := 0 // one numbering per node, across its resources
		add := func(res string, slices int, memMiB uint64, name string) {
			q, ok := n.Status.Capacity[corev1.ResourceName(res)]
			if !ok {
				return
			}
			for j := int64(0); j < q.Value(); j++ {
				out = append(out, gpu.Slot{
					UUID:      SlotUUID(n.Name, res, int(j)),
					Index:     fmt.Sprintf("%s:%d", n.Name, idx),
					Name:      name,
					MemoryMiB: memMiB,
					Slices:    slices,
				})
				idx++
			}
		}
		add(inv.cfg.GPUResource, 0, 0, inv.cfg.GPUResource+" on "+n.Name)
		for _, res := range inv.cfg.MIGResources {
			m := migProfile.FindStringSubmatch(res)
			if m == nil {
				continue // refused by the configuration's check
			}
			s, _ := strconv.Atoi(m[1])
			gb, _ := strconv.ParseUint(m[2], 10, 32)
			add(res, s, gb*1024, res+" on "+n.Name)
		}
	}
	return out, nil
}

// schedulable is a node the scheduler places pods on: Ready and not
// cordoned. A NotReady node's GPUs could be handed out but never run.
func schedulable(n *corev1.Node) bool {
	if n.Spec.Unschedulable {
		return false
	}
	for _, c := range n.Status.Conditions {
		if c.Type == corev1.NodeReady {
			return c.Status == corev1.ConditionTrue
		}
	}
	return false
}

// Utilization is unknown: the kubelet does not report it, and DCGM's
// exporter is not read (the GPU idle policy then relies on CPU alone).
func (inv *Inventory) Utilization(string) (int, bool) { return 0, false }

// Real is true: the slots are devices the pod requests from the node.
func (inv *Inventory) Real() bool { return true }

// PluginDevices is true: the node's device plugin picks the devices of a
// pod's request and sets NVIDIA_VISIBLE_DEVICES; the slot UUIDs are the
// gateway's bookkeeping only (session leaves them out of the environment).
func (inv *Inventory) PluginDevices() bool { return true }

// Close releases nothing: the API connection is the runtime's.
func (inv *Inventory) Close() error { return nil }
