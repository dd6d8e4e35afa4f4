package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"io/fs"
	"net/netip"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/ds01/ds01-gateway/session"
	"github.com/ds01/ds01-gateway/session/docker"
	"github.com/ds01/ds01-gateway/session/image"
	"github.com/ds01/ds01-gateway/session/runtime"
	"github.com/ds01/ds01-gateway/session/workspace"
	"github.com/ds01/ds01-gateway/store"
)

// purgeEngine is what user remove --purge needs of the engine;
// *docker.Docker implements it, and podsAndImages with kubernetes.
type purgeEngine interface {
	List(ctx context.Context, labels map[string]string) ([]runtime.Container, error)
	Retire(ctx context.Context, id string) error
	Images(ctx context.Context, labels map[string]string) ([]runtime.Image, error)
	RemoveImage(ctx context.Context, ref string) error
	RemoveUnused(ctx context.Context, id string) (bool, error)
	ImageID(ctx context.Context, ref string) (string, error)
	RemoveNetwork(ctx context.Context, name string, labels map[string]string) (bool, error)
}

// purge is one user remove --purge. It runs beside a live gateway that
// shares the store: the user goes from the store first, so no login
// starts anything while the rest goes; the gateway's watch notices the
// containers removed here and frees their GPUs.
type purge struct {
	st       *store.Store
	eng      purgeEngine
	instance string
	// userDir is the gateway's <data_dir>/users (session.Config.UserDir).
	userDir string
	out     io.Writer
	// force stops running containers; workspaces removes the user's
	// workspaces and persistent home directory.
	force, workspaces bool
}

// errRunning refuses to purge a user whose containers run.
var errRunning = errors.New("has running containers")

func (p *purge) run(ctx context.Context, name string) error {
	u, err := p.st.GetUser(ctx, name)
	if errors.Is(err, store.ErrNotFound) {
		return fmt.Errorf("no user %s", name)
	}
	if err != nil {
		return err
	}
	ours := map[string]string{session.LabelInstance: p.instance, session.LabelUID: strconv.Itoa(u.UID)}
	cs, err := p.eng.List(ctx, ours)
	if err != nil {
		return err
	}
	// Network holders go last (holders below), after the containers
	// that joined them, and before the network; they run no user work,
	// so they never count as running.
	var running []string
	var projects []runtime.Container
	for _, c := range cs {
		if c.Labels[session.LabelRole] == session.RoleHolder {
			continue
		}
		projects = append(projects, c)
		if c.Running {
			running = append(running, c.Labels[session.LabelProject])
		}
	}
	cs = projects
	if len(running) > 0 && !p.force {
		return fmt.Errorf("user %s %w (%s): add --force to stop them (their sessions end), or wait until they retire", name, errRunning, strings.Join(running, ", "))
	}
	projectRows, err := p.st.ListProjects(ctx, name)
	if err != nil {
		return err
	}
	if err := p.st.RemoveUser(ctx, name); err != nil {
		return err
	}
	p.event(ctx, store.Event{Type: "user.remove", User: name, Details: p.what()})
	for _, c := range cs {
		if err := p.eng.Retire(ctx, c.ID); err != nil {
			return fmt.Errorf("stop %s's container %s: %w", name, c.Name, err)
		}
		if err := p.st.RetireContainer(ctx, c.ID, time.Now()); err != nil && !errors.Is(err, store.ErrNotFound) {
			return err
		}
		p.event(ctx, store.Event{Type: "container.retire", User: name, Project: c.Labels[session.LabelProject], Container: c.ID, Details: "user removed"})
	}
	if len(cs) > 0 {
		fmt.Fprintf(p.out, "stopped and removed %d container(s)\n", len(cs))
	}
	if err := p.holders(ctx, name, ours); err != nil {
		return err
	}
	if err := p.images(ctx, u, ours); err != nil {
		return err
	}
	net := fmt.Sprintf("ds01-u%d", u.UID)
	if ok, err := p.eng.RemoveNetwork(ctx, net, ours); err != nil {
		return err
	} else if ok {
		fmt.Fprintf(p.out, "removed network %s\n", net)
	}
	if !p.workspaces {
		fmt.Fprintf(p.out, "workspaces are kept (--purge-workspaces removes them)\n")
		return nil
	}
	return p.files(ctx, u, projectRows)
}

// holders removes the user's network holders. They are listed now, with
// the user gone from the store, not with the containers above: a live
// gateway may have made one meanwhile (after a build or a launch that
// began before). One it makes after this list, it removes itself, with
// the network, on finding the user gone (session/holders.go).
func (p *purge) holders(ctx context.Context, name string, ours map[string]string) error {
	cs, err := p.eng.List(ctx, ours)
	if err != nil {
		return err
	}
	for _, c := range cs {
		if c.Labels[session.LabelRole] != session.RoleHolder {
			continue
		}
		if err := p.eng.Retire(ctx, c.ID); err != nil {
			return fmt.Errorf("remove %s's network holder %s: %w", name, c.Name, err)
		}
	}
	return nil
}

func (p *purge) what() string {
	if p.workspaces {
		return "purge: containers, images, network, workspaces"
	}
	return "purge: containers, images, network; workspaces kept"
}

// images removes the user's images: each tag of the user's repository
// (ds01-<uid>/...), then the image if nothing uses it any more. Tags of
// other repositories, and images another one builds on, stay.
func (p *purge) images(ctx context.Context, u store.User, ours map[string]string) error {
	imgs, err := p.eng.Images(ctx, ours)
	if err != nil {
		return err
	}
	repo := strings.TrimSuffix(image.Ref(u.UID, "x"), "x:latest")
	removed, kept := 0, 0
	for _, img := range imgs {
		for _, tag := range img.Tags {
			if strings.HasPrefix(tag, repo) {
				if err := p.eng.RemoveImage(ctx, tag); err != nil {
					return err
				}
			}
		}
		if _, err := p.eng.RemoveUnused(ctx, img.ID); err != nil {
			return err
		}
		// Untagging removed it already if nothing else used it.
		if left, err := p.eng.ImageID(ctx, img.ID); err != nil {
			return err
		} else if left != "" {
			kept++
			continue
		}
		removed++
		p.event(ctx, store.Event{Type: "image.remove", User: u.Name, Project: img.Labels[session.LabelProject], Details: img.ID + ": user removed"})
	}
	fmt.Fprintf(p.out, "removed %d image(s)", removed)
	if kept > 0 {
		fmt.Fprintf(p.out, "; %d kept (another tag names it, or another image builds on it)", kept)
	}
	fmt.Fprintln(p.out)
	return nil
}

// files removes the user's workspaces and persistent home directory,
// never following a symlink on the way (workspace.Open) or below.
func (p *purge) files(ctx context.Context, u store.User, projects []store.Project) error {
	owner := workspace.Owner{UID: u.UID, GID: u.GID}
	var errs []error
	for _, pr := range projects {
		if pr.Workspace == "" || pr.WorkspaceAnchor == "" {
			errs = append(errs, fmt.Errorf("project %s: no workspace recorded with its root: remove it by hand", pr.Name))
			continue
		}
		if err := removeBelow(pr.WorkspaceAnchor, pr.Workspace, owner); err != nil {
			errs = append(errs, fmt.Errorf("project %s: %w", pr.Name, err))
			continue
		}
		fmt.Fprintf(p.out, "removed workspace %s\n", pr.Workspace)
		p.event(ctx, store.Event{Type: "workspace.remove", User: u.Name, Project: pr.Name, Details: pr.Workspace + ": user removed"})
	}
	if p.userDir != "" {
		if err := removeBelow(p.userDir, filepath.Join(p.userDir, strconv.Itoa(u.UID)), owner); err != nil {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

// removeBelow removes dir, which lies below anchor; a missing one is
// already gone.
func removeBelow(anchor, dir string, owner workspace.Owner) error {
	parent, err := workspace.Open(anchor, filepath.Dir(dir), owner, false)
	if errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	if err != nil {
		return err
	}
	defer parent.Close()
	return parent.RemoveAll(filepath.Base(dir))
}

func (p *purge) event(ctx context.Context, ev store.Event) {
	if err := p.st.AddEvent(ctx, ev); err != nil {
		fmt.Fprintf(p.out, "record event %s: %v\n", ev.Type, err)
	}
}

// purgeFlags are user remove's flags beyond the name.
type purgeFlags struct{ purge, force, workspaces *bool }

func (f *purgeFlags) register(fs *flag.FlagSet) {
	f.purge = fs.Bool("purge", false, "also remove the user's containers' images and network")
	f.force = fs.Bool("force", false, "with --purge: stop the user's running containers (their sessions end)")
	f.workspaces = fs.Bool("purge-workspaces", false, "with --purge: also delete the user's workspaces and home files (irreversible)")
}

func (f *purgeFlags) wanted() bool { return *f.purge || *f.force || *f.workspaces }

// userPurge is user remove --purge.
func userPurge(c common, f purgeFlags, name string) error {
	if !*f.purge {
		return errors.New("--force and --purge-workspaces go with --purge")
	}
	cfg, err := c.load()
	if err != nil {
		return err
	}
	dataDir, err := cfg.absDataDir()
	if err != nil {
		return err
	}
	ctx := context.Background()
	st, err := store.Open(ctx, filepath.Join(dataDir, "ds01.db"))
	if err != nil {
		return err
	}
	defer st.Close()
	instance, err := st.InstanceID(ctx)
	if err != nil {
		return err
	}
	pool, err := netip.ParsePrefix(cfg.NetworkPool)
	if err != nil {
		return fmt.Errorf("network_pool: %w", err)
	}
	log, _ := newLogger(os.Stderr, cfg.LogLevel, cfg.LogFormat)
	dk, err := docker.New(ctx, log, pool)
	if err != nil {
		return err
	}
	defer dk.Close()
	var eng purgeEngine = dk
	if cfg.kubernetes() {
		rt, _, err := openRuntime(ctx, cfg, dk, log)
		if err != nil {
			return err
		}
		eng = podsAndImages{Docker: dk, pods: rt}
	}
	p := &purge{st: st, eng: eng, instance: instance, userDir: filepath.Join(dataDir, "users"), out: os.Stderr, force: *f.force, workspaces: *f.workspaces}
	if err := p.run(ctx, name); err != nil {
		return err
	}
	fmt.Fprintf(os.Stderr, "removed user %s\n", name)
	return nil
}

// podsAndImages is purge's engine with runtime: kubernetes: the user's
// containers are pods, their images and build networks still Docker's.
type podsAndImages struct {
	*docker.Docker
	pods runtime.Runtime
}

func (e podsAndImages) List(ctx context.Context, labels map[string]string) ([]runtime.Container, error) {
	return e.pods.List(ctx, labels)
}

func (e podsAndImages) Retire(ctx context.Context, id string) error { return e.pods.Retire(ctx, id) }
