package docker

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"regexp"
	"slices"
	"strings"
	"sync"

	"github.com/docker/docker/api/types/image"
	"github.com/docker/docker/api/types/registry"
	"github.com/docker/docker/pkg/jsonmessage"
)

// digestRe is a pushed manifest's digest, as the engine reports it.
var digestRe = regexp.MustCompile(`^sha256:[0-9a-f]{64}$`)

// Push publishes a local image to a registry for the Kubernetes runtime
// (kube.Pusher): it tags image (an ID or reference) as remote
// ("registry/repo:tag"), pushes it, and returns the pushed reference by
// digest ("registry/repo@sha256:..."), which pods pull whatever the tag
// later points to. Any error the registry reports fails the push.
//
// The remote tag is removed again afterwards when the image has another
// tag, so that the gateway's image pruning (which leaves tagged images
// alone) still sees a replaced project image as unused.
//
// A registry on loopback needs no credentials (the engine also talks
// plain HTTP to it); the anonymous auth sent here is where a configured
// one would go.
func (d *Docker) Push(ctx context.Context, img, remote string) (string, error) {
	repo := repoOf(remote)
	if repo == "" || repo == remote || strings.Contains(remote, "@") {
		return "", fmt.Errorf("push %s: want a remote reference registry/repository:tag", remote)
	}
	// One push per remote at a time: a second would race the first's
	// untagging.
	muv, _ := d.pushes.LoadOrStore(remote, &sync.Mutex{})
	mu := muv.(*sync.Mutex)
	mu.Lock()
	defer mu.Unlock()

	info, err := d.cli.ImageInspect(ctx, img)
	if err != nil {
		return "", fmt.Errorf("push %s: inspect %s: %w", remote, img, err)
	}
	if err := d.cli.ImageTag(ctx, info.ID, remote); err != nil {
		return "", fmt.Errorf("push %s: tag: %w", remote, err)
	}
	if slices.ContainsFunc(info.RepoTags, func(t string) bool { return t != remote }) {
		defer func() {
			if _, err := d.cli.ImageRemove(context.WithoutCancel(ctx), remote, image.RemoveOptions{}); err != nil {
				d.log.Warn("push: remove the registry tag", "ref", remote, "err", err)
			}
		}()
	}
	auth, err := registry.EncodeAuthConfig(registry.AuthConfig{})
	if err != nil {
		return "", fmt.Errorf("push %s: %w", remote, err)
	}
	rc, err := d.cli.ImagePush(ctx, remote, image.PushOptions{RegistryAuth: auth})
	if err != nil {
		return "", fmt.Errorf("push %s: %w", remote, err)
	}
	defer rc.Close()
	digest, err := pushDigest(rc)
	if err != nil {
		return "", fmt.Errorf("push %s: %w", remote, err)
	}
	return repo + "@" + digest, nil
}

// pushDigest drains the engine's push stream and returns the manifest
// digest from its aux message; an error message, or a stream that ends
// without a digest, is an error.
func pushDigest(r io.Reader) (string, error) {
	dec := json.NewDecoder(r)
	var digest string
	for {
		var msg jsonmessage.JSONMessage
		if err := dec.Decode(&msg); err != nil {
			if errors.Is(err, io.EOF) {
				break
			}
			return "", fmt.Errorf("read the engine's output: %w", err)
		}
		if msg.Error != nil {
			return "", errors.New(strings.TrimSpace(msg.Error.Message))
		}
		if msg.Aux != nil {
			var aux struct{ Digest string }
			if json.Unmarshal(*msg.Aux, &aux) == nil && digestRe.MatchString(aux.Digest) {
				digest = aux.Digest
			}
		}
	}
	if digest == "" {
		return "", errors.New("the engine reported no digest")
	}
	return digest, nil
}

// repoOf is ref without its tag: "host:5000/a/b:t" is "host:5000/a/b".
// A colon before the last slash is the registry's port, not a tag.
func repoOf(ref string) string {
	i := strings.LastIndexByte(ref, ':')
	if i < 0 || strings.LastIndexByte(ref, '/') > i {
		return ref
	}
	return ref[:i]
}
