package session

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"time"

	"github.com/ds01/ds01-gateway/session/runtime"
	"github.com/ds01/ds01-gateway/store"
)

// LabelRole marks containers that are not project containers: "transfer"
// containers run one file-transfer command and are removed with it.
const LabelRole = "ds01.role"

// TransferStats is what a transfer moved: BytesIn into the workspace,
// BytesOut out of it.
type TransferStats struct {
	BytesIn, BytesOut int64
}

// RecordTransfer stores the event of one transfer session.
func (m *Manager) RecordTransfer(ctx context.Context, u store.User, project, protocol string, st TransferStats, d time.Duration) {
	details, _ := json.Marshal(struct {
		Protocol string `json:"protocol"`
		BytesIn  int64  `json:"bytes_in"`
		BytesOut int64  `json:"bytes_out"`
	}{protocol, st.BytesIn, st.BytesOut})
	m.event(ctx, store.Event{Type: "transfer", User: u.Name, Project: project, Duration: d, Details: string(details)})
}

// RunTransfer runs command (rsync's server side) in a short-lived transfer
// container: the base image, the workspace and nothing else mounted, no
// network, no GPU, the user's uid. It neither needs nor starts the project
// container, and a transfer to a new project builds no image. The
// container is removed when the command ends.
func (m *Manager) RunTransfer(ctx context.Context, u store.User, project, command string, stdin io.Reader, stdout, stderr io.Writer) (runtime.ExitStatus, error) {
	ws, err := m.EnsureWorkspace(ctx, u, project)
	if err != nil {
		return runtime.ExitStatus{}, err
	}
	defer ws.Close()
	imageID, err := m.builder.ImageID(ctx, m.cfg.BaseImage)
	if err != nil {
		return runtime.ExitStatus{}, err
	}
	if imageID == "" {
		return runtime.ExitStatus{}, fmt.Errorf("transfer image %s is missing on this host", m.cfg.BaseImage)
	}
	name := containerName(u.Name, project+"-transfer")
	run, err := m.prepareRunDir(ctx, name, u, imageID)
	if err != nil {
		return runtime.ExitStatus{}, err
	}
	defer m.removeRunDir(name)
	staged, unstage, err := m.stageWorkspace(name, ws)
	if err != nil {
		return runtime.ExitStatus{}, err
	}
	defer unstage()
	id, err := m.rt.Launch(ctx, runtime.ContainerSpec{
		Name:     name,
		Image:    imageID,
		Hostname: project,
		Labels:   m.containerLabels(u, project, time.Now(), "transfer"),
		User:     fmt.Sprintf("%d:%d", u.UID, u.GID),
		Env:      []string{"HOME=/workspace", "USER=" + u.Name, "LOGNAME=" + u.Name},
		Workdir:  "/workspace",
		Mounts:   append([]runtime.Mount{{Source: staged, Target: "/workspace"}}, run.mounts...),
		Network:  "none",
		Limits:   m.cfg.Limits,
		IODir:    run.io,
	})
	if err != nil {
		return runtime.ExitStatus{}, fmt.Errorf("transfer container: %w", err)
	}
	defer func() {
		rctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), time.Minute)
		defer cancel()
		if err := m.rt.Retire(rctx, id); err != nil {
			m.log.Error("remove transfer container", "container", short(id), "err", err)
		}
	}()
	// HOME is the workspace, so "~/x" in the command means /workspace/x.
	proc, err := m.rt.Exec(ctx, id, runtime.ExecSpec{
		Cmd: []string{"/bin/sh", "-c", command}, User: fmt.Sprintf("%d:%d", u.UID, u.GID), Dir: "/workspace",
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
		m.log.Debug("transfer stream", "err", err)
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
