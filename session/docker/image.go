package docker

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"regexp"
	"strings"
	"time"

	cerrdefs "github.com/containerd/errdefs"
	"github.com/docker/docker/api/types/build"
	"github.com/docker/docker/api/types/image"
	"github.com/docker/docker/pkg/jsonmessage"

	"github.com/ds01/ds01-gateway/session/runtime"
)

// ImageID returns the image's ID, or "" when it does not exist.
func (d *Docker) ImageID(ctx context.Context, ref string) (string, error) {
	info, err := d.cli.ImageInspect(ctx, ref)
	if cerrdefs.IsNotFound(err) {
		return "", nil
	}
	if err != nil {
		return "", fmt.Errorf("inspect image %s: %w", ref, err)
	}
	return info.ID, nil
}

// Image describes ref; a missing image has an empty ID.
func (d *Docker) Image(ctx context.Context, ref string) (runtime.Image, error) {
	info, err := d.cli.ImageInspect(ctx, ref)
	if cerrdefs.IsNotFound(err) {
		return runtime.Image{}, nil
	}
	if err != nil {
		return runtime.Image{}, fmt.Errorf("inspect image %s: %w", ref, err)
	}
	created, _ := time.Parse(time.RFC3339Nano, info.Created)
	img := runtime.Image{ID: info.ID, Created: created, Size: info.Size}
	if info.Config != nil {
		img.Labels = info.Config.Labels
	}
	return img, nil
}

// RemoveImage untags ref. Without force the engine keeps an image that a
// container still runs, so a running project keeps working.
func (d *Docker) RemoveImage(ctx context.Context, ref string) error {
	_, err := d.cli.ImageRemove(ctx, ref, image.RemoveOptions{PruneChildren: true})
	if err != nil && !cerrdefs.IsNotFound(err) {
		return fmt.Errorf("remove image %s: %w", ref, err)
	}
	return nil
}

// cpuPeriod is the CFS period the build's CPU quota is expressed in.
const cpuPeriod = 100_000

// Build runs a classic (non-BuildKit) build: BuildKit needs a client session
// the Go API does not give us, and the classic builder streams plain text.
// Its RUN steps get the user's memory, CPU and shm limits, run on the
// user's own network (never the default bridge, where users' builds reach
// each other), and under the user's build cgroup, which bounds processes.
// The bases are pulled and vetted before any step runs: a base's ONBUILD
// triggers run as the first steps of this build.
func (d *Docker) Build(ctx context.Context, spec runtime.BuildSpec, out io.Writer) (string, error) {
	ref := spec.Ref
	opts := build.ImageBuildOptions{
		Tags:        []string{ref},
		Remove:      true,
		ForceRemove: true,
		NoCache:     spec.NoCache,
		Labels:      spec.Labels,
		Version:     build.BuilderV1,
		Dockerfile:  "Dockerfile",
		Memory:      spec.Limits.Memory,
		ShmSize:     spec.Limits.ShmSize,
		NetworkMode: spec.Network,
	}
	if spec.Limits.NanoCPUs > 0 {
		opts.CPUPeriod = cpuPeriod
		opts.CPUQuota = cpuQuota(spec.Limits.NanoCPUs)
	}
	// A build looks again rather than trust what it remembers: the
	// network may have gone with its user (user remove --purge). The
	// stream of a build cannot be replayed as a launch can.
	d.networks.Delete(spec.Network)
	if err := d.ensureNetwork(ctx, spec.Network, spec.NetworkLabels); err != nil {
		return "", fmt.Errorf("build %s: %w", ref, err)
	}
	var cg *buildCgroups
	var forks int64
	if spec.Group != "" {
		var err error
		if cg, err = d.cgroups(ctx); err == nil {
			opts.CgroupParent, err = cg.prepare(ctx, spec.Group, spec.Limits)
		}
		if err != nil {
			return "", fmt.Errorf("build %s: %w", ref, err)
		}
		forks = cg.forkFailures(spec.Group)
	}
	if err := d.vetBases(ctx, spec, out); err != nil {
		return "", err // names the base already
	}
	log := &buildLog{out: out}
	id, err := d.runBuild(ctx, spec.Context, opts, log)
	log.Flush()
	d.keepLeftovers(ref, err, log.committed)
	if networkMissing(err, spec.Network) {
		// The context stream cannot be replayed here: the caller builds
		// again, and the next build ensures the network afresh.
		d.networks.Delete(spec.Network)
		err = fmt.Errorf("%w: %w", runtime.ErrNetworkGone, err)
	}
	// cgroup v2 counts the forks the group's limit refused; v1 counts them
	// only in the step's own cgroup, gone by now, so there the step's
	// output has to tell.
	if err != nil && cg != nil && spec.Limits.PidsLimit > 0 && (cg.forkFailures(spec.Group) > forks || !cg.v2 && log.forkFailed) {
		err = fmt.Errorf("%w (a step reached the limit of %d processes for your builds: pids_limit)", err, spec.Limits.PidsLimit)
	}
	return id, err
}

// cgroups learns the engine's cgroup driver and version on first use.
func (d *Docker) cgroups(ctx context.Context) (*buildCgroups, error) {
	d.cgMu.Lock()
	defer d.cgMu.Unlock()
	if d.cg == nil {
		info, err := d.cli.Info(ctx)
		if err != nil {
			return nil, fmt.Errorf("docker info: %w", err)
		}
		d.cg = newBuildCgroups(info.CgroupDriver, info.CgroupVersion)
	}
	return d.cg, nil
}

// vetBases pulls the bases that are missing, then shows each one's labels
// and ONBUILD triggers to spec.CheckBase.
func (d *Docker) vetBases(ctx context.Context, spec runtime.BuildSpec, out io.Writer) error {
	for _, b := range spec.Bases {
		info, err := d.cli.ImageInspect(ctx, b)
		if cerrdefs.IsNotFound(err) {
			if err = d.pull(ctx, b, out); err != nil {
				return err
			}
			info, err = d.cli.ImageInspect(ctx, b)
		}
		if err != nil {
			return fmt.Errorf("inspect %s: %w", b, err)
		}
		if spec.CheckBase == nil {
			continue
		}
		var labels map[string]string
		var triggers []string
		if info.Config != nil {
			labels, triggers = info.Config.Labels, info.Config.OnBuild
		}
		if err := spec.CheckBase(b, labels, triggers); err != nil {
			return err
		}
	}
	return nil
}

// pull fetches ref, telling out that it does: the first pull of a CUDA
// image takes minutes.
func (d *Docker) pull(ctx context.Context, ref string, out io.Writer) error {
	fmt.Fprintf(out, "pulling %s ...\n", ref)
	rc, err := d.cli.ImagePull(ctx, ref, image.PullOptions{})
	if err != nil {
		return fmt.Errorf("pull %s: %w", ref, err)
	}
	defer rc.Close()
	dec := json.NewDecoder(rc)
	for {
		var msg jsonmessage.JSONMessage
		if err := dec.Decode(&msg); err != nil {
			if errors.Is(err, io.EOF) {
				return nil
			}
			return fmt.Errorf("pull %s: %w", ref, err)
		}
		if msg.Error != nil {
			return fmt.Errorf("pull %s: %s", ref, strings.TrimSpace(msg.Error.Message))
		}
		// One line per layer done and the summary, not the progress bars.
		switch {
		case msg.Status == "Pull complete" || msg.Status == "Already exists":
			fmt.Fprintf(out, "%s: %s\n", msg.ID, msg.Status)
		case strings.HasPrefix(msg.Status, "Status:") || strings.HasPrefix(msg.Status, "Digest:"):
			fmt.Fprintln(out, msg.Status)
		}
	}
}

// runBuild sends the context and turns the engine's stream into lines.
func (d *Docker) runBuild(ctx context.Context, tarball io.Reader, opts build.ImageBuildOptions, log *buildLog) (string, error) {
	ref := opts.Tags[0]
	resp, err := d.cli.ImageBuild(ctx, tarball, opts)
	if err != nil {
		return "", fmt.Errorf("build %s: %w", ref, err)
	}
	defer resp.Body.Close()
	dec := json.NewDecoder(resp.Body)
	var id string
	for {
		var msg jsonmessage.JSONMessage
		if err := dec.Decode(&msg); err != nil {
			if errors.Is(err, io.EOF) {
				break
			}
			return "", fmt.Errorf("build %s: read output: %w", ref, err)
		}
		if msg.Error != nil {
			return "", fmt.Errorf("build %s: %s", ref, strings.TrimSpace(msg.Error.Message))
		}
		if msg.Aux != nil {
			var aux struct{ ID string }
			if json.Unmarshal(*msg.Aux, &aux) == nil && aux.ID != "" {
				id = aux.ID
			}
		}
		if msg.Stream != "" {
			_, _ = log.Write([]byte(msg.Stream)) // a buildLog only fails if its reader is gone
		} else if msg.Status != "" {
			fmt.Fprintln(log, msg.Status)
		}
	}
	if id == "" {
		if id, err = d.ImageID(ctx, ref); err != nil {
			return "", err
		}
		if id == "" {
			return "", fmt.Errorf("build %s: no image produced", ref)
		}
	}
	return id, nil
}

// buildLog passes the classic builder's output on, one clean line per write,
// without its bookkeeping lines (layer IDs, intermediate containers), which
// tell a user nothing: what remains is one line per step and the steps' own
// output. The engine splits lines across messages, hence the buffer.
type buildLog struct {
	out io.Writer
	buf []byte
	// forkFailed is set once a line says a process could not be started.
	forkFailed bool
	// committed are the images this build's steps committed, in order
	// (cache hits and bases left out); running is set while a step runs.
	committed []string
	running   bool
}

func (b *buildLog) Write(p []byte) (int, error) {
	b.buf = append(b.buf, p...)
	for {
		i := bytes.IndexByte(b.buf, '\n')
		if i < 0 {
			return len(p), nil
		}
		b.emit(b.buf[:i+1])
		b.buf = b.buf[i+1:]
	}
}

func (b *buildLog) Flush() {
	if len(b.buf) > 0 {
		b.emit(append(b.buf, '\n'))
		b.buf = nil
	}
}

// ansi matches the colour codes the classic builder wraps stderr in.
var ansi = regexp.MustCompile("\x1b\\[[0-9;]*[A-Za-z]")

func (b *buildLog) emit(line []byte) {
	line = ansi.ReplaceAll(bytes.TrimRight(line, "\r\n"), nil)
	// A progress counter redraws its line with \r: keep the last state.
	if i := bytes.LastIndexByte(line, '\r'); i >= 0 {
		line = line[i+1:]
	}
	t := string(bytes.TrimSpace(line))
	b.track(t)
	if t == "" || strings.HasPrefix(t, "---> ") || strings.HasPrefix(t, "Removing intermediate container") || strings.HasPrefix(t, "Successfully built") || strings.HasPrefix(t, "Successfully tagged") {
		return
	}
	if low := strings.ToLower(t); strings.Contains(low, "cannot fork") || strings.Contains(low, "can't fork") ||
		strings.Contains(low, "fork") && strings.Contains(low, "resource temporarily unavailable") {
		b.forkFailed = true
	}
	// The session's progress writer: a reader who left is no build error.
	_, _ = b.out.Write(append(line, '\n'))
}

// stepImage is the classic builder's line naming the image a step ended
// with: " ---> 6a2e104c58fd".
var stepImage = regexp.MustCompile(`^---> ([0-9a-f]{12})$`)

// track notes the images the steps commit: a step that ran in a container
// ("---> Running in ...") ends with the image it committed; a cache hit or
// a FROM names an image some other build made.
func (b *buildLog) track(t string) {
	switch {
	case strings.HasPrefix(t, "Step "):
		b.running = false
	case strings.HasPrefix(t, "---> Running in "):
		b.running = true
	default:
		if m := stepImage.FindStringSubmatch(t); m != nil {
			if b.running {
				b.committed = append(b.committed, m[1])
			}
			b.running = false
		}
	}
}

func containsAny(s string, subs ...string) bool {
	for _, sub := range subs {
		if strings.Contains(s, sub) {
			return true
		}
	}
	return false
}
