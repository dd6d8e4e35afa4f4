package docker

import (
	"archive/tar"
	"bytes"
	"context"
	"fmt"
	"io"
	"os"
	"testing"
	"time"

	"github.com/docker/docker/api/types/container"
	"github.com/docker/docker/api/types/image"

	"github.com/ds01/ds01-gateway/session/runtime"
)

// buildTest builds df as ref on the default bridge, no limits.
func buildTest(t *testing.T, d *Docker, ref, df string) (string, error) {
	t.Helper()
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	tw.WriteHeader(&tar.Header{Name: "Dockerfile", Mode: 0o644, Size: int64(len(df))})
	tw.Write([]byte(df))
	tw.Close()
	return d.Build(context.Background(), runtime.BuildSpec{Ref: ref, Context: &buf, Network: "bridge"}, io.Discard)
}

func needBase(t *testing.T, d *Docker) {
	t.Helper()
	if id, _ := d.ImageID(context.Background(), usageTestImage); id == "" {
		if os.Getenv("CI") == "true" {
			t.Fatalf("%s missing: run make base-image", usageTestImage)
		}
		t.Skipf("%s missing: run make base-image", usageTestImage)
	}
}

func exists(t *testing.T, d *Docker, id string) bool {
	t.Helper()
	_, err := d.cli.ImageInspect(context.Background(), id)
	return err == nil
}

// An old image is removed only once it is untagged and no container, not
// even a stopped one, uses it; Images lists it with its labels.
func TestRemoveUnusedImage(t *testing.T) {
	d := engine(t)
	needBase(t, d)
	ctx := context.Background()
	ref := fmt.Sprintf("ds01-disktest/p%d:latest", time.Now().UnixNano())
	label := fmt.Sprintf("LABEL ds01.disktest=%q\n", ref)
	t.Cleanup(func() {
		d.cli.ImageRemove(context.Background(), ref, image.RemoveOptions{Force: true, PruneChildren: true})
	})
	first, err := buildTest(t, d, ref, "FROM "+usageTestImage+"\nRUN echo one > /v\n"+label)
	if err != nil {
		t.Fatal(err)
	}
	if ok, err := d.RemoveUnused(ctx, first); ok || err != nil {
		t.Fatalf("RemoveUnused of the tagged image = %v, %v; want false", ok, err)
	}
	c, err := d.cli.ContainerCreate(ctx, &container.Config{Image: first, Cmd: []string{"true"}}, nil, nil, nil, "")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { d.cli.ContainerRemove(context.Background(), c.ID, container.RemoveOptions{Force: true}) })
	second, err := buildTest(t, d, ref, "FROM "+usageTestImage+"\nRUN echo two > /v\n"+label)
	if err != nil || second == first {
		t.Fatalf("rebuild = %s, %v", second, err)
	}
	imgs, err := d.Images(ctx, map[string]string{"ds01.disktest": ref})
	if err != nil || len(imgs) != 2 {
		t.Fatalf("Images = %+v, %v; want the old and the new", imgs, err)
	}
	for _, img := range imgs {
		if tagged := len(img.Tags) > 0; tagged != (img.ID == second) || img.Size <= 0 {
			t.Errorf("image %s: tags %v, size %d", img.ID, img.Tags, img.Size)
		}
	}
	if ok, err := d.RemoveUnused(ctx, first); ok || err != nil || !exists(t, d, first) {
		t.Fatalf("RemoveUnused of an image a stopped container uses = %v, %v; want false, kept", ok, err)
	}
	if err := d.cli.ContainerRemove(ctx, c.ID, container.RemoveOptions{}); err != nil {
		t.Fatal(err)
	}
	if ok, err := d.RemoveUnused(ctx, first); !ok || err != nil || exists(t, d, first) {
		t.Fatalf("RemoveUnused of the unused old image = %v, %v; want true, gone", ok, err)
	}
	if ok, err := d.RemoveUnused(ctx, first); ok || err != nil {
		t.Errorf("RemoveUnused of a missing image = %v, %v; want false, nil", ok, err)
	}
}

// A failed build's committed steps stay for the user's next attempt (its
// cache), and go once that attempt has ended if it did not build on them.
func TestFailedBuildLeftovers(t *testing.T) {
	d := engine(t)
	needBase(t, d)
	ref := fmt.Sprintf("ds01-disktest/f%d:latest", time.Now().UnixNano())
	t.Cleanup(func() {
		d.cli.ImageRemove(context.Background(), ref, image.RemoveOptions{Force: true, PruneChildren: true})
	})
	step := fmt.Sprintf("RUN echo %d > /v\n", time.Now().UnixNano())
	if _, err := buildTest(t, d, ref, "FROM "+usageTestImage+"\n"+step+"RUN false\n"); err == nil {
		t.Fatal("the build did not fail")
	}
	v, _ := d.leftovers.Load(ref)
	left, _ := v.([]string)
	if len(left) != 1 || !exists(t, d, left[0]) {
		t.Fatalf("leftovers = %v, want the one committed step, kept", left)
	}
	if _, err := buildTest(t, d, ref, "FROM "+usageTestImage+"\nRUN echo other > /v\n"); err != nil {
		t.Fatal(err)
	}
	if exists(t, d, left[0]) {
		t.Errorf("the failed build's step %s is still there after the next build", left[0])
	}
	// One that the next attempt builds on stays: it is that image's parent.
	if _, err := buildTest(t, d, ref, "FROM "+usageTestImage+"\n"+step+"RUN false\n"); err == nil {
		t.Fatal("the build did not fail")
	}
	v, _ = d.leftovers.Load(ref)
	left, _ = v.([]string)
	id, err := buildTest(t, d, ref, "FROM "+usageTestImage+"\n"+step+"RUN true\n")
	if err != nil {
		t.Fatal(err)
	}
	if len(left) != 1 || !exists(t, d, left[0]) || !exists(t, d, id) {
		t.Errorf("the retry's cached step %v was removed", left)
	}
}

// Docker 20.10 takes keep-storage; the prune and the size answer.
func TestBuildCachePrune(t *testing.T) {
	d := engine(t)
	ctx := context.Background()
	if _, err := d.PruneBuildCache(ctx, 10<<30); err != nil {
		t.Fatal(err)
	}
	if _, err := d.PruneBuildCache(ctx, 0); err == nil {
		t.Error("PruneBuildCache(0) would empty the cache; want an error")
	}
	if n, err := d.BuildCacheSize(ctx); err != nil || n < 0 {
		t.Fatalf("BuildCacheSize = %d, %v", n, err)
	}
}
