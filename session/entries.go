package session

import (
	"fmt"
	"time"

	"github.com/ds01/ds01-gateway/session/gpu"
	"github.com/ds01/ds01-gateway/store"
)

// What the other parts may ask of the Manager's container slots: a
// container as listings show it, how many a user runs, and a place
// against max_containers_per_user. None of them waits for a launch.

// container describes the project's running container, if any. It never
// waits for a launch or build in progress.
func (m *Manager) container(u store.User, project string) (ContainerInfo, bool) {
	m.mu.Lock()
	e := m.entries[key{u.UID, project}]
	refs := 0
	if e != nil {
		refs = e.refs
	}
	m.mu.Unlock()
	if e == nil {
		return ContainerInfo{}, false
	}
	sn := e.snap.Load()
	if sn == nil {
		return ContainerInfo{}, false
	}
	info := ContainerInfo{
		User: sn.user.Name, Project: project, Name: sn.name, ID: sn.id, State: store.StateRunning,
		ImageID: sn.imageID, Connections: refs, Created: sn.launchedAt, GPUs: sn.gpus,
	}
	if m.reaper != nil {
		info.Life = m.reaper.describe(sn.id)
	}
	return info, true
}

// projectsOf lists the projects of the user's container slots, running or
// not, in no order.
func (m *Manager) projectsOf(uid int) []string {
	m.mu.Lock()
	defer m.mu.Unlock()
	var projects []string
	for k := range m.entries {
		if k.uid == uid {
			projects = append(projects, k.project)
		}
	}
	return projects
}

// published is every running container as last published.
func (m *Manager) published() []*snapshot {
	m.mu.Lock()
	defer m.mu.Unlock()
	var out []*snapshot
	for _, e := range m.entries {
		if sn := e.snap.Load(); sn != nil {
			out = append(out, sn)
		}
	}
	return out
}

// containerCount is the count the cap is checked against: the user's
// containers running or being launched, and rsync's transfer containers.
func (m *Manager) containerCount(uid int) int {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.containersOf(uid, nil)
}

// reserveContainer counts e against the user's max_containers_per_user
// for the duration of its launch, or refuses it. Counting and reserving
// happen under one lock, so two logins at once cannot both take the last
// place.
func (m *Manager) reserveContainer(e *entry, u store.User, l gpu.Limits) (func(), error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if err := m.capRefusal(u.UID, l, e, ""); err != nil {
		return nil, err
	}
	e.reserved = true
	return func() {
		m.mu.Lock()
		e.reserved = false
		m.mu.Unlock()
	}, nil
}

// reserveTransfer counts one more transfer container of uid against
// max_containers_per_user, with their project containers, or refuses it.
func (m *Manager) reserveTransfer(uid int, l gpu.Limits) (release func(), err error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if err := m.capRefusal(uid, l, nil, ", and rsync needs one more for the transfer (sftp and scp need none)"); err != nil {
		return nil, err
	}
	if m.transferring == nil {
		m.transferring = map[int]int{}
	}
	m.transferring[uid]++
	return func() {
		m.mu.Lock()
		defer m.mu.Unlock()
		if m.transferring[uid]--; m.transferring[uid] <= 0 {
			delete(m.transferring, uid)
		}
	}, nil
}

// capRefusal refuses one more container of the user's beyond
// max_containers_per_user, counting all but except's; what says what the
// new one would be for. m.mu is held.
func (m *Manager) capRefusal(uid int, l gpu.Limits, except *entry, what string) error {
	if l.MaxContainers == nil {
		return nil
	}
	if n := m.containersOf(uid, except); n >= *l.MaxContainers {
		return fmt.Errorf("%w: you run %d of %d containers (max_containers_per_user)%s: retire one first (container-list, container-retire)", ErrLimit, n, *l.MaxContainers, what)
	}
	return nil
}

// containersOf counts the user's containers, running or being launched,
// other than except's, with their running transfer containers; m.mu is
// held.
func (m *Manager) containersOf(uid int, except *entry) int {
	n := m.transferring[uid] // rsync's transfer containers count too
	for k, e := range m.entries {
		if k.uid == uid && e != except && (e.snap.Load() != nil || e.reserved) {
			n++
		}
	}
	return n
}

// adopt puts the entry that build returns into k's slot, with no
// connection and its grace timer running, unless k already has one:
// then build is not called and adopt returns false. build runs under
// m.mu (see reconcile.go).
func (m *Manager) adopt(k key, build func() *entry) bool {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.entries[k] != nil {
		return false
	}
	e := build()
	e.publish()
	m.entries[k] = e
	gen := e.gen
	e.timer = time.AfterFunc(m.cfg.RetireAfter, func() { m.expire(k, e, gen) })
	return true
}

// refsOf is how many leases hold e: its open sessions and forwards.
func (m *Manager) refsOf(e *entry) int {
	m.mu.Lock()
	defer m.mu.Unlock()
	return e.refs
}
