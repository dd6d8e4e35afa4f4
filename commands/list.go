package commands

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"slices"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/ds01/ds01-gateway/session"
	"github.com/ds01/ds01-gateway/session/gpu"
	"github.com/ds01/ds01-gateway/store"
)

// The JSON shapes below are a contract with users' scripts: field names
// only ever get added, never renamed or removed.

type buildJSON struct {
	ID         int64     `json:"id"`
	StartedAt  time.Time `json:"started_at"`
	DurationS  float64   `json:"duration_s"`
	Result     string    `json:"result"`
	ImageID    string    `json:"image_id"`
	Reason     string    `json:"reason"`
	FailedStep string    `json:"failed_step,omitempty"`
	Error      string    `json:"error,omitempty"`
}

type containerJSON struct {
	User         string     `json:"user"`
	Project      string     `json:"project"`
	Name         string     `json:"name"`
	ID           string     `json:"id"`
	State        string     `json:"state"`
	ImageID      string     `json:"image_id"`
	ImageCurrent bool       `json:"image_current"`
	Connections  int        `json:"connections"`
	GPUs         []gpuJSON  `json:"gpus"`
	CreatedAt    time.Time  `json:"created_at"`
	RetiredAt    *time.Time `json:"retired_at"`
	// Node is the node it runs on (kubernetes); absent with Docker.
	Node string `json:"node,omitempty"`
	// The lifecycle of a running container: detached (no connection,
	// work still runs), idle since, and its next stop with the reason.
	Detached       bool       `json:"detached"`
	IdleSince      *time.Time `json:"idle_since"`
	Deadline       *time.Time `json:"deadline"`
	DeadlineReason string     `json:"deadline_reason"`
	KeepUntil      *time.Time `json:"keep_until"`
	Exempt         string     `json:"exempt"`
}

type projectJSON struct {
	Name         string         `json:"name"`
	Workspace    string         `json:"workspace"`
	Image        string         `json:"image"`
	ImageID      string         `json:"image_id"`
	ImageState   string         `json:"image_state"`
	ImageStale   bool           `json:"image_stale"`
	ImageCreated *time.Time     `json:"image_created"`
	ImageSize    int64          `json:"image_size"`
	LastBuild    *buildJSON     `json:"last_build"`
	Container    *containerJSON `json:"container"`
	GPUs         []gpuJSON      `json:"gpus"`
	CreatedAt    time.Time      `json:"created_at"`
	LastUsed     time.Time      `json:"last_used"`
}

func toBuildJSON(b store.Build) buildJSON {
	return buildJSON{ID: b.ID, StartedAt: b.StartedAt, DurationS: round1(b.Duration.Seconds()), Result: b.Result,
		ImageID: b.ImageID, Reason: b.Reason, FailedStep: b.FailedStep, Error: b.Error}
}

func toContainerJSON(c session.ContainerInfo) containerJSON {
	j := containerJSON{User: c.User, Project: c.Project, Name: c.Name, ID: c.ID, State: c.State, ImageID: c.ImageID,
		ImageCurrent: c.Current, Connections: c.Connections, GPUs: toGPUsJSON(c.GPUs), CreatedAt: c.Created, Node: c.Node}
	if !c.Retired.IsZero() {
		t := c.Retired
		j.RetiredAt = &t
	}
	l := c.Life
	j.Detached, j.DeadlineReason, j.Exempt = l.Detached, l.DeadlineReason, l.Exempt
	j.IdleSince, j.Deadline, j.KeepUntil = timePtr(l.IdleSince), timePtr(l.Deadline), timePtr(l.KeepUntil)
	return j
}

func timePtr(t time.Time) *time.Time {
	if t.IsZero() {
		return nil
	}
	return &t
}

func toProjectJSON(p session.ProjectInfo) projectJSON {
	j := projectJSON{Name: p.Name, Workspace: p.Workspace, Image: p.Image, ImageID: p.ImageID, ImageState: p.ImageState,
		ImageStale: p.Stale, ImageSize: p.ImageSize, GPUs: []gpuJSON{}, CreatedAt: p.CreatedAt, LastUsed: p.LastUsed}
	if !p.ImageCreated.IsZero() {
		t := p.ImageCreated
		j.ImageCreated = &t
	}
	if p.LastBuild != nil {
		b := toBuildJSON(*p.LastBuild)
		j.LastBuild = &b
	}
	if p.Container.ID != "" {
		c := toContainerJSON(p.Container)
		j.Container = &c
		j.GPUs = c.GPUs
	}
	return j
}

// writeJSONList writes items as a JSON array, never null.
func writeJSONList[T, J any](w io.Writer, items []T, conv func(T) J) error {
	out := make([]J, 0, len(items))
	for _, it := range items {
		out = append(out, conv(it))
	}
	return writeJSON(w, out)
}

func writeJSON(w io.Writer, v any) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(v)
}

func isJSON(p *parsed) bool { return p.value("--format") == "json" }

func table(w io.Writer) *tabwriter.Writer { return tabwriter.NewWriter(w, 0, 0, 2, ' ', 0) }

func projectList() *command {
	return &command{
		name: "project-list", aliases: []string{"projects"}, flags: []flagSpec{formatFlag},
		summary: "List your projects: image, container, GPUs, workspace, last use.",
		run: func(ctx context.Context, env *Env, p *parsed) error {
			ps, err := env.Service.Projects(ctx, env.User)
			if err != nil {
				return err
			}
			if isJSON(p) {
				return writeJSONList(env.Stdout, ps, toProjectJSON)
			}
			if len(ps) == 0 {
				env.notef("no projects yet: ssh PROJECT@%s creates one", env.Host)
				return nil
			}
			tw := table(env.Stdout)
			fmt.Fprintln(tw, "PROJECT\tIMAGE\tCONTAINER\tGPUS\tLAST USED\tWORKSPACE")
			for _, pr := range ps {
				fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\n", pr.Name, imageState(pr), containerState(pr.Container), gpus(pr.Container.GPUs), when(pr.LastUsed), pr.Workspace)
			}
			return tw.Flush()
		},
	}
}

func imageState(p session.ProjectInfo) string {
	s := p.ImageState
	switch {
	case s == session.ImageFailed && p.ImageID != "":
		s += " (previous image in use)"
	case s == session.ImageBuilt && p.Stale:
		s += " (Dockerfile changed: --rebuild)"
	}
	return s
}

func containerState(c session.ContainerInfo) string {
	if c.ID == "" {
		return "-"
	}
	s := fmt.Sprintf("running, %d conn", c.Connections)
	if c.Connections == 0 && c.Life.Detached {
		s = "running, detached"
	}
	if !c.Current {
		s += ", old image"
	}
	return s
}

func gpus(g []gpu.Slot) string {
	if len(g) == 0 {
		return "-"
	}
	idx := make([]string, len(g))
	for i, s := range g {
		idx[i] = s.Index
	}
	return strings.Join(idx, ",")
}

func when(t time.Time) string {
	if t.IsZero() {
		return "-"
	}
	return t.Local().Format("2006-01-02 15:04")
}

func round1(f float64) float64 { return float64(int64(f*10+0.5)) / 10 }

func size(n int64) string {
	switch {
	case n <= 0:
		return "-"
	case n >= 1<<30:
		return fmt.Sprintf("%.1f GB", float64(n)/(1<<30))
	default:
		return fmt.Sprintf("%d MB", n>>20)
	}
}

func imageList() *command {
	return &command{
		name: "image-list", aliases: []string{"images"}, flags: []flagSpec{formatFlag},
		summary: "List your projects' images.",
		run: func(ctx context.Context, env *Env, p *parsed) error {
			ps, err := env.Service.Projects(ctx, env.User)
			if err != nil {
				return err
			}
			if isJSON(p) {
				type imageJSON struct {
					Project string `json:"project"`
					Image   string `json:"image"`
					ImageID string `json:"image_id"`
					State   string `json:"state"`
					Stale   bool   `json:"stale"`
					// Size is kept for scripts written before size_bytes.
					Size      int64      `json:"size"`
					SizeBytes int64      `json:"size_bytes"`
					Created   *time.Time `json:"created"`
					LastBuild *buildJSON `json:"last_build"`
				}
				return writeJSONList(env.Stdout, ps, func(pr session.ProjectInfo) imageJSON {
					j := toProjectJSON(pr)
					return imageJSON{pr.Name, j.Image, j.ImageID, j.ImageState, j.ImageStale, j.ImageSize, j.ImageSize, j.ImageCreated, j.LastBuild}
				})
			}
			tw := table(env.Stdout)
			fmt.Fprintln(tw, "PROJECT\tIMAGE\tSTATE\tID\tSIZE\tBUILT")
			for _, pr := range ps {
				fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\n", pr.Name, pr.Image, imageState(pr), orDash(shortID(pr.ImageID)), size(pr.ImageSize), when(pr.ImageCreated))
			}
			return tw.Flush()
		},
	}
}

func orDash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

// showBuilds is how many builds image-show lists.
const showBuilds = 10

func imageShow() *command {
	return &command{
		name: "image-show", args: "<project>", minArgs: 1, maxArgs: 1, flags: []flagSpec{formatFlag},
		summary: "Show a project's Dockerfile and its last builds.",
		run: func(ctx context.Context, env *Env, p *parsed) error {
			project := p.args[0]
			info, err := env.Service.Project(ctx, env.User, project)
			if err != nil {
				return err
			}
			df, err := env.Service.Dockerfile(ctx, env.User, project)
			if err != nil {
				return err
			}
			builds, err := env.Service.Builds(ctx, env.User, project, showBuilds)
			if err != nil {
				return err
			}
			if isJSON(p) {
				bs := make([]buildJSON, 0, len(builds))
				for _, b := range builds {
					bs = append(bs, toBuildJSON(b))
				}
				return writeJSON(env.Stdout, struct {
					projectJSON
					Dockerfile string      `json:"dockerfile"`
					Builds     []buildJSON `json:"builds"`
				}{toProjectJSON(info), string(df), bs})
			}
			fmt.Fprintf(env.Stdout, "# %s: image %s, %s\n", project, info.Image, imageState(info))
			fmt.Fprintf(env.Stdout, "# /workspace/Dockerfile (%s)\n", info.Workspace+"/Dockerfile")
			if _, err := env.Stdout.Write(df); err != nil {
				return err
			}
			if len(df) > 0 && df[len(df)-1] != '\n' {
				fmt.Fprintln(env.Stdout)
			}
			fmt.Fprintf(env.Stdout, "\n# last builds\n")
			tw := table(env.Stdout)
			fmt.Fprintln(tw, "STARTED\tDURATION\tRESULT\tIMAGE ID\tREASON")
			for _, b := range builds {
				res := b.Result
				if b.FailedStep != "" {
					res += " at " + strings.SplitN(b.FailedStep, " ", 2)[0]
				}
				fmt.Fprintf(tw, "%s\t%.1f s\t%s\t%s\t%s\n", when(b.StartedAt), b.Duration.Seconds(), res, orDash(shortID(b.ImageID)), b.Reason)
			}
			return tw.Flush()
		},
	}
}

func imageRetire() *command {
	return &command{
		name: "image-retire", aliases: []string{"image-delete", "image-rm"}, args: "<project>", minArgs: 1, maxArgs: 1,
		summary: "Remove a project's image. The Dockerfile and workspace stay; the next login builds it again.",
		run: func(ctx context.Context, env *Env, p *parsed) error {
			if err := env.Service.RetireImage(ctx, env.User, p.args[0]); err != nil {
				return err
			}
			env.notef("image of %s removed; /workspace/Dockerfile and the workspace stay", p.args[0])
			return nil
		},
	}
}

func containerList() *command {
	return &command{
		name: "container-list", aliases: []string{"containers"}, flags: []flagSpec{
			{name: "--retired", short: "-r", kind: boolFlag, help: "also the last retired containers"},
			{name: "--all", short: "-a", kind: boolFlag, help: "every user's containers (admins)", admin: true}, formatFlag},
		summary: "List your containers.",
		run: func(ctx context.Context, env *Env, p *parsed) error {
			all, retired := p.bools["--all"], p.bools["--retired"]
			var cs []session.ContainerInfo
			var err error
			if all {
				cs, err = env.Service.AllContainers(ctx, retired)
				env.Service.Audit(ctx, env.User, "container_list", nil)
			} else {
				cs, err = env.Service.Containers(ctx, env.User, retired)
			}
			if err != nil {
				return err
			}
			if isJSON(p) {
				return writeJSONList(env.Stdout, cs, toContainerJSON)
			}
			if len(cs) == 0 {
				env.notef("no running containers (ssh PROJECT@%s starts one)", env.Host)
				return nil
			}
			tw := table(env.Stdout)
			head, row := "PROJECT\tCONTAINER\tSTATE\tGPUS\tSTARTED\tIDLE SINCE\tNEXT STOP\tRETIRED", "%[2]s\t%[3]s\t%[4]s\t%[5]s\t%[6]s\t%[7]s\t%[8]s\t%[9]s\n"
			// A cluster runtime tells where each container runs; one host
			// needs no column for it.
			if slices.ContainsFunc(cs, func(c session.ContainerInfo) bool { return c.Node != "" }) {
				head, row = strings.Replace(head, "\tSTATE", "\tNODE\tSTATE", 1), strings.Replace(row, "\t%[4]s", "\t%[10]s\t%[4]s", 1)
			}
			if all {
				head, row = "USER\t"+head, "%[1]s\t"+row
			}
			fmt.Fprintln(tw, head)
			for _, c := range cs {
				fmt.Fprintf(tw, row, c.User, c.Project, c.Name, runState(c), gpus(c.GPUs), when(c.Created), when(c.Life.IdleSince), nextStop(c.Life), when(c.Retired), orDash(c.Node))
			}
			return tw.Flush()
		},
	}
}

func containerRetire() *command {
	return &command{
		name: "container-retire", aliases: []string{"container-stop"}, args: "<project>", minArgs: 1, maxArgs: 1,
		summary: "Retire a project's container now: its sessions end, its GPUs are freed, the workspace stays.\n" +
			"Admins: container-retire USER/PROJECT retires another user's.",
		run: func(ctx context.Context, env *Env, p *parsed) error {
			project := p.args[0]
			if strings.Contains(project, "/") {
				return retireOther(ctx, env, project)
			}
			if err := env.Service.RetireContainer(ctx, env.User, project, "retired by container-retire"); err != nil {
				return err
			}
			env.notef("container %s retired; the next connection starts a fresh one", project)
			return nil
		},
	}
}

func registry() []*command {
	return registered
}

var registered []*command

func init() {
	registered = []*command{
		projectList(), imageCreate(), imageUpdate(), imageShow(), imageList(), imageRetire(),
		containerList(), containerRetire(), containerKeep(), projectSet(), gpuStatus(), checkLimits(),
		events(), announce(), userList(),
		keyList(), keyAdd(), keyRemove(),
		diskUsage(),
	}
}
