package session

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"sort"
	"strings"
	"time"

	"github.com/ds01/ds01-gateway/session/gpu"
	"github.com/ds01/ds01-gateway/session/image"
	"github.com/ds01/ds01-gateway/store"
)

// Image states a listing shows.
const (
	ImageBuilt    = "built"
	ImageBuilding = "building"
	ImageFailed   = "failed"
	ImageNone     = "none"
)

// ProjectInfo is one project as its user sees it.
type ProjectInfo struct {
	Name      string
	Workspace string // host path
	Image     string // reference, without ":latest"
	ImageID   string // "" when there is no image
	// ImageState is ImageBuilding while a build runs, ImageFailed when
	// the last build failed (an older image may still be in use),
	// ImageBuilt or ImageNone.
	ImageState   string
	ImageCreated time.Time
	ImageSize    int64
	// Stale is true when the Dockerfile changed since the image was built.
	Stale     bool
	LastBuild *store.Build
	Container ContainerInfo // Name is "" when none runs
	CreatedAt time.Time
	LastUsed  time.Time
}

// ContainerInfo is one container of a user.
type ContainerInfo struct {
	User    string // its user's name
	Project string
	Name    string
	ID      string
	State   string // store.StateRunning or store.StateRetired
	// ImageID is the image it runs; Current is false when the project's
	// image has been rebuilt since it started.
	ImageID     string
	Current     bool
	Connections int
	GPUs        []gpu.Slot
	// Node is the node it runs on, when the runtime has several
	// (kubernetes); "" with Docker and for retired containers.
	Node       string
	Created    time.Time
	Retired    time.Time
	RetiredWhy string
	// Life is where a running container stands in its lifecycle.
	Life Life
}

// Life is a running container's lifecycle as listings show it.
type Life struct {
	// Detached is set when no connection is open and work the user
	// started still runs.
	Detached bool
	// IdleSince is when it was last active; zero while it is busy.
	IdleSince time.Time
	// Deadline is its next stop and DeadlineReason why ("idle", "max
	// runtime"); zero when nothing will stop it.
	Deadline       time.Time
	DeadlineReason string
	// KeepUntil is the end of a container-keep lease or of a fresh
	// .keep-alive; zero when none holds.
	KeepUntil time.Time
	// Exempt says which exemption applies, "" for none.
	Exempt string
}

// Catalog lists the users' projects and containers as the built-in
// commands show them. It never waits for a launch or a build.
type Catalog struct {
	*deps
	containers *Manager
	workspaces *Workspaces
	images     *Images
}

// Projects lists the user's projects.
func (c *Catalog) Projects(ctx context.Context, u store.User) ([]ProjectInfo, error) {
	ps, err := c.store.ListProjects(ctx, u.Name)
	if err != nil {
		return nil, err
	}
	out := make([]ProjectInfo, 0, len(ps))
	for _, p := range ps {
		info, err := c.projectInfo(ctx, u, p)
		if err != nil {
			return nil, err
		}
		out = append(out, info)
	}
	return out, nil
}

// Project describes one of the user's projects, or returns ErrNoProject.
func (c *Catalog) Project(ctx context.Context, u store.User, name string) (ProjectInfo, error) {
	if err := ValidateProject(name, ""); err != nil {
		return ProjectInfo{}, err
	}
	p, err := c.store.GetProject(ctx, u.Name, name)
	if errors.Is(err, store.ErrNotFound) {
		return ProjectInfo{}, fmt.Errorf("%w %q", ErrNoProject, name)
	}
	if err != nil {
		return ProjectInfo{}, err
	}
	return c.projectInfo(ctx, u, p)
}

func (c *Catalog) projectInfo(ctx context.Context, u store.User, p store.Project) (ProjectInfo, error) {
	ref := image.Ref(u.UID, p.Name)
	info := ProjectInfo{
		Name: p.Name, Workspace: p.Workspace, Image: strings.TrimSuffix(ref, ":latest"),
		CreatedAt: p.CreatedAt, LastUsed: p.LastUsed, ImageState: ImageNone,
	}
	img, err := c.builder.Image(ctx, ref)
	if err != nil {
		return info, err
	}
	info.ImageID, info.ImageCreated, info.ImageSize = img.ID, img.Created, img.Size
	if img.ID != "" {
		info.ImageState = ImageBuilt
		if df, err := c.workspaces.readDockerfile(ctx, u, p.Name); err == nil {
			sum := sha256.Sum256(df)
			want := img.Labels[LabelDockerfile]
			info.Stale = want != "" && want != hex.EncodeToString(sum[:])
		}
	}
	if bs, err := c.store.ListBuilds(ctx, u.Name, p.Name, 1); err == nil && len(bs) == 1 {
		b := bs[0]
		b.Dockerfile = ""
		info.LastBuild = &b
		if b.Result == store.BuildFailed {
			info.ImageState = ImageFailed
		}
	}
	if c.images.Building(u, p.Name) {
		info.ImageState = ImageBuilding
	}
	if ci, ok := c.containers.container(u, p.Name); ok {
		ci.Current = ci.ImageID == img.ID
		info.Container = ci
	}
	return info, nil
}

// Containers lists the user's running containers; all adds retired ones
// from the store's history, newest first.
func (c *Catalog) Containers(ctx context.Context, u store.User, all bool) ([]ContainerInfo, error) {
	projects := c.containers.projectsOf(u.UID)
	sort.Strings(projects)
	var out []ContainerInfo
	live := map[string]bool{}
	for _, p := range projects {
		ci, ok := c.containers.container(u, p)
		if !ok {
			continue
		}
		if id, err := c.builder.ImageID(ctx, image.Ref(u.UID, p)); err == nil {
			ci.Current = ci.ImageID == id
		}
		live[ci.ID] = true
		out = append(out, ci)
	}
	c.withNodes(ctx, out)
	if !all {
		return out, nil
	}
	past, err := c.retired(ctx, u.Name, live)
	if err != nil {
		return nil, err
	}
	return append(out, past...), nil
}

// retired lists the last retired containers of user ("" for everybody's)
// from the store's history, newest first, leaving out the live ones.
func (c *Catalog) retired(ctx context.Context, user string, live map[string]bool) ([]ContainerInfo, error) {
	rows, err := c.store.ListContainers(ctx, false)
	if err != nil {
		return nil, err
	}
	var past []ContainerInfo
	for _, r := range rows {
		if (user != "" && r.User != user) || live[r.ID] || r.State != store.StateRetired {
			continue
		}
		past = append(past, ContainerInfo{User: r.User, Project: r.Project, Name: r.Name, ID: r.ID, State: r.State, Created: r.CreatedAt, Retired: r.RetiredAt})
	}
	sort.Slice(past, func(i, j int) bool { return past[i].Retired.After(past[j].Retired) })
	if len(past) > maxHistory {
		past = past[:maxHistory]
	}
	return past, nil
}

// maxHistory bounds the retired containers a listing shows.
const maxHistory = 20
