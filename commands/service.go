package commands

import (
	"context"
	"io"
	"time"

	"github.com/ds01/ds01-gateway/session"
	"github.com/ds01/ds01-gateway/session/gpu"
	"github.com/ds01/ds01-gateway/store"
)

// Service is what the commands need from the session layer: one small
// interface per part of it. Parts puts the parts together.
type Service interface {
	Catalog
	Images
	Workspaces
	Retirer
	GPUs
	Keeper
	Admin
	EventLog
	Keys
	Disk
}

// Keeper holds a container off its idle stop (container-keep);
// *session.Reaper implements it.
type Keeper interface {
	Keep(ctx context.Context, u store.User, project string, d time.Duration) (time.Time, error)
}

// Catalog lists projects and containers; *session.Catalog implements it.
type Catalog interface {
	Projects(ctx context.Context, u store.User) ([]session.ProjectInfo, error)
	Project(ctx context.Context, u store.User, name string) (session.ProjectInfo, error)
	Containers(ctx context.Context, u store.User, all bool) ([]session.ContainerInfo, error)
}

// Images builds and retires images; *session.Images implements it.
type Images interface {
	Dockerfile(ctx context.Context, u store.User, project string) ([]byte, error)
	Builds(ctx context.Context, u store.User, project string, limit int) ([]store.Build, error)
	CreateImage(ctx context.Context, u store.User, project string, spec session.ImageSpec, out io.Writer) (session.BuildResult, error)
	UpdateImage(ctx context.Context, u store.User, project string, c session.Change, out io.Writer) (session.BuildResult, error)
	RetireImage(ctx context.Context, u store.User, project string) error
}

// Workspaces reads the projects' workspaces; *session.Workspaces
// implements it.
type Workspaces interface {
	// ReadProjectFile reads a small file of the project's workspace as
	// the user.
	ReadProjectFile(ctx context.Context, u store.User, project, name string) ([]byte, error)
}

// Retirer retires a project's container; *session.Manager implements it.
type Retirer interface {
	RetireContainer(ctx context.Context, u store.User, project, why string) error
}

// GPUs reports the GPU queue and the user's limits; *session.GPUs
// implements it.
type GPUs interface {
	SetProjectGPUs(ctx context.Context, u store.User, project string, n int) error
	GPUStatus() ([]gpu.SlotState, []gpu.Waiter)
	GPUUtilization(uuid string) (int, bool)
	UserLimits(ctx context.Context, u store.User) session.Limits
	// Holds are the free slots kept for their last owner after a stop.
	Holds() []gpu.HoldState
}

// Parts is a Service made of the session layer's parts.
type Parts struct {
	Catalog
	Images
	Workspaces
	Retirer
	GPUs
	Keeper
	Admin
	EventLog
	Keys
	Disk
}

var (
	_ Service    = Parts{}
	_ Catalog    = (*session.Catalog)(nil)
	_ Images     = (*session.Images)(nil)
	_ Workspaces = (*session.Workspaces)(nil)
	_ Retirer    = (*session.Manager)(nil)
	_ GPUs       = (*session.GPUs)(nil)
	_ Keeper     = (*session.Reaper)(nil)
	_ Admin      = (*session.Admin)(nil)
	_ EventLog   = (*store.Store)(nil)
	_ Disk       = (*session.Disk)(nil)
)

// Admin is what admins do across users (Env.Admin); *session.Admin
// implements it. Each action records an admin.<action> event.
type Admin interface {
	AllContainers(ctx context.Context, retired bool) ([]session.ContainerInfo, error)
	RetireUserContainer(ctx context.Context, admin store.User, user, project string) error
	Announce(ctx context.Context, admin store.User, text string) session.Announced
	Users(ctx context.Context) ([]session.UserInfo, error)
	// Audit records an admin's look at other users' data.
	Audit(ctx context.Context, admin store.User, action string, details map[string]any)
}

// EventLog reads the recorded events; *store.Store implements it.
type EventLog interface {
	ListEvents(ctx context.Context, f store.EventFilter) ([]store.Event, error)
}
