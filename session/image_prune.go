package session

import (
	"context"
	"strconv"
	"time"

	"github.com/ds01/ds01-gateway/session/image"
	"github.com/ds01/ds01-gateway/store"
)

// A rebuilt project's previous image goes as soon as no container uses
// it: right after the build that replaced it, or when the last container
// running it is retired (every retire path, the watch's included, goes
// through retireLocked), and at start for what a crash left. Only images
// this gateway built are candidates: its instance label with the user's
// uid and the project (users' Dockerfiles may not set ds01.* labels, and
// the gateway's LABEL line comes last), and no tag. The engine itself
// refuses an image a container of any state uses, or one another image
// builds on, so a check here cannot race a container being created.

// pruneTimeout bounds one project's prune; removing a 20 GB image takes
// seconds.
const pruneTimeout = 2 * time.Minute

// pruneProject removes the project's unused images other than its
// current one; the project's build slot is held (or no build can run).
func (im *Images) pruneProject(ctx context.Context, uid int, userName, project string) {
	current, err := im.builder.ImageID(ctx, image.Ref(uid, project))
	if err != nil {
		im.log.Warn("prune images", "user", userName, "project", project, "err", err)
		return
	}
	imgs, err := im.builder.Images(ctx, map[string]string{
		LabelInstance: im.cfg.Instance, LabelUID: strconv.Itoa(uid), LabelProject: project,
	})
	if err != nil {
		im.log.Warn("prune images", "user", userName, "project", project, "err", err)
		return
	}
	for _, img := range imgs {
		if img.ID == current || len(img.Tags) > 0 {
			continue
		}
		removed, err := im.builder.RemoveUnused(ctx, img.ID)
		if err != nil {
			im.log.Warn("remove previous image", "user", userName, "project", project, "image", short(img.ID), "err", err)
			continue
		}
		if removed {
			im.log.Info("removed previous image", "user", userName, "project", project, "image", short(img.ID), "bytes", img.Size)
			im.event(ctx, store.Event{Type: "image.remove", User: userName, Project: project, Details: "previous image " + img.ID + ", no container uses it"})
		}
	}
}

// pruneIdle prunes the project unless a build of it runs: that build
// prunes when it ends. It holds the project's build slot meanwhile, so
// a build's newly committed image, labelled but not yet tagged, is never
// taken for an old one.
func (im *Images) pruneIdle(uid int, userName, project string) {
	k := key{uid, project}
	im.mu.Lock()
	s := im.builds[k]
	if s != nil {
		im.mu.Unlock()
		return
	}
	s = &buildSlot{pruning: make(chan struct{})}
	im.builds[k] = s
	im.mu.Unlock()
	defer func() {
		im.mu.Lock()
		close(s.pruning)
		if im.builds[k] == s {
			delete(im.builds, k)
		}
		im.mu.Unlock()
	}()
	ctx, cancel := context.WithTimeout(context.Background(), pruneTimeout)
	defer cancel()
	im.pruneProject(ctx, uid, userName, project)
}

// pruneAll prunes every project that has an image no tag names: the
// previous images that a crash or a restart left behind.
func (im *Images) pruneAll(ctx context.Context) {
	imgs, err := im.builder.Images(ctx, map[string]string{LabelInstance: im.cfg.Instance})
	if err != nil {
		im.log.Warn("prune images", "err", err)
		return
	}
	type proj struct {
		uid        int
		user, name string
	}
	seen := map[proj]bool{}
	for _, img := range imgs {
		uid, err := strconv.Atoi(img.Labels[LabelUID])
		p := proj{uid, img.Labels[LabelUser], img.Labels[LabelProject]}
		if len(img.Tags) > 0 || err != nil || uid <= 0 || ValidateProject(p.name, "") != nil || seen[p] {
			continue
		}
		seen[p] = true
		im.pruneIdle(p.uid, p.user, p.name)
	}
}

// retired is told that a container running imageID is gone: if the
// project's image has been rebuilt since, the old one may now be unused.
// It returns at once; the removal runs on its own.
func (im *Images) retired(u store.User, project, imageID string) {
	if imageID == "" {
		return
	}
	go func() {
		ctx, cancel := context.WithTimeout(context.Background(), pruneTimeout)
		defer cancel()
		current, err := im.builder.ImageID(ctx, image.Ref(u.UID, project))
		if err != nil || current == imageID {
			return // still the project's image, or the engine is unwell
		}
		im.pruneIdle(u.UID, u.Name, project)
	}()
}
