package session

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"sort"

	"github.com/ds01/ds01-gateway/session/image"
	"github.com/ds01/ds01-gateway/store"
)

// Admin is what the lab's admins do across users: list everyone's
// containers and accounts, retire anyone's container, announce to every
// session. Who is an admin is the gateway's decision (commands.Env.Admin);
// every action here records an admin.<action> event naming the admin.
type Admin struct {
	*deps
	m *Manager
}

// Admin returns the admin part.
func (m *Manager) Admin() *Admin { return &Admin{deps: m.deps, m: m} }

// ErrNoUser is returned for a user name nobody has.
var ErrNoUser = errors.New("no such user")

// AllContainers lists every user's running containers, by user and then
// project; retired adds the last retired ones of everybody, newest first.
func (a *Admin) AllContainers(ctx context.Context, retired bool) ([]ContainerInfo, error) {
	snaps := a.m.published()
	sort.Slice(snaps, func(i, j int) bool {
		if snaps[i].user.Name != snaps[j].user.Name {
			return snaps[i].user.Name < snaps[j].user.Name
		}
		return snaps[i].project < snaps[j].project
	})
	out := make([]ContainerInfo, 0, len(snaps))
	live := map[string]bool{}
	for _, sn := range snaps {
		ci, ok := a.m.container(sn.user, sn.project)
		if !ok {
			continue
		}
		if id, err := a.builder.ImageID(ctx, image.Ref(sn.user.UID, sn.project)); err == nil {
			ci.Current = ci.ImageID == id
		}
		live[ci.ID] = true
		out = append(out, ci)
	}
	a.withNodes(ctx, out)
	if !retired {
		return out, nil
	}
	past, err := a.m.catalog.retired(ctx, "", live)
	if err != nil {
		return nil, err
	}
	return append(out, past...), nil
}

// RetireUserContainer retires user's container of project for admin: the
// user's sessions end, told that an admin retired it.
func (a *Admin) RetireUserContainer(ctx context.Context, admin store.User, user, project string) error {
	if err := ValidateUser(user); err != nil {
		return err
	}
	if err := ValidateProject(project, ""); err != nil {
		return err
	}
	u, err := a.store.GetUser(ctx, user)
	if errors.Is(err, store.ErrNotFound) {
		return fmt.Errorf("%w %q", ErrNoUser, user)
	}
	if err != nil {
		return err
	}
	id := ""
	if ci, ok := a.m.container(u, project); ok {
		id = ci.ID
	}
	if err := a.m.RetireContainer(ctx, u, project, "retired by admin "+admin.Name); err != nil {
		return err
	}
	a.audit(ctx, admin, "container_retire", store.Event{Project: project, Container: id}, map[string]any{"target_user": user, "project": project})
	a.log.Info("admin retired a container", "admin", admin.Name, "user", user, "project", project, "container", short(id))
	return nil
}

// Announce writes "ds01: announcement from admin NAME: text" to every open
// container session and to the .ds01-alerts file of every project with a
// running container. The caller validates text (one line, printable).
func (a *Admin) Announce(ctx context.Context, admin store.User, text string) Announced {
	line := fmt.Sprintf("ds01: announcement from admin %s: %s", admin.Name, text)
	res := a.m.announce(ctx, line)
	a.audit(ctx, admin, "announce", store.Event{}, map[string]any{"text": text, "sessions": res.Sessions, "files": res.Files, "failed": res.Failed})
	a.log.Info("admin announcement", "admin", admin.Name, "sessions", res.Sessions, "files", res.Files, "failed", res.Failed)
	return res
}

// UserInfo is one account as user list shows it.
type UserInfo struct {
	store.User
	Keys       int
	Projects   []string
	Containers int // running
}

// Users lists every account with its keys, projects and running
// containers.
func (a *Admin) Users(ctx context.Context) ([]UserInfo, error) {
	us, err := a.store.ListUsers(ctx)
	if err != nil {
		return nil, err
	}
	running := map[int]int{}
	for _, sn := range a.m.published() {
		running[sn.user.UID]++
	}
	out := make([]UserInfo, 0, len(us))
	for _, u := range us {
		keys, err := a.store.ListKeys(ctx, u.Name)
		if err != nil {
			return nil, err
		}
		ps, err := a.store.ListProjects(ctx, u.Name)
		if err != nil {
			return nil, err
		}
		names := make([]string, 0, len(ps))
		for _, p := range ps {
			names = append(names, p.Name)
		}
		sort.Strings(names)
		out = append(out, UserInfo{User: u, Keys: len(keys), Projects: names, Containers: running[u.UID]})
	}
	return out, nil
}

// Audit records an admin action that changes nothing but shows other
// users' data (events --all, user list, container-list --all).
func (a *Admin) Audit(ctx context.Context, admin store.User, action string, details map[string]any) {
	a.audit(ctx, admin, action, store.Event{}, details)
}

// audit records ev as admin.<action> by admin, with details as JSON (the
// target, for the events file's details object).
func (a *Admin) audit(ctx context.Context, admin store.User, action string, ev store.Event, details map[string]any) {
	ev.Type, ev.User = "admin."+action, admin.Name
	if len(details) > 0 {
		if b, err := json.Marshal(details); err == nil {
			ev.Details = string(b)
		}
	}
	a.event(ctx, ev)
}
