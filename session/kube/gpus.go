package kube

import (
	"fmt"
	"strconv"
	"strings"
)

// slotPrefix marks the slot UUIDs of a Kubernetes GPU inventory, so they
// can never be mistaken for NVML's "GPU-..." and "MIG-..." UUIDs.
const slotPrefix = "k8s/"

// SlotUUID names one GPU slot of a node: "k8s/<node>/<resource>/<index>",
// e.g. "k8s/node1/nvidia.com/gpu/0". Launch reads the node and resource
// back to pin the pod and request the resource.
func SlotUUID(node, resource string, index int) string {
	return slotPrefix + node + "/" + resource + "/" + strconv.Itoa(index)
}

// ParseSlotUUID splits a SlotUUID. A node name has no "/", the index is
// after the last one, and the resource (which has its own "/") is between.
func ParseSlotUUID(s string) (node, resource string, index int, err error) {
	rest, ok := strings.CutPrefix(s, slotPrefix)
	if !ok {
		return "", "", 0, fmt.Errorf("gpu slot %q: not a kubernetes slot (k8s/<node>/<resource>/<index>)", s)
	}
	node, rest, _ = strings.Cut(rest, "/")
	i := strings.LastIndexByte(rest, '/')
	if node == "" || i <= 0 {
		return "", "", 0, fmt.Errorf("gpu slot %q: want k8s/<node>/<resource>/<index>", s)
	}
	resource = rest[:i]
	index, err = strconv.Atoi(rest[i+1:])
	if err != nil || index < 0 {
		return "", "", 0, fmt.Errorf("gpu slot %q: want k8s/<node>/<resource>/<index>", s)
	}
	return node, resource, index, nil
}
