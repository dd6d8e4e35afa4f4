package session

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"sync"
	"time"

	"github.com/ds01/ds01-gateway/session/runtime"
	"github.com/ds01/ds01-gateway/store"
)

// Network holders (runtime.NetworkHolders) make a project's next cold
// start cheap: its container joins the namespace a holder keeps on the
// user's network instead of paying Docker's network setup. The policy:
//   - a launch joins the project's holder when there is one; when there
//     is none it launches as before, on the network, and a holder is made
//     in the background afterwards, for the next cold start: the first
//     launch never waits for it;
//   - a holder lingers for NetworkLinger after its project's last use
//     (its container running, or retired), then goes, in the watch loop;
//   - at most NetworkHoldersMax exist: the least recently used unused one
//     makes room;
//   - a restart adopts them by their labels, keeping their last use.
// A holder is never shared: one per (user, project).

// RoleHolder is the LabelRole of a network holder; everything that lists
// project containers skips containers with any role.
const RoleHolder = "netholder"

// holderTimeout bounds a holder's launch or removal.
const holderTimeout = time.Minute

// netHolders is the set of this gateway's network holders.
type netHolders struct {
	*deps
	rt  runtime.NetworkHolders // nil when off
	now func() time.Time

	mu       sync.Mutex
	byKey    map[key]*holder
	starting map[key]bool
	// wg counts the background launches, for tests.
	wg sync.WaitGroup
}

type holder struct {
	id      string
	lastUse time.Time
}

func newNetHolders(d *deps) *netHolders {
	h := &netHolders{deps: d, now: time.Now, byKey: map[key]*holder{}, starting: map[key]bool{}}
	if nh, ok := d.rt.(runtime.NetworkHolders); ok && d.cfg.NetworkLinger > 0 {
		h.rt = nh
	}
	return h
}

// on reports whether holders are used at all.
func (h *netHolders) on() bool { return h.rt != nil }

// join returns the ID of k's holder for a launch to join, "" for none,
// and counts the launch as a use.
func (h *netHolders) join(k key) string {
	if !h.on() {
		return ""
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	hd := h.byKey[k]
	if hd == nil {
		return ""
	}
	hd.lastUse = h.now()
	return hd.id
}

// failed forgets k's holder id after a launch could not join it (it died,
// or an admin removed it) and removes what is left of it; the next
// launch makes a new one.
func (h *netHolders) failed(k key, id string, err error) {
	h.log.Warn("launch: could not join the network holder, launching on the network", "uid", k.uid, "project", k.project, "holder", short(id), "err", err)
	h.mu.Lock()
	if hd := h.byKey[k]; hd != nil && hd.id == id {
		delete(h.byKey, k)
	}
	h.mu.Unlock()
	h.remove(context.Background(), id, "join failed")
}

// holderRunning reports whether the holder id still runs; an engine that
// cannot say counts as no.
func (m *Manager) holderRunning(ctx context.Context, id string) bool {
	running, err := m.rt.Running(ctx, id)
	return err == nil && running
}

// used records a use of k's project now: its container retired.
func (h *netHolders) used(k key) {
	if !h.on() {
		return
	}
	h.mu.Lock()
	if hd := h.byKey[k]; hd != nil {
		hd.lastUse = h.now()
	}
	h.mu.Unlock()
}

// ensure makes k's holder in the background if it has none, making room
// under the cap first; busy says which projects' containers run (their
// holders are never evicted).
func (h *netHolders) ensure(u store.User, project string, busy func() map[key]bool) {
	if !h.on() {
		return
	}
	k := key{u.UID, project}
	h.mu.Lock()
	if h.byKey[k] != nil || h.starting[k] {
		h.mu.Unlock()
		return
	}
	h.starting[k] = true
	h.wg.Add(1)
	h.mu.Unlock()
	go func() {
		defer h.wg.Done()
		ctx, cancel := context.WithTimeout(context.Background(), holderTimeout)
		defer cancel()
		id, err := h.launch(ctx, u, project, busy)
		h.mu.Lock()
		delete(h.starting, k)
		if err == nil {
			h.byKey[k] = &holder{id: id, lastUse: h.now()}
		}
		h.mu.Unlock()
		if err != nil {
			h.log.Warn("network holder", "user", u.Name, "project", project, "err", err)
		}
	}()
}

// errHoldersFull: every holder's project is in use and the cap is reached.
var errHoldersFull = errors.New("network_holders_max reached, every holder in use")

func (h *netHolders) launch(ctx context.Context, u store.User, project string, busy func() map[key]bool) (string, error) {
	inUse := busy() // before h.mu: busy takes the Manager's lock
	h.mu.Lock()
	var evict []string
	// h.starting counts this one.
	if over := len(h.byKey) + len(h.starting) - h.cfg.NetworkHoldersMax; over > 0 {
		evict = h.pickLocked(inUse, over)
		if len(evict) < over {
			h.mu.Unlock()
			return "", errHoldersFull
		}
	}
	h.mu.Unlock()
	for _, id := range evict {
		h.remove(ctx, id, "cap")
	}
	var b [3]byte
	rand.Read(b[:])
	id, err := h.rt.LaunchHolder(ctx, runtime.HolderSpec{
		Name:          fmt.Sprintf("ds01-net-%s.%s-%s", u.Name, project, hex.EncodeToString(b[:])),
		Image:         h.cfg.BaseImage,
		Hostname:      project,
		Labels:        h.containerLabels(u, project, h.now(), RoleHolder),
		Network:       userNetwork(u),
		NetworkLabels: map[string]string{LabelUser: u.Name, LabelUID: strconv.Itoa(u.UID), LabelInstance: h.cfg.Instance},
	})
	if err != nil {
		return "", fmt.Errorf("launch: %w", err)
	}
	h.log.Info("network holder started", "user", u.Name, "project", project, "holder", short(id))
	return id, nil
}

// sweep removes the holders unused for NetworkLinger and those beyond the
// cap; busy projects count as used now. It runs in the watch loop.
func (h *netHolders) sweep(ctx context.Context, busy map[key]bool) {
	if !h.on() {
		return
	}
	h.mu.Lock()
	now := h.now()
	for k := range busy {
		if hd := h.byKey[k]; hd != nil {
			hd.lastUse = now
		}
	}
	var gone []string
	for k, hd := range h.byKey {
		if now.Sub(hd.lastUse) >= h.cfg.NetworkLinger {
			gone = append(gone, hd.id)
			delete(h.byKey, k)
		}
	}
	gone = append(gone, h.pickLocked(busy, len(h.byKey)+len(h.starting)-h.cfg.NetworkHoldersMax)...)
	h.mu.Unlock()
	for _, id := range gone {
		h.remove(ctx, id, "unused")
	}
}

// pickLocked takes up to n holders out of the set, the least recently
// used first, skipping busy projects', and returns their IDs.
func (h *netHolders) pickLocked(busy map[key]bool, n int) []string {
	if n <= 0 {
		return nil
	}
	var idle []key
	for k := range h.byKey {
		if !busy[k] {
			idle = append(idle, k)
		}
	}
	slices.SortFunc(idle, func(a, b key) int { return h.byKey[a].lastUse.Compare(h.byKey[b].lastUse) })
	var ids []string
	for _, k := range idle[:min(n, len(idle))] {
		ids = append(ids, h.byKey[k].id)
		delete(h.byKey, k)
	}
	return ids
}

func (h *netHolders) remove(ctx context.Context, id, why string) {
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), holderTimeout)
	defer cancel()
	if err := h.deps.rt.Retire(ctx, id); err != nil {
		h.log.Warn("remove network holder", "holder", short(id), "err", err)
		return
	}
	h.log.Info("network holder removed", "holder", short(id), "why", why)
}

// adopt takes over the holders a previous run left (listed with their
// labels), keeping each one's last use: the later of its creation and
// its project container's last retire in the store. Holders of users or
// projects that are gone, duplicates, stopped ones, and all of them when
// holders are off, are removed.
func (h *netHolders) adopt(ctx context.Context, live []runtime.Container, adoptedRunning map[key]bool) {
	if len(live) == 0 {
		return
	}
	lastRetire := map[key]time.Time{}
	if h.on() {
		if rows, err := h.store.ListContainers(ctx, false); err == nil {
			uids := map[string]int{}
			for _, r := range rows {
				uid, ok := uids[r.User]
				if !ok {
					if u, err := h.store.GetUser(ctx, r.User); err == nil {
						uid = u.UID
					}
					uids[r.User] = uid
				}
				if uid == 0 {
					continue
				}
				k := key{uid, r.Project}
				if r.RetiredAt.After(lastRetire[k]) {
					lastRetire[k] = r.RetiredAt
				}
			}
		}
	}
	now := h.now()
	for _, c := range live {
		k, why := h.adoptable(ctx, c)
		if why == "" {
			h.mu.Lock()
			if h.byKey[k] == nil {
				created, _ := time.Parse(time.RFC3339, c.Labels[LabelCreated])
				last := created
				if lastRetire[k].After(last) {
					last = lastRetire[k]
				}
				if adoptedRunning[k] || last.After(now) {
					last = now
				}
				h.byKey[k] = &holder{id: c.ID, lastUse: last}
			} else {
				why = "duplicate"
			}
			h.mu.Unlock()
		}
		if why != "" {
			h.remove(ctx, c.ID, "reconcile: "+why)
			continue
		}
		h.log.Info("reconcile: adopted network holder", "uid", k.uid, "project", k.project, "holder", short(c.ID))
	}
}

// adoptable says why a listed holder must go, "" if it may stay.
func (h *netHolders) adoptable(ctx context.Context, c runtime.Container) (key, string) {
	if !h.on() {
		return key{}, "holders are off"
	}
	if !c.Running {
		return key{}, "not running"
	}
	uid, err := strconv.Atoi(c.Labels[LabelUID])
	project, name := c.Labels[LabelProject], c.Labels[LabelUser]
	if err != nil || uid <= 0 || ValidateProject(project, "") != nil {
		return key{}, "bad labels"
	}
	u, err := h.store.GetUser(ctx, name)
	if err != nil || u.UID != uid {
		return key{}, "user gone"
	}
	if _, err := h.store.GetProject(ctx, name, project); err != nil {
		return key{}, "project gone"
	}
	return key{uid, project}, ""
}

// busyKeys are the projects whose container runs or launches.
func (m *Manager) busyKeys() map[key]bool {
	m.mu.Lock()
	defer m.mu.Unlock()
	busy := make(map[key]bool, len(m.entries))
	for k, e := range m.entries {
		if e.refs > 0 || e.snap.Load() != nil {
			busy[k] = true
		}
	}
	return busy
}
