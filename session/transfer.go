package session

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"slices"
	"time"

	"github.com/ds01/ds01-gateway/session/runtime"
	"github.com/ds01/ds01-gateway/store"
)

// LabelRole marks containers that are not project containers: "transfer"
// containers run one file-transfer command and are removed with it.
const LabelRole = "ds01.role"

// Transfers serves file transfers: sftp and scp reach the workspace
// through FileMounts in the gateway's own transfer child; rsync runs in a
// short-lived transfer container (RunTransfer).
type Transfers struct {
	*deps
	limits     userLimits
	containers *Manager // the cap on containers counts transfer containers
	workspaces *Workspaces
	dirs       *dirs
}

// FileMounts opens what a file transfer of the user's may reach, creating
// the project on first use (its workspace and Dockerfile, never its
// image): the workspace at /workspace (the start directory), then the
// persistent part of their home, at the paths the container shows. Close
// each Dir when done.
func (t *Transfers) FileMounts(ctx context.Context, u store.User, project string) ([]FileMount, error) {
	ws, err := t.workspaces.Ensure(ctx, u, project)
	if err != nil {
		return nil, err
	}
	home, err := t.dirs.userDirs(u)
	if err != nil {
		ws.Close()
		return nil, err
	}
	return append([]FileMount{{Path: "/workspace", Dir: ws}}, home...), nil
}

// TransferStats is what a transfer moved: BytesIn into the workspace,
// BytesOut out of it.
type TransferStats struct {
	BytesIn, BytesOut int64
}

// RecordTransfer stores the event of one transfer session.
func (t *Transfers) RecordTransfer(ctx context.Context, u store.User, project, protocol string, st TransferStats, d time.Duration) {
	details, _ := json.Marshal(struct {
		Protocol string `json:"protocol"`
		BytesIn  int64  `json:"bytes_in"`
		BytesOut int64  `json:"bytes_out"`
	}{protocol, st.BytesIn, st.BytesOut})
	t.event(ctx, store.Event{Type: "transfer", User: u.Name, Project: project, Duration: d, Details: string(details)})
}

// TransferHome is where a transfer container mounts the workspace, and
// its HOME: "~/x" in a client's command means TransferHome+"/x".
const TransferHome = "/workspace"

// TransferCommand is a command for a transfer container, as an argv: no
// shell parses it. Glob marks the words the container expands as file
// name patterns, as the remote shell did for rsync's file arguments (the
// client leaves their wildcards to it); the other pattern characters of
// such a word are already bracketed ([*]). Glob may be shorter than Argv.
type TransferCommand struct {
	Argv []string
	Glob []bool
}

// globScript expands the words marked G as file name patterns, and does
// nothing else: they arrive as positional parameters, which the shell
// never parses as code, and with IFS empty no word is split. A pattern
// that matches nothing stays as it is, as in any shell.
const globScript = `IFS=; for a do shift; case $a in G*) set -- "$@" ${a#G};; *) set -- "$@" "${a#?}";; esac; done; exec "$@"`

// execArgv is the argv to exec for c.
func (c TransferCommand) execArgv() []string {
	if !slices.Contains(c.Glob, true) {
		return c.Argv
	}
	out := []string{"/bin/sh", "-c", globScript, "sh"}
	for i, a := range c.Argv {
		if i < len(c.Glob) && c.Glob[i] {
			out = append(out, "G"+a)
		} else {
			out = append(out, "L"+a)
		}
	}
	return out
}

// transferLimits bound a transfer container whatever the user's own
// limits: rsync runs two or three processes, needs a little CPU (more
// with -z) and memory for its file list. The process limit keeps a
// transfer from being a way to run many processes outside the user's
// project containers.
var transferLimits = runtime.Limits{
	Memory:    4 << 30,
	NanoCPUs:  2e9,
	PidsLimit: 64,
	ShmSize:   64 << 20,
}

// reserve counts one more transfer container of u against
// max_containers_per_user, with their project containers, or refuses it.
func (t *Transfers) reserve(u store.User) (release func(), err error) {
	l, _ := t.limits.of(u)
	return t.containers.reserveTransfer(u.UID, l)
}

// RunTransfer runs cmd (rsync's server side) in a short-lived transfer
// container: the base image, the workspace and nothing else mounted, no
// network, no GPU, the user's uid, small fixed limits and at most
// TransferTimeout. It counts against the user's container cap, but
// neither needs nor starts the project container, and a transfer to a new
// project builds no image. The container is removed when the command
// ends.
func (t *Transfers) RunTransfer(ctx context.Context, u store.User, project string, cmd TransferCommand, stdin io.Reader, stdout, stderr io.Writer) (runtime.ExitStatus, error) {
	release, err := t.reserve(u)
	if err != nil {
		return runtime.ExitStatus{}, err
	}
	defer release()
	if d := t.cfg.TransferTimeout; d > 0 {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeoutCause(ctx, d,
			fmt.Errorf("%w: the transfer was stopped after transfer_timeout (%s); rsync again to resume it", ErrLimit, d))
		defer cancel()
	}
	ws, err := t.workspaces.Ensure(ctx, u, project)
	if err != nil {
		return runtime.ExitStatus{}, err
	}
	defer ws.Close()
	imageID, err := t.builder.ImageID(ctx, t.cfg.BaseImage)
	if err != nil {
		return runtime.ExitStatus{}, err
	}
	if imageID == "" {
		return runtime.ExitStatus{}, fmt.Errorf("transfer image %s is missing on this host", t.cfg.BaseImage)
	}
	name := containerName(u.Name, project+"-transfer")
	run, err := t.dirs.prepareRun(ctx, name, u, imageID)
	if err != nil {
		return runtime.ExitStatus{}, err
	}
	defer t.dirs.removeRun(name)
	staged, unstage, err := t.dirs.stageWorkspace(name, ws)
	if err != nil {
		return runtime.ExitStatus{}, err
	}
	defer unstage()
	limits := transferLimits
	if t.cfg.MaxNanoCPUs > 0 && limits.NanoCPUs > t.cfg.MaxNanoCPUs {
		limits.NanoCPUs = t.cfg.MaxNanoCPUs // Docker refuses more than the host has
	}
	id, err := t.rt.Launch(ctx, runtime.ContainerSpec{
		Name:     name,
		Image:    imageID,
		Hostname: project,
		Labels:   t.containerLabels(u, project, time.Now(), "transfer"),
		User:     fmt.Sprintf("%d:%d", u.UID, u.GID),
		Env:      []string{"HOME=" + TransferHome, "USER=" + u.Name, "LOGNAME=" + u.Name},
		Workdir:  TransferHome,
		Mounts:   append([]runtime.Mount{{Source: staged, Target: TransferHome}}, run.mounts...),
		Network:  "none",
		Limits:   limits,
		IODir:    run.io,
	})
	if err != nil {
		return runtime.ExitStatus{}, fmt.Errorf("transfer container: %w", err)
	}
	defer func() {
		rctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), time.Minute)
		defer cancel()
		if err := t.rt.Retire(rctx, id); err != nil {
			t.log.Error("remove transfer container", "container", short(id), "err", err)
		}
	}()
	proc, err := t.rt.Exec(ctx, id, runtime.ExecSpec{
		Cmd: cmd.execArgv(), User: fmt.Sprintf("%d:%d", u.UID, u.GID), Dir: TransferHome,
	})
	if err != nil {
		return runtime.ExitStatus{}, err
	}
	defer proc.Close()
	go func() {
		io.Copy(proc.Stdin(), stdin)
		proc.Stdin().Close()
	}()
	stop := context.AfterFunc(ctx, func() { proc.Close() })
	defer stop()
	if err := proc.Stream(stdout, stderr); err != nil && ctx.Err() == nil {
		t.log.Debug("transfer stream", "err", err)
	}
	if ctx.Err() != nil {
		return runtime.ExitStatus{}, context.Cause(ctx)
	}
	wctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 10*time.Second)
	defer cancel()
	st, err := proc.Wait(wctx)
	if err != nil {
		return runtime.ExitStatus{}, errors.Join(errors.New("lost the transfer's exit status"), err)
	}
	return st, nil
}
