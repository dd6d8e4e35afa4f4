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
//   - a launch joins the project's holder when there is one, waiting a
//     little for one being made; when there is none it launches as
//     before, on the network, and a holder is made in the background
//     afterwards, for the next cold start: no launch waits for a holder
//     that is not already under way;
//   - a holder is made ahead of use too: when the project's image is
//     built (a new project's first login builds it, and a build that
//     takes longer than a holder's start leaves it ready), and at start
//     for the projects used within NetworkLinger (a host reboot took
//     their holders), so that their first cold start is no slower than
//     the next;
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

// holderJoinWait bounds how long a launch waits for its project's holder
// being made. The holder has been paying Docker's network setup since it
// began, so waiting costs at most what launching without it would; the
// bound is for an engine that got stuck.
const holderJoinWait = 3 * time.Second

// netHolders is the set of this gateway's network holders.
type netHolders struct {
	*deps
	rt  runtime.NetworkHolders // nil when off
	now func() time.Time

	mu    sync.Mutex
	byKey map[key]*holder
	// starting are the holders being made; each channel closes when its
	// launch ends, either way.
	starting map[key]chan struct{}
	// wg counts the background launches, for tests.
	wg sync.WaitGroup
}

type holder struct {
	id      string
	lastUse time.Time
}

func newNetHolders(d *deps) *netHolders {
	h := &netHolders{deps: d, now: time.Now, byKey: map[key]*holder{}, starting: map[key]chan struct{}{}}
	if nh, ok := d.rt.(runtime.NetworkHolders); ok && d.cfg.NetworkLinger > 0 {
		h.rt = nh
	}
	return h
}

// on reports whether holders are used at all.
func (h *netHolders) on() bool { return h.rt != nil }

// join returns the ID of k's holder for a launch to join, "" for none,
// and counts the launch as a use. A holder being made is waited for, up
// to holderJoinWait.
func (h *netHolders) join(ctx context.Context, k key) string {
	if !h.on() {
		return ""
	}
	h.mu.Lock()
	if made := h.starting[k]; made != nil {
		h.mu.Unlock()
		t := time.NewTimer(holderJoinWait)
		select {
		case <-made:
		case <-t.C:
		case <-ctx.Done():
		}
		t.Stop()
		h.mu.Lock()
	}
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
	if made := h.begin(key{u.UID, project}); made != nil {
		go h.make(u, project, made, time.Time{}, func(ctx context.Context) (string, error) {
			return h.launch(ctx, u, project, busy)
		})
	}
}

// begin marks k's holder as being made and returns the channel to close
// when that ends; nil when holders are off or k has one, made or being
// made.
func (h *netHolders) begin(k key) chan struct{} {
	if !h.on() {
		return nil
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.byKey[k] != nil || h.starting[k] != nil {
		return nil
	}
	made := make(chan struct{})
	h.starting[k] = made
	h.wg.Add(1)
	return made
}

// make runs launch for the holder begin marked, and records it as used
// at lastUse, or now when that is zero.
func (h *netHolders) make(u store.User, project string, made chan struct{}, lastUse time.Time, launch func(context.Context) (string, error)) {
	defer h.wg.Done()
	ctx, cancel := context.WithTimeout(context.Background(), holderTimeout)
	defer cancel()
	id, err := launch(ctx)
	if err == nil && h.userGone(ctx, u) {
		h.dropForGoneUser(ctx, u, id)
		err = errUserGone
	}
	k := key{u.UID, project}
	h.mu.Lock()
	delete(h.starting, k)
	close(made)
	if lastUse.IsZero() {
		lastUse = h.now()
	}
	if err == nil {
		h.byKey[k] = &holder{id: id, lastUse: lastUse}
	}
	h.mu.Unlock()
	if err != nil {
		h.log.Warn("network holder", "user", u.Name, "project", project, "err", err)
	}
}

// errUserGone: the user was removed (user remove --purge) while their
// holder was being made.
var errUserGone = errors.New("the user was removed meanwhile")

// userGone reports whether the store no longer has u; a store that cannot
// say counts as no.
func (h *netHolders) userGone(ctx context.Context, u store.User) bool {
	got, err := h.store.GetUser(ctx, u.Name)
	return errors.Is(err, store.ErrNotFound) || (err == nil && got.UID != u.UID)
}

// dropForGoneUser removes holder id, made for u after u's purge listed
// its holders, and the network its launch may have re-created after the
// purge removed it. A network still in use (the purge is not done with
// u's containers) stays for the purge to remove.
func (h *netHolders) dropForGoneUser(ctx context.Context, u store.User, id string) {
	h.remove(ctx, id, "user removed")
	if _, err := h.rt.RemoveNetwork(ctx, userNetwork(u), h.userNetworkLabels(u)); err != nil {
		h.log.Info("network holder: the removed user's network stays for now", "user", u.Name, "err", err)
	}
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
	return h.start(ctx, u, project)
}

// start launches u's holder for project.
func (h *netHolders) start(ctx context.Context, u store.User, project string) (string, error) {
	var b [3]byte
	rand.Read(b[:])
	id, err := h.rt.LaunchHolder(ctx, runtime.HolderSpec{
		Name:          fmt.Sprintf("ds01-net-%s.%s-%s", u.Name, project, hex.EncodeToString(b[:])),
		Image:         h.cfg.BaseImage,
		Hostname:      project,
		Labels:        h.containerLabels(u, project, h.now(), RoleHolder),
		Network:       userNetwork(u),
		NetworkLabels: h.userNetworkLabels(u),
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

// lastUse is a project's last use as the store has it: the later of its
// newest container's launch and its last retire.
type lastUse struct {
	user store.User
	at   time.Time
}

// lastUses reads the projects' last uses from the store, for adopt and
// warm; nil when holders are off.
func (h *netHolders) lastUses(ctx context.Context) map[key]lastUse {
	if !h.on() {
		return nil
	}
	rows, err := h.store.ListContainers(ctx, false)
	if err != nil {
		h.log.Warn("network holders: read last uses", "err", err)
		return nil
	}
	users := map[string]*store.User{}
	uses := map[key]lastUse{}
	for _, r := range rows {
		u, ok := users[r.User]
		if !ok {
			if got, err := h.store.GetUser(ctx, r.User); err == nil {
				u = &got
			}
			users[r.User] = u
		}
		if u == nil {
			continue // removed since
		}
		k := key{u.UID, r.Project}
		at := r.CreatedAt
		if r.RetiredAt.After(at) {
			at = r.RetiredAt
		}
		if at.After(uses[k].at) {
			uses[k] = lastUse{user: *u, at: at}
		}
	}
	return uses
}

// adopt takes over the holders a previous run left (listed with their
// labels), keeping each one's last use: the later of its creation and its
// project's last use in the store. Holders of users or projects that are
// gone, duplicates, stopped ones, and all of them when holders are off,
// are removed.
func (h *netHolders) adopt(ctx context.Context, live []runtime.Container, adoptedRunning map[key]bool, uses map[key]lastUse) {
	now := h.now()
	for _, c := range live {
		k, why := h.adoptable(ctx, c)
		if why == "" {
			h.mu.Lock()
			if h.byKey[k] == nil {
				created, _ := time.Parse(time.RFC3339, c.Labels[LabelCreated])
				last := created
				if uses[k].at.After(last) {
					last = uses[k].at
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

// warm makes, one at a time, the holders the projects used within
// NetworkLinger lack (a host reboot took them), the most recently used
// first, while the cap has room: it never evicts one. Each keeps its
// project's last use, so it lingers no longer than one left running
// would. Running containers count as used now. It runs once, at start, on
// its own: a login meanwhile makes its own holder or waits for the one
// under way.
func (h *netHolders) warm(ctx context.Context, uses map[key]lastUse, running map[key]bool) {
	if !h.on() {
		return
	}
	now := h.now()
	var recent []key
	for k, u := range uses {
		if running[k] {
			u.at = now
			uses[k] = u
		}
		if now.Sub(u.at) < h.cfg.NetworkLinger {
			recent = append(recent, k)
		}
	}
	slices.SortFunc(recent, func(a, b key) int { return uses[b].at.Compare(uses[a].at) })
	made := 0
	for _, k := range recent {
		if ctx.Err() != nil {
			return
		}
		if _, err := h.store.GetProject(ctx, uses[k].user.Name, k.project); err != nil {
			continue // removed since, or the store cannot say
		}
		h.mu.Lock()
		full := len(h.byKey)+len(h.starting) >= h.cfg.NetworkHoldersMax
		h.mu.Unlock()
		if full {
			break
		}
		ch := h.begin(k)
		if ch == nil {
			continue // adopted, or a login made it meanwhile
		}
		u := uses[k].user
		h.make(u, k.project, ch, uses[k].at, func(ctx context.Context) (string, error) {
			return h.start(ctx, u, k.project)
		})
		made++
	}
	if made > 0 {
		h.log.Info("network holders made ahead of use", "count", made)
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
