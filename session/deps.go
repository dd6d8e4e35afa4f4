package session

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"log/slog"
	"strconv"
	"time"

	"github.com/ds01/ds01-gateway/session/runtime"
	"github.com/ds01/ds01-gateway/store"
)

// deps is what every part of the session layer shares: the configuration,
// the engine, the store and the log. The parts hold one pointer to the
// same deps, so each sees the configuration as the others do.
type deps struct {
	cfg     *Config
	rt      runtime.Runtime
	builder runtime.Builder
	store   *store.Store
	log     *slog.Logger
	// live is what a reload changes (reload.go).
	live *reloadable
}

// event records ev; a store that fails is logged, never the caller's
// problem.
func (d *deps) event(ctx context.Context, ev store.Event) {
	if err := d.store.AddEvent(context.WithoutCancel(ctx), ev); err != nil {
		d.log.Error("record event", "type", ev.Type, "err", err)
	}
}

// containerLabels are the labels of a container the gateway creates. The
// engine merges the image's labels under them, and a user's image may
// carry any ds01.* label it likes: so every label the gateway ever reads
// back is set here, empty where it does not apply, and the image's value
// never shows through.
func (d *deps) containerLabels(u store.User, project string, created time.Time, role string) map[string]string {
	return map[string]string{
		LabelUser:       u.Name,
		LabelUID:        strconv.Itoa(u.UID),
		LabelGID:        strconv.Itoa(u.GID),
		LabelProject:    project,
		LabelCreated:    created.UTC().Format(time.RFC3339),
		LabelInstance:   d.cfg.Instance,
		LabelRole:       role,
		LabelGPUUUIDs:   "",
		LabelGPUEq:      "",
		LabelGPUCount:   "0",
		LabelDockerfile: "",
	}
}

// userNetwork is the per-user bridge network: a user's containers can reach
// each other, never another user's.
func userNetwork(u store.User) string { return fmt.Sprintf("ds01-u%d", u.UID) }

// userNetworkLabels are the labels of the user's network: whoever creates
// it (a launch, a build, a holder) sets them, and a removal checks them.
func (d *deps) userNetworkLabels(u store.User) map[string]string {
	return map[string]string{LabelUser: u.Name, LabelUID: strconv.Itoa(u.UID), LabelInstance: d.cfg.Instance}
}

func containerName(user, project string) string {
	var b [3]byte
	rand.Read(b[:])
	return fmt.Sprintf("ds01-%s.%s-%s", user, project, hex.EncodeToString(b[:]))
}

func short(id string) string {
	if len(id) > 12 {
		return id[:12]
	}
	return id
}
