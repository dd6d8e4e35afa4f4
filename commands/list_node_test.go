package commands

import (
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/ds01/ds01-gateway/session"
	"github.com/ds01/ds01-gateway/store"
)

// On a cluster container-list shows each container's node; on one host
// (no node anywhere) the column is not there.
func TestContainerListNodeColumn(t *testing.T) {
	now := time.Now()
	f := &fakeService{}
	f.own = []session.ContainerInfo{
		{User: "ann", Project: "thesis", Name: "ds01-ann.thesis-1", ID: "c1", State: store.StateRunning, Created: now},
	}
	_, out, _ := run(t, f, "", "container-list")
	if strings.Contains(out, "NODE") {
		t.Errorf("a NODE column without nodes:\n%s", out)
	}
	_, out, _ = run(t, f, "", "container-list --format json")
	if strings.Contains(out, `"node"`) {
		t.Errorf("json has a node without one: %s", out)
	}

	f.own[0].Node = "gpu-node-2"
	_, out, _ = run(t, f, "", "container-list")
	lines := strings.Split(strings.TrimSpace(out), "\n")
	if len(lines) != 2 || !strings.HasPrefix(lines[0], "PROJECT") {
		t.Fatalf("container-list:\n%s", out)
	}
	head, row := strings.Fields(lines[0]), strings.Fields(lines[1])
	if head[2] != "NODE" || row[2] != "gpu-node-2" {
		t.Errorf("want NODE third, after CONTAINER:\n%s", out)
	}
	_, out, _ = run(t, f, "", "container-list --format json")
	var v []map[string]any
	if err := json.Unmarshal([]byte(out), &v); err != nil || len(v) != 1 || v[0]["node"] != "gpu-node-2" {
		t.Errorf("json: %v %s", err, out)
	}

	// An admin's listing: a container without a node (retired) shows "-".
	f.all = []session.ContainerInfo{
		{User: "ann", Project: "thesis", Name: "ds01-ann.thesis-1", ID: "c1", State: store.StateRunning, Created: now, Node: "gpu-node-2"},
		{User: "bob", Project: "old", Name: "ds01-bob.old-2", ID: "c2", State: store.StateRetired, Created: now, Retired: now},
	}
	_, out, _ = runAdmin(t, f, "container-list --all --retired")
	lines = strings.Split(strings.TrimSpace(out), "\n")
	if len(lines) != 3 || strings.Fields(lines[0])[3] != "NODE" || strings.Fields(lines[1])[3] != "gpu-node-2" || strings.Fields(lines[2])[3] != "-" {
		t.Errorf("container-list --all --retired:\n%s", out)
	}
}
