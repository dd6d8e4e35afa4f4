package session

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
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
	Created     time.Time
	Retired     time.Time
	RetiredWhy  string
}

// Projects lists the user's projects.
func (m *Manager) Projects(ctx context.Context, u store.User) ([]ProjectInfo, error) {
	ps, err := m.store.ListProjects(ctx, u.Name)
	if err != nil {
		return nil, err
	}
	out := make([]ProjectInfo, 0, len(ps))
	for _, p := range ps {
		info, err := m.projectInfo(ctx, u, p)
		if err != nil {
			return nil, err
		}
		out = append(out, info)
	}
	return out, nil
}

// Project describes one of the user's projects, or returns ErrNoProject.
func (m *Manager) Project(ctx context.Context, u store.User, name string) (ProjectInfo, error) {
	if err := ValidateProject(name, ""); err != nil {
		return ProjectInfo{}, err
	}
	p, err := m.store.GetProject(ctx, u.Name, name)
	if errors.Is(err, store.ErrNotFound) {
		return ProjectInfo{}, fmt.Errorf("%w %q", ErrNoProject, name)
	}
	if err != nil {
		return ProjectInfo{}, err
	}
	return m.projectInfo(ctx, u, p)
}

func (m *Manager) projectInfo(ctx context.Context, u store.User, p store.Project) (ProjectInfo, error) {
	ref := image.Ref(u.UID, p.Name)
	info := ProjectInfo{
		Name: p.Name, Workspace: p.Workspace, Image: strings.TrimSuffix(ref, ":latest"),
		CreatedAt: p.CreatedAt, LastUsed: p.LastUsed, ImageState: ImageNone,
	}
	img, err := m.builder.Image(ctx, ref)
	if err != nil {
		return info, err
	}
	info.ImageID, info.ImageCreated, info.ImageSize = img.ID, img.Created, img.Size
	if img.ID != "" {
		info.ImageState = ImageBuilt
		if df, err := m.readDockerfile(ctx, u, p.Name); err == nil {
			sum := sha256.Sum256(df)
			want := img.Labels[LabelDockerfile]
			info.Stale = want != "" && want != hex.EncodeToString(sum[:])
		}
	}
	if bs, err := m.store.ListBuilds(ctx, u.Name, p.Name, 1); err == nil && len(bs) == 1 {
		b := bs[0]
		b.Dockerfile = ""
		info.LastBuild = &b
		if b.Result == store.BuildFailed {
			info.ImageState = ImageFailed
		}
	}
	if m.Building(u, p.Name) {
		info.ImageState = ImageBuilding
	}
	if c, ok := m.liveContainer(u, p.Name); ok {
		c.Current = c.ImageID == img.ID
		info.Container = c
	}
	return info, nil
}

// liveContainer describes the project's running container, if any. It
// never waits for a launch or build in progress.
func (m *Manager) liveContainer(u store.User, project string) (ContainerInfo, bool) {
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
	return ContainerInfo{
		Project: project, Name: sn.name, ID: sn.id, State: store.StateRunning,
		ImageID: sn.imageID, Connections: refs, Created: sn.launchedAt, GPUs: sn.gpus,
	}, true
}

// Containers lists the user's running containers; all adds retired ones
// from the store's history, newest first.
func (m *Manager) Containers(ctx context.Context, u store.User, all bool) ([]ContainerInfo, error) {
	m.mu.Lock()
	var projects []string
	for k := range m.entries {
		if k.uid == u.UID {
			projects = append(projects, k.project)
		}
	}
	m.mu.Unlock()
	sort.Strings(projects)
	var out []ContainerInfo
	live := map[string]bool{}
	for _, p := range projects {
		c, ok := m.liveContainer(u, p)
		if !ok {
			continue
		}
		if id, err := m.builder.ImageID(ctx, image.Ref(u.UID, p)); err == nil {
			c.Current = c.ImageID == id
		}
		live[c.ID] = true
		out = append(out, c)
	}
	if !all {
		return out, nil
	}
	rows, err := m.store.ListContainers(ctx, false)
	if err != nil {
		return nil, err
	}
	var past []ContainerInfo
	for _, r := range rows {
		if r.User != u.Name || live[r.ID] || r.State != store.StateRetired {
			continue
		}
		past = append(past, ContainerInfo{Project: r.Project, Name: r.Name, ID: r.ID, State: r.State, Created: r.CreatedAt, Retired: r.RetiredAt})
	}
	sort.Slice(past, func(i, j int) bool { return past[i].Retired.After(past[j].Retired) })
	if len(past) > maxHistory {
		past = past[:maxHistory]
	}
	return append(out, past...), nil
}

// maxHistory bounds the retired containers a listing shows.
const maxHistory = 20

// ErrNoContainer is returned when a project has no running container.
var ErrNoContainer = errors.New("no running container")

// RetireContainer retires the project's container now. Sessions on it
// get why as their last notice and end; the workspace stays.
func (m *Manager) RetireContainer(ctx context.Context, u store.User, project, why string) error {
	if err := ValidateProject(project, ""); err != nil {
		return err
	}
	k := key{u.UID, project}
	m.mu.Lock()
	e := m.entries[k]
	m.mu.Unlock()
	if e == nil {
		return fmt.Errorf("%w for %s", ErrNoContainer, project)
	}
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.containerID == "" {
		return fmt.Errorf("%w for %s", ErrNoContainer, project)
	}
	id := e.containerID
	m.retireLocked(ctx, e, why)
	if e.containerID != "" {
		return fmt.Errorf("retire %s: the engine refused; try again", short(id))
	}
	m.mu.Lock()
	if e.timer != nil {
		e.timer.Stop()
		e.timer = nil
	}
	if e.refs == 0 && m.entries[k] == e {
		delete(m.entries, k)
	}
	m.mu.Unlock()
	return nil
}

// RetireImage removes the project's image; the Dockerfile and workspace
// stay, and the next login builds it again.
func (m *Manager) RetireImage(ctx context.Context, u store.User, project string) error {
	if _, err := m.Project(ctx, u, project); err != nil {
		return err
	}
	_, release, _, err := m.acquireBuild(ctx, key{u.UID, project}, project, io.Discard)
	if err != nil {
		return err
	}
	defer release()
	if c, ok := m.liveContainer(u, project); ok {
		return fmt.Errorf("container %s is running: retire it first (container-retire %s)", c.Project, c.Project)
	}
	ref := image.Ref(u.UID, project)
	id, err := m.builder.ImageID(ctx, ref)
	if err != nil {
		return err
	}
	if id == "" {
		return fmt.Errorf("project %s has no image", project)
	}
	if err := m.builder.RemoveImage(ctx, ref); err != nil {
		return err
	}
	m.event(ctx, store.Event{Type: "image.retire", User: u.Name, Project: project, Details: id})
	return nil
}

// Dockerfile returns the project's Dockerfile.
func (m *Manager) Dockerfile(ctx context.Context, u store.User, project string) ([]byte, error) {
	if _, err := m.Project(ctx, u, project); err != nil {
		return nil, err
	}
	return m.readDockerfile(ctx, u, project)
}

// readDockerfile reads the project's Dockerfile as the user.
func (m *Manager) readDockerfile(ctx context.Context, u store.User, project string) ([]byte, error) {
	d, err := m.openWorkspace(ctx, u, project, false)
	if err != nil {
		return nil, err
	}
	defer d.Close()
	return d.ReadFile(image.DockerfileName, maxDockerfile)
}

// Builds returns the project's last builds, newest first.
func (m *Manager) Builds(ctx context.Context, u store.User, project string, limit int) ([]store.Build, error) {
	if _, err := m.Project(ctx, u, project); err != nil {
		return nil, err
	}
	return m.store.ListBuilds(ctx, u.Name, project, limit)
}

// BaseImage is the image new projects start from.
func (m *Manager) BaseImage() string { return m.cfg.BaseImage }

// AllowedBases are the admin's base image patterns; empty allows any.
func (m *Manager) AllowedBases() []string { return m.cfg.AllowedBases }
