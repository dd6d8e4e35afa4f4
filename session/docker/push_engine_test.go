package docker

import (
	"archive/tar"
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"net/http"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/docker/docker/api/types/image"
)

// testRegistry is the registry make k8s-up starts.
const testRegistry = "127.0.0.1:5000"

// registryUp skips the test unless the test registry answers.
func registryUp(t *testing.T) {
	t.Helper()
	c := http.Client{Timeout: 2 * time.Second}
	resp, err := c.Get("http://" + testRegistry + "/v2/")
	if err != nil {
		t.Skipf("no registry at %s (make k8s-up starts one): %v", testRegistry, err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Skipf("registry at %s answers %s", testRegistry, resp.Status)
	}
}

// tinyImage imports a one-file image and tags it ref.
func tinyImage(t *testing.T, d *Docker, ref string) string {
	t.Helper()
	var b bytes.Buffer
	tw := tar.NewWriter(&b)
	body := []byte(ref + "\n") // unique content, so the push uploads a layer
	tw.WriteHeader(&tar.Header{Name: "hello", Mode: 0o644, Size: int64(len(body))})
	tw.Write(body)
	tw.Close()
	ctx := context.Background()
	rc, err := d.cli.ImageImport(ctx, image.ImportSource{Source: &b, SourceName: "-"}, ref, image.ImportOptions{})
	if err != nil {
		t.Fatal(err)
	}
	rc.Close()
	id, err := d.ImageID(ctx, ref)
	if err != nil || id == "" {
		t.Fatalf("imported image %s: %q %v", ref, id, err)
	}
	t.Cleanup(func() { d.cli.ImageRemove(context.Background(), id, image.RemoveOptions{Force: true}) })
	return id
}

// Push publishes an image by ID, returns the digest reference pods pull,
// and leaves the local image as it was: tagged as before, the registry
// tag gone.
func TestPushToRegistry(t *testing.T) {
	registryUp(t)
	d := engine(t)
	ctx := context.Background()
	var r [4]byte
	rand.Read(r[:])
	local := "ds01-pushtest/k14wire:" + hex.EncodeToString(r[:])
	id := tinyImage(t, d, local)
	remote := testRegistry + "/ds01-pushtest/img:" + strings.TrimPrefix(id, "sha256:")

	start := time.Now()
	ref, err := d.Push(ctx, id, remote)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("push took %s", time.Since(start))
	if !regexp.MustCompile(`^` + regexp.QuoteMeta(testRegistry+"/ds01-pushtest/img") + `@sha256:[0-9a-f]{64}$`).MatchString(ref) {
		t.Fatalf("Push = %q, want %s/ds01-pushtest/img@sha256:<digest>", ref, testRegistry)
	}
	// The registry serves the manifest by that digest.
	digest := ref[strings.IndexByte(ref, '@')+1:]
	req, _ := http.NewRequest(http.MethodHead, "http://"+testRegistry+"/v2/ds01-pushtest/img/manifests/"+digest, nil)
	req.Header.Set("Accept", "application/vnd.docker.distribution.manifest.v2+json, application/vnd.oci.image.manifest.v1+json")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("registry has no manifest %s: %s", digest, resp.Status)
	}
	info, err := d.cli.ImageInspect(ctx, id)
	if err != nil {
		t.Fatal(err)
	}
	if len(info.RepoTags) != 1 || info.RepoTags[0] != local {
		t.Errorf("tags after the push = %v, want only %s (the registry tag removed)", info.RepoTags, local)
	}
	// Again: the same digest, nothing left behind.
	if again, err := d.Push(ctx, id, remote); err != nil || again != ref {
		t.Errorf("second push = %q, %v; want %q", again, err, ref)
	}
}

// A registry that is not there fails the push with the engine's reason.
func TestPushNoRegistry(t *testing.T) {
	registryUp(t)
	d := engine(t)
	var r [4]byte
	rand.Read(r[:])
	id := tinyImage(t, d, "ds01-pushtest/k14wire:"+hex.EncodeToString(r[:]))
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	if ref, err := d.Push(ctx, id, "127.0.0.1:1/ds01-pushtest/img:x"); err == nil {
		t.Fatalf("Push to a closed port = %q, want an error", ref)
	} else {
		t.Logf("error: %v", err)
	}
	if _, err := d.Push(ctx, id, "no-tag-here"); err == nil {
		t.Fatal("a remote without registry and tag must be refused")
	}
}
