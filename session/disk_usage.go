package session

import (
	"context"
	"sort"
	"strconv"
	"time"

	"github.com/ds01/ds01-gateway/store"
)

// DiskReport is what the users' images, the build cache and the users'
// workspaces hold on disk (the admin's disk-usage).
type DiskReport struct {
	Users []UserDisk
	// BuildCache is the engine's build cache in bytes (not per user);
	// BuildCacheErr says why it is unknown.
	BuildCache    int64
	BuildCacheErr string
}

// UserDisk is one user's share.
type UserDisk struct {
	User string
	UID  int
	// Removed is set for images of a user no longer in the store.
	Removed bool
	Images  int
	// ImageBytes adds up each image's size: layers two images share are
	// counted in both.
	ImageBytes     int64
	Workspaces     int
	WorkspaceBytes int64
	// Partial is set when a workspace walk timed out or could not read
	// everything: WorkspaceBytes is then a lower bound.
	Partial bool
}

// diskWalkTimeout bounds the walks of all workspaces of one report.
const diskWalkTimeout = 60 * time.Second

// Disk reports what the users hold on disk.
type Disk struct {
	*deps
	workspaces *Workspaces
}

// Disk reports the disk use per user.
func (m *Manager) Disk() *Disk { return &Disk{deps: m.deps, workspaces: m.workspaces} }

// DiskUsage reports the disk use per user: images (tagged or not) of this
// gateway, and workspaces, walked without following symlinks within
// diskWalkTimeout in all. It can take that long: it is for the admin's
// command, never a login.
func (w *Disk) DiskUsage(ctx context.Context) (DiskReport, error) {
	users, err := w.store.ListUsers(ctx)
	if err != nil {
		return DiskReport{}, err
	}
	byUID := map[int]*UserDisk{}
	rep := DiskReport{Users: make([]UserDisk, 0, len(users))}
	for _, u := range users {
		rep.Users = append(rep.Users, UserDisk{User: u.Name, UID: u.UID})
	}
	imgs, err := w.builder.Images(ctx, map[string]string{LabelInstance: w.cfg.Instance})
	if err != nil {
		return DiskReport{}, err
	}
	var gone []*UserDisk
	for i := range rep.Users {
		byUID[rep.Users[i].UID] = &rep.Users[i]
	}
	for _, img := range imgs {
		uid, err := strconv.Atoi(img.Labels[LabelUID])
		if err != nil {
			continue
		}
		d := byUID[uid]
		if d == nil {
			d = &UserDisk{User: img.Labels[LabelUser], UID: uid, Removed: true}
			gone = append(gone, d)
			byUID[uid] = d
		}
		d.Images++
		d.ImageBytes += img.Size
	}
	if n, err := w.builder.BuildCacheSize(ctx); err != nil {
		rep.BuildCache, rep.BuildCacheErr = -1, err.Error()
	} else {
		rep.BuildCache = n
	}
	wctx, cancel := context.WithTimeout(ctx, diskWalkTimeout)
	defer cancel()
	for i, u := range users {
		w.userWorkspaces(wctx, u, &rep.Users[i])
	}
	for _, d := range gone {
		rep.Users = append(rep.Users, *d)
	}
	sort.Slice(rep.Users, func(i, j int) bool { return rep.Users[i].User < rep.Users[j].User })
	return rep, nil
}

// userWorkspaces adds up the user's projects' workspaces into d.
func (w *Disk) userWorkspaces(ctx context.Context, u store.User, d *UserDisk) {
	ps, err := w.store.ListProjects(ctx, u.Name)
	if err != nil {
		d.Partial = true
		return
	}
	for _, p := range ps {
		if ctx.Err() != nil {
			d.Partial = true
			return
		}
		ws, err := w.workspaces.open(ctx, u, p.Name, false)
		if err != nil {
			continue // never made, or gone: nothing on disk to count
		}
		use := ws.Usage(ctx)
		ws.Close()
		d.Workspaces++
		d.WorkspaceBytes += use.Bytes
		d.Partial = d.Partial || use.Partial
	}
}
