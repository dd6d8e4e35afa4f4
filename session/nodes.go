package session

import "context"

// LabelNode is where a runtime that spreads containers over nodes
// (kubernetes) reports, in a listed container's labels, the node it runs
// on. The Docker runtime sets none: everything runs on this host.
const LabelNode = "ds01.node"

// withNodes fills in the node of each of cs from the runtime's listing of
// this gateway's containers: one List per listing, never on a login. A
// listing that fails leaves the nodes out; the containers still show.
func (d *deps) withNodes(ctx context.Context, cs []ContainerInfo) {
	if len(cs) == 0 {
		return
	}
	listed, err := d.rt.List(ctx, map[string]string{LabelInstance: d.cfg.Instance})
	if err != nil {
		d.log.Debug("list containers for their nodes", "err", err)
		return
	}
	node := make(map[string]string, len(listed))
	for _, c := range listed {
		if n := c.Labels[LabelNode]; nodeName(n) {
			node[c.ID] = n
		}
	}
	for i := range cs {
		cs[i].Node = node[cs[i].ID]
	}
}

// nodeName accepts what Kubernetes accepts as a node's name (a DNS
// subdomain) and nothing else: with Docker the label could come from a
// user's image, and listings print it to an admin's terminal.
func nodeName(s string) bool {
	if s == "" || len(s) > 253 {
		return false
	}
	for _, r := range s {
		if (r < 'a' || r > 'z') && (r < '0' || r > '9') && r != '-' && r != '.' {
			return false
		}
	}
	return true
}
