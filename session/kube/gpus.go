package kube

import (
	"fmt"
	"strconv"
	"strings"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
)

// slotPrefix starts every GPU slot UUID of the Kubernetes inventory, so
// the allocator's opaque UUIDs carry where a slot is: node, extended
// resource, index.
const slotPrefix = "k8s/"

// SlotUUID names the index'th unit of resource (an extended resource such
// as nvidia.com/gpu or nvidia.com/mig-3g.20gb) on node.
func SlotUUID(node, resource string, index int) string {
	return slotPrefix + node + "/" + resource + "/" + strconv.Itoa(index)
}

// ParseSlotUUID splits a SlotUUID. Node names hold no '/', and the index is
// the last element, so a resource name's own '/' is kept whole.
func ParseSlotUUID(s string) (node, resource string, index int, err error) {
	rest, ok := strings.CutPrefix(s, slotPrefix)
	if !ok {
		return "", "", 0, fmt.Errorf("gpu slot %q: not a kubernetes slot (%s<node>/<resource>/<index>)", s, slotPrefix)
	}
	node, rest, ok = strings.Cut(rest, "/")
	i := strings.LastIndexByte(rest, '/')
	if !ok || node == "" || i <= 0 {
		return "", "", 0, fmt.Errorf("gpu slot %q: want %s<node>/<resource>/<index>", s, slotPrefix)
	}
	resource = rest[:i]
	index, err = strconv.Atoi(rest[i+1:])
	if err != nil || index < 0 {
		return "", "", 0, fmt.Errorf("gpu slot %q: bad index", s)
	}
	return node, resource, index, nil
}

// gpuPlacement is the node the slots are on and how many units of each
// resource they are. The allocator has decided already: the pod is pinned
// there (nodeName, no scheduler) and asks the kubelet for exactly that
// count, so the kubelet's accounting matches the allocator's.
func gpuPlacement(slots []string) (string, corev1.ResourceList, error) {
	if len(slots) == 0 {
		return "", nil, nil
	}
	node := ""
	count := map[string]int64{}
	for _, s := range slots {
		n, res, _, err := ParseSlotUUID(s)
		if err != nil {
			return "", nil, err
		}
		if node != "" && n != node {
			return "", nil, fmt.Errorf("gpu slots on two nodes (%s and %s): a pod runs on one node", node, n)
		}
		node = n
		count[res]++
	}
	list := corev1.ResourceList{}
	for res, n := range count {
		list[corev1.ResourceName(res)] = *resource.NewQuantity(n, resource.DecimalSI)
	}
	return node, list, nil
}
