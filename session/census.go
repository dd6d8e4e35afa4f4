package session

// What the metrics exporter reads of the container slots: a census taken
// under the Manager's lock from the published snapshots, without waiting
// for a launch and without asking the engine, so it is cheap enough to
// take every few seconds.

// Statuses of ContainerState.
const (
	StatusRunning   = "running"   // running, with connections open
	StatusDetached  = "detached"  // running, no connection open
	StatusLaunching = "launching" // a connection waits for its launch (build, GPU queue, start)
)

// ContainerState is one container slot as the metrics count it.
type ContainerState struct {
	// User is "" while launching.
	User, Project string
	// Name is the running container's name; "" while launching.
	Name   string
	Status string
	// Connections is the number of leases on it.
	Connections int
}

// ContainerStates lists every container slot that runs or is being
// launched, in no order.
func (m *Manager) ContainerStates() []ContainerState {
	m.mu.Lock()
	defer m.mu.Unlock()
	out := make([]ContainerState, 0, len(m.entries))
	for k, e := range m.entries {
		sn := e.snap.Load()
		switch {
		case sn != nil:
			st := StatusRunning
			if e.refs == 0 {
				st = StatusDetached
			}
			out = append(out, ContainerState{User: sn.user.Name, Project: k.project, Name: sn.name, Status: st, Connections: e.refs})
		case e.refs > 0:
			// No User: e.user is guarded by e.mu, which a launch holds,
			// and the census must not wait for it.
			out = append(out, ContainerState{Project: k.project, Status: StatusLaunching, Connections: e.refs})
		}
	}
	return out
}
