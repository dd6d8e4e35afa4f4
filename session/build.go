package session

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"os"
	"regexp"
	"strconv"
	"strings"
	"time"

	"github.com/ds01/ds01-gateway/session/image"
	"github.com/ds01/ds01-gateway/session/runtime"
	"github.com/ds01/ds01-gateway/session/workspace"
	"github.com/ds01/ds01-gateway/store"
)

// Labels on project images: the image carries whose it is and the
// Dockerfile it was built from, so a listing can tell a stale image.
const (
	LabelGID        = "ds01.gid"
	LabelDockerfile = "ds01.dockerfile-sha256"
)

// Errors a caller tells the user about in its own words.
var (
	ErrNoProject   = errors.New("no such project")
	ErrImageExists = errors.New("image already exists")
	ErrNoChange    = errors.New("nothing to change")
	// ErrBaseRefused is a Dockerfile line or an image a build may not use.
	ErrBaseRefused   = image.ErrRefused
	ErrHasDockerfile = errors.New("project already has its own Dockerfile")
)

// Change is one request to (re)build a project's image.
type Change struct {
	// Reason is recorded with the build: the command that asked for it.
	Reason string
	// Edit turns the current Dockerfile into the one to build; nil builds
	// the current one as it is.
	Edit    func(dockerfile []byte) ([]byte, error)
	NoCache bool
	// Rebuild builds even when Edit changes nothing.
	Rebuild bool
	// IfMissing builds only when the project has no image (a first login,
	// or a login racing another one's build).
	IfMissing bool
	// Create refuses a project that already has an image.
	Create bool
}

// BuildResult says what a Change did.
type BuildResult struct {
	ImageID string
	// Built is false when there was nothing to build.
	Built    bool
	Duration time.Duration
	// Changed is true when the Dockerfile was rewritten.
	Changed bool
	// Running is true when the project's container still runs the
	// previous image: it switches when the container is retired.
	Running bool
}

// BuildError is a build that failed. The previous image and Dockerfile stay
// in force.
type BuildError struct {
	Step  string // "3/7 RUN apt-get ..." or "" if it failed before any step
	Saved string // the attempt's file name in the workspace, or ""
	Err   error
}

func (e *BuildError) Error() string {
	msg := e.Err.Error()
	// The classic builder quotes the whole command; the step line already
	// names it, so the exit code is what is left to say.
	if loc := nonZero.FindStringSubmatchIndex(msg); loc != nil {
		msg = "the command returned exit code " + msg[loc[2]:loc[3]] + msg[loc[1]:]
	}
	if e.Step != "" {
		return fmt.Sprintf("build failed at step %s: %s", abbreviate(e.Step, 72), msg)
	}
	return "build failed: " + msg
}

var nonZero = regexp.MustCompile(`returned a non-zero code: (\d+)`)

// abbreviate shortens s to n characters for a one-line message.
func abbreviate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:n-3] + "..."
}

func (e *BuildError) Unwrap() error { return e.Err }

// Files in the workspace next to the Dockerfile.
const (
	backupName    = image.DockerfileName + ".bak"
	failedName    = image.DockerfileName + ".failed"
	maxDockerfile = image.MaxDockerfile
)

// UpdateImage applies c to the project's Dockerfile and builds it, one
// build per project at a time: a second request follows the running
// build's output, then applies its own change on top of the result. The
// new Dockerfile replaces the old one only when the build succeeds (the
// old one is kept as Dockerfile.bak); a failed attempt is saved as
// Dockerfile.failed and the previous image and Dockerfile stay in force.
func (im *Images) UpdateImage(ctx context.Context, u store.User, project string, c Change, out io.Writer) (BuildResult, error) {
	if err := ValidateProject(project, ""); err != nil {
		return BuildResult{}, err
	}
	if err := checkUID(u); err != nil {
		return BuildResult{}, err
	}
	var ws *workspace.Dir
	var err error
	if !c.Create {
		if _, err := im.store.GetProject(ctx, u.Name, project); errors.Is(err, store.ErrNotFound) {
			return BuildResult{}, fmt.Errorf("%w %q", ErrNoProject, project)
		} else if err != nil {
			return BuildResult{}, err
		}
		if ws, err = im.workspaces.open(ctx, u, project, false); err != nil {
			return BuildResult{}, err
		}
	} else if ws, _, err = im.workspaces.ensure(ctx, u, project); err != nil {
		return BuildResult{}, err
	}
	defer ws.Close()
	k := key{u.UID, project}
	// From here on the build's own context: it outlives this caller while
	// others wait for the build (see acquireBuild).
	ctx, release, bc, err := im.acquireBuild(ctx, k, project, out)
	if err != nil {
		return BuildResult{}, err
	}
	built := false
	defer func() {
		release()
		if built {
			// Once the slot is free, on its own: removing a 20 GB image
			// takes seconds the user's command need not wait for. A
			// build that takes the slot first prunes when it ends.
			go im.pruneIdle(u.UID, u.Name, project)
		}
	}()
	out = teeWriter{followers: bc, owner: out}

	ref := image.Ref(u.UID, project)
	img, err := im.builder.Image(ctx, ref)
	if err != nil {
		return BuildResult{}, err
	}
	if c.IfMissing && img.ID != "" {
		return BuildResult{ImageID: img.ID}, nil
	}
	if c.Create && img.ID != "" {
		return BuildResult{}, fmt.Errorf("%w: %s", ErrImageExists, strings.TrimSuffix(ref, ":latest"))
	}
	old, err := ws.ReadFile(image.DockerfileName, maxDockerfile)
	if err != nil {
		return BuildResult{}, fmt.Errorf("read Dockerfile: %w", err)
	}
	df := old
	if c.Edit != nil {
		if df, err = c.Edit(old); err != nil {
			return BuildResult{}, err
		}
	}
	changed := !bytes.Equal(df, old)
	if !changed && !c.Rebuild && !c.IfMissing && img.ID != "" {
		return BuildResult{ImageID: img.ID}, ErrNoChange
	}
	bases, err := im.checkDockerfile(ctx, u, df)
	if err != nil {
		return BuildResult{}, err
	}
	built = true
	// The project's next cold start follows the build, often at once (a
	// login that builds a new project's image): its network holder is
	// made meanwhile, so that start need not set up the network.
	im.containers.holders.ensure(u, project, im.containers.busyKeys)
	res, err := im.buildLocked(ctx, u, project, ws, df, bases, c, out)
	if err != nil {
		var be *BuildError
		if errors.As(err, &be) && changed {
			if werr := ws.WriteFile(failedName, df, 0o644); werr == nil {
				be.Saved = failedName
			} else {
				im.log.Warn("save failed Dockerfile", "project", project, "err", werr)
			}
		}
		return res, err
	}
	if changed {
		if err := ws.WriteFile(backupName, old, 0o644); err != nil {
			return res, fmt.Errorf("keep previous Dockerfile: %w", err)
		}
		if err := ws.WriteFile(image.DockerfileName, df, 0o644); err != nil {
			return res, fmt.Errorf("write Dockerfile: %w", err)
		}
		res.Changed = true
	}
	if err := ws.Remove(failedName); err != nil {
		im.log.Warn("remove failed Dockerfile", "project", project, "err", err)
	}
	res.Running = im.runsOtherImage(u, project, res.ImageID)
	return res, nil
}

// buildLocked builds df for the project; the project's build slot is held.
func (im *Images) buildLocked(ctx context.Context, u store.User, project string, ws *workspace.Dir, df []byte, bases []string, c Change, out io.Writer) (BuildResult, error) {
	if im.cfg.BuildTimeout > 0 {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, im.cfg.BuildTimeout)
		defer cancel()
	}
	start := time.Now()
	ref := image.Ref(u.UID, project)
	reason := c.Reason
	if reason == "" {
		reason = "build"
	}
	buildID, err := im.store.StartBuild(ctx, store.Build{User: u.Name, Project: project, StartedAt: start, Reason: reason, Dockerfile: string(df)})
	if err != nil {
		im.log.Error("record build", "project", project, "err", err)
	}
	sum := sha256.Sum256(df)
	// The labels go in as one LABEL line of the built copy: as build
	// options the classic builder would add a step for each.
	labelled := withLabels(df, [][2]string{
		{LabelUser, u.Name}, {LabelUID, strconv.Itoa(u.UID)}, {LabelGID, strconv.Itoa(u.GID)},
		{LabelProject, project}, {LabelInstance, im.cfg.Instance}, {LabelDockerfile, hex.EncodeToString(sum[:])},
	})
	prog := &progress{w: out, start: start}
	spec := im.buildSpec(ctx, u, ref, bases, c)
	id, err := im.buildOnce(ctx, ws, labelled, spec, prog)
	if errors.Is(err, runtime.ErrNetworkGone) && ctx.Err() == nil {
		// The engine lost the user's network right after it was made
		// (seen once): the next build ensures it again.
		im.log.Warn("build: network not found, building again", "user", u.Name, "project", project, "err", err)
		fmt.Fprintln(out, "ds01: the engine lost your network; building again")
		id, err = im.buildOnce(ctx, ws, labelled, spec, prog)
	}
	d := time.Since(start)
	fctx := context.WithoutCancel(ctx)
	im.pruneBuildCache(fctx)
	if err != nil {
		switch cause := context.Cause(ctx); {
		case errors.Is(ctx.Err(), context.DeadlineExceeded):
			err = fmt.Errorf("took longer than %s (build_timeout)", im.cfg.BuildTimeout)
		case cause != nil:
			err = fmt.Errorf("cancelled: %w", cause)
		}
		be := &BuildError{Step: prog.step, Err: err}
		if buildID != 0 {
			if ferr := im.store.FinishBuild(fctx, buildID, store.BuildFailed, "", prog.step, err.Error(), d); ferr != nil {
				im.log.Error("record build", "project", project, "err", ferr)
			}
		}
		im.event(fctx, store.Event{Type: "image.build", User: u.Name, Project: project, Duration: d, Details: "failed: " + be.Error()})
		return BuildResult{Duration: d}, be
	}
	if buildID != 0 {
		if ferr := im.store.FinishBuild(fctx, buildID, store.BuildOK, id, "", "", d); ferr != nil {
			im.log.Error("record build", "project", project, "err", ferr)
		}
	}
	im.event(fctx, store.Event{Type: "image.build", User: u.Name, Project: project, Duration: d, Details: "ok " + id})
	return BuildResult{ImageID: id, Built: true, Duration: d}, nil
}

// buildSpec is what the engine builds for the project, less its context.
func (im *Images) buildSpec(ctx context.Context, u store.User, ref string, bases []string, c Change) runtime.BuildSpec {
	lim, _ := im.limits.of(u)
	return runtime.BuildSpec{
		Ref:           ref,
		NoCache:       c.NoCache,
		Limits:        im.limits.container(lim),
		Network:       userNetwork(u),
		NetworkLabels: im.userNetworkLabels(u),
		Group:         "u" + strconv.Itoa(u.UID),
		Bases:         bases,
		CheckBase:     im.checkBase(ctx, u),
	}
}

// buildOnce streams the context of the workspace with df (labelled) to
// the engine and builds spec.
func (im *Images) buildOnce(ctx context.Context, ws *workspace.Dir, labelled []byte, spec runtime.BuildSpec, prog *progress) (string, error) {
	pr, pw := io.Pipe()
	// The context is read as the user: a COPY reads only what the user
	// may read.
	ctxErr := make(chan error, 1)
	go func() {
		err := ws.Do(func(root *os.Root) error { return image.ContextFor(root, labelled, pw) })
		pw.CloseWithError(err)
		ctxErr <- err
	}()
	spec.Context = pr
	id, err := im.builder.Build(ctx, spec, prog)
	pr.CloseWithError(err)
	// A context that could not be read is the reason, not the engine's
	// account of the upload breaking off.
	if cerr := <-ctxErr; err != nil && cerr != nil && !errors.Is(cerr, io.ErrClosedPipe) && !errors.Is(cerr, err) {
		err = fmt.Errorf("build context: %w", cerr)
	}
	return id, err
}

// withLabels appends one LABEL instruction to a copy of df. The values are
// validated names and numbers; quoting keeps them one word each anyway.
func withLabels(df []byte, labels [][2]string) []byte {
	var b bytes.Buffer
	b.Write(df)
	if len(df) > 0 && df[len(df)-1] != '\n' {
		b.WriteByte('\n')
	}
	b.WriteString("LABEL")
	for _, kv := range labels {
		fmt.Fprintf(&b, " %s=%q", kv[0], kv[1])
	}
	b.WriteByte('\n')
	return b.Bytes()
}

// runsOtherImage reports whether the project's container runs an image
// other than id.
func (im *Images) runsOtherImage(u store.User, project, id string) bool {
	c, ok := im.containers.container(u, project)
	return ok && c.ImageID != id
}

// progress turns the builder's output (whole lines, see runtime.Builder)
// into notices: a progress line per step with the time so far, the step's
// own output indented below it. It remembers the current step, which is
// the one that failed if the build fails.
type progress struct {
	w     io.Writer
	start time.Time
	step  string
}

func (p *progress) Write(b []byte) (int, error) {
	for _, l := range strings.Split(strings.TrimRight(string(b), "\n"), "\n") {
		p.line(l)
	}
	return len(b), nil
}

func (p *progress) line(l string) {
	if strings.TrimSpace(l) == "" {
		return
	}
	// The classic builder announces steps as "Step 3/7 : RUN ...".
	if rest, ok := strings.CutPrefix(l, "Step "); ok {
		if n, inst, ok := strings.Cut(rest, " : "); ok {
			inst = strings.Join(strings.Fields(inst), " ")
			if ownLabels(inst) {
				// The values (the instance id above all) are the
				// gateway's business.
				inst = "LABEL (the gateway's ds01.* labels)"
			}
			p.step = n + " " + inst
			el := time.Since(p.start)
			fmt.Fprintf(p.w, "ds01: [%s %d:%02d] %s\n", n, int(el.Minutes()), int(el.Seconds())%60, inst)
			return
		}
	}
	fmt.Fprintf(p.w, "ds01:   %s\n", l)
}

// ownLabels reports the LABEL step withLabels adds: users' Dockerfiles
// may not set ds01.* labels (image.Check), so one that does is ours.
func ownLabels(inst string) bool {
	return strings.HasPrefix(inst, "LABEL ") && strings.Contains(inst, " "+LabelUser+"=")
}

// ImageSpec is what image-create writes into a new project's Dockerfile.
type ImageSpec struct {
	Base   string // "" means the configured base image
	Pip    []image.Package
	System []image.Package
	Reason string
}

// CreateImage writes the project's Dockerfile from spec and builds it,
// creating the project if needed. A project that has an image, or a
// Dockerfile of the user's own, is refused: image-update edits those.
func (im *Images) CreateImage(ctx context.Context, u store.User, project string, spec ImageSpec, out io.Writer) (BuildResult, error) {
	base := spec.Base
	if base == "" {
		base = im.cfg.BaseImage
	}
	if err := image.ValidateRef(base); err != nil {
		return BuildResult{}, err
	}
	if err := im.refPolicy(ctx, u).CheckRef(base); err != nil {
		return BuildResult{}, fmt.Errorf("--base: %w", err)
	}
	untouched := image.DefaultDockerfile(im.cfg.BaseImage, u.Name, project)
	edit := func(old []byte) ([]byte, error) {
		if !bytes.Equal(old, untouched) {
			return nil, fmt.Errorf("%w: edit it with image-update %s", ErrHasDockerfile, project)
		}
		df := image.DefaultDockerfile(base, u.Name, project)
		var err error
		if len(spec.System) > 0 {
			if df, err = image.WithPackages(df, image.System, spec.System); err != nil {
				return nil, err
			}
		}
		if len(spec.Pip) > 0 {
			if df, err = image.WithPackages(df, image.Pip, spec.Pip); err != nil {
				return nil, err
			}
		}
		return df, nil
	}
	return im.UpdateImage(ctx, u, project, Change{Reason: spec.Reason, Edit: edit, Create: true, Rebuild: true}, out)
}
