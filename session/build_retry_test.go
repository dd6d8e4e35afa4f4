package session

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"strings"
	"testing"

	"github.com/ds01/ds01-gateway/session/runtime"
)

// lostNetworkBuilder fails its first `fails` builds as the engine does when
// it does not find the user's network, then builds.
type lostNetworkBuilder struct {
	*memRuntime
	fails, builds int
}

func (b *lostNetworkBuilder) Build(_ context.Context, spec runtime.BuildSpec, out io.Writer) (string, error) {
	if _, err := dockerfileOf(spec.Context); err != nil {
		return "", err // each attempt must get a whole context
	}
	b.builds++
	if b.builds <= b.fails {
		return "", fmt.Errorf("%w: build %s: network %s not found", runtime.ErrNetworkGone, spec.Ref, spec.Network)
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	b.images[spec.Ref] = runtime.Image{ID: "sha256:built"}
	return "sha256:built", nil
}

// A build the engine fails for want of the user's network, right after it
// was made, is built again once, and the user gets the image.
func TestBuildRetriesOnceWhenTheNetworkIsLost(t *testing.T) {
	m, rt, u := newBuildManager(t)
	b := &lostNetworkBuilder{memRuntime: rt, fails: 1}
	m.builder = b
	if _, err := m.workspaces.Ensure(context.Background(), u, "p"); err != nil {
		t.Fatal(err)
	}
	var out bytes.Buffer
	res, err := m.images.UpdateImage(context.Background(), u, "p", Change{Rebuild: true}, &out)
	if err != nil || res.ImageID != "sha256:built" || b.builds != 2 {
		t.Fatalf("got %+v, %v after %d builds", res, err, b.builds)
	}
	if !strings.Contains(out.String(), "building again") {
		t.Errorf("the user is not told: %q", out.String())
	}
}

// Only once: a network that stays lost fails the build with the reason.
func TestBuildRetriesOnlyOnce(t *testing.T) {
	m, rt, u := newBuildManager(t)
	b := &lostNetworkBuilder{memRuntime: rt, fails: 5}
	m.builder = b
	if _, err := m.workspaces.Ensure(context.Background(), u, "p"); err != nil {
		t.Fatal(err)
	}
	_, err := m.images.UpdateImage(context.Background(), u, "p", Change{Rebuild: true}, io.Discard)
	if err == nil || !strings.Contains(err.Error(), "not found") || b.builds != 2 {
		t.Fatalf("got %v after %d builds", err, b.builds)
	}
}
