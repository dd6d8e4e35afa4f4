package kube

import (
	"archive/tar"
	"bufio"
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"time"

	"github.com/ds01/ds01-gateway/session/runtime"
)

// HelperBuilder builds the helper image: session/docker's builder is one.
type HelperBuilder interface {
	ImageID(ctx context.Context, ref string) (string, error)
	Build(ctx context.Context, spec runtime.BuildSpec, out io.Writer) (string, error)
}

// helperImageRef is the local tag of the helper image of a binary with
// the given hash; labelHelper marks it (and keeps it out of the project
// image pruner, which goes by ds01.instance).
const (
	helperImageRepo = "ds01-helper"
	labelHelper     = "ds01.helper"
)

// PrepareHelper makes the pod helper's image from exe, the gateway's own
// binary ("/proc/self/exe"), pushes it to the registry, and makes every
// later Launch add the helper sidecar. The image is FROM scratch: the
// binary plus the ELF interpreter and libraries ldd lists (the gateway
// links the C library for os/user). It is tagged by the binary's hash, so
// a restart of the same gateway builds nothing and pushes no new layer.
// It returns the image reference pods use.
func (k *Kube) PrepareHelper(ctx context.Context, b HelperBuilder, exe string) (string, error) {
	// ldd must see the binary's own path: /proc/self/exe would be ldd's.
	if p, err := filepath.EvalSymlinks(exe); err == nil {
		exe = p
	}
	sum, err := fileHash(exe)
	if err != nil {
		return "", fmt.Errorf("pod helper: %w", err)
	}
	tag := sum[:20]
	local := helperImageRepo + ":" + tag
	id, err := b.ImageID(ctx, local)
	if err != nil {
		return "", fmt.Errorf("pod helper: %w", err)
	}
	built := id == ""
	if built {
		tarball, err := helperContext(exe)
		if err != nil {
			return "", fmt.Errorf("pod helper: %w", err)
		}
		var out bytes.Buffer
		_, err = b.Build(ctx, runtime.BuildSpec{
			Ref: local, Context: bytes.NewReader(tarball), Labels: map[string]string{labelHelper: tag},
		}, &out)
		if err != nil {
			return "", fmt.Errorf("pod helper: build: %w: %s", err, lastLine(out.String()))
		}
	}
	ref, err := k.push.Push(ctx, local, k.cfg.Registry+"/ds01/helper:"+tag)
	if err != nil {
		return "", fmt.Errorf("pod helper: push: %w", err)
	}
	k.fwd.image.Store(&ref)
	k.log.Info("pod helper image", "image", ref, "built", built)
	return ref, nil
}

// helperPrep is one preparation of the helper image in the background.
type helperPrep struct {
	b    HelperBuilder
	exe  string
	done chan struct{}
	err  error // set before done closes
}

// StartHelper prepares the helper image in the background. A new gateway
// binary needs a build and a push (up to a minute on a busy host), and the
// gateway serves commands and file transfers meanwhile; the first Launch
// waits for it, since a pod without its helper has no -R, agent socket or
// process count (the lifecycle could not see a detached job).
func (k *Kube) StartHelper(ctx context.Context, b HelperBuilder, exe string) {
	p := &helperPrep{b: b, exe: exe, done: make(chan struct{})}
	k.fwd.prep.Store(p)
	go func() {
		defer close(p.done)
		start := time.Now()
		if _, p.err = k.PrepareHelper(ctx, b, exe); p.err != nil {
			k.log.Error("pod helper image", "err", p.err)
			return
		}
		k.log.Info("pod helper image ready", "took", time.Since(start).Round(time.Millisecond))
	}()
}

// awaitHelper waits for StartHelper's preparation, if one was started. A
// failed one is tried again, so a registry that was briefly down does not
// fail every launch until a restart.
func (k *Kube) awaitHelper(ctx context.Context) error {
	p := k.fwd.prep.Load()
	if p == nil {
		return nil
	}
	select {
	case <-p.done:
	case <-ctx.Done():
		return fmt.Errorf("waiting for the pod helper image: %w", ctx.Err())
	}
	if p.err == nil || k.fwd.helperImage() != "" {
		return nil
	}
	_, err := k.PrepareHelper(ctx, p.b, p.exe)
	return err
}

// helperImage is the image PrepareHelper made; "" before.
func (f *fwdState) helperImage() string {
	if p := f.image.Load(); p != nil {
		return *p
	}
	return ""
}

func fileHash(path string) (string, error) {
	f, err := os.Open(path)
	if err != nil {
		return "", err
	}
	defer f.Close()
	h := sha256.New()
	if _, err := io.Copy(h, f); err != nil {
		return "", err
	}
	return hex.EncodeToString(h.Sum(nil)), nil
}

// helperContext is the build context: a Dockerfile and rootfs/ holding
// the binary at helperBinary and each shared object at the path the
// binary's loader looks for it.
func helperContext(exe string) ([]byte, error) {
	libs, err := sharedObjects(exe)
	if err != nil {
		return nil, err
	}
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	add := func(name string, data []byte, mode int64) error {
		if err := tw.WriteHeader(&tar.Header{Name: name, Mode: mode, Size: int64(len(data)), Typeflag: tar.TypeReg}); err != nil {
			return err
		}
		_, err := tw.Write(data)
		return err
	}
	if err := add("Dockerfile", []byte("FROM scratch\nCOPY rootfs/ /\n"), 0o644); err != nil {
		return nil, err
	}
	files := append([]string{exe}, libs...)
	for i, src := range files {
		data, err := os.ReadFile(src)
		if err != nil {
			return nil, err
		}
		dst := src
		if i == 0 {
			dst = helperBinary
		}
		if err := add(filepath.Join("rootfs", dst), data, 0o755); err != nil {
			return nil, err
		}
	}
	if err := tw.Close(); err != nil {
		return nil, err
	}
	return buf.Bytes(), nil
}

// sharedObjects lists the absolute paths of the libraries and loader ldd
// names for exe; none for a static binary.
func sharedObjects(exe string) ([]string, error) {
	out, err := exec.Command("ldd", exe).CombinedOutput()
	if err != nil {
		if strings.Contains(string(out), "not a dynamic executable") {
			return nil, nil
		}
		return nil, fmt.Errorf("ldd %s: %w: %s", exe, err, lastLine(string(out)))
	}
	return parseLdd(out)
}

// parseLdd reads ldd's lines: "libc.so.6 => /lib/.../libc.so.6 (0x...)",
// "/lib64/ld-linux-x86-64.so.2 (0x...)", and the kernel's vdso, which has
// no file.
func parseLdd(out []byte) ([]string, error) {
	var libs []string
	sc := bufio.NewScanner(bytes.NewReader(out))
	for sc.Scan() {
		line := strings.TrimSpace(sc.Text())
		if line == "" || strings.Contains(line, "statically linked") {
			continue
		}
		if _, after, ok := strings.Cut(line, "=>"); ok {
			line = strings.TrimSpace(after)
		}
		path, _, _ := strings.Cut(line, " ")
		switch {
		case path == "not":
			return nil, fmt.Errorf("ldd: %s", sc.Text())
		case filepath.IsAbs(path):
			libs = append(libs, path)
		}
	}
	if len(libs) == 0 && len(out) > 0 && !bytes.Contains(out, []byte("statically linked")) {
		return nil, errors.New("ldd: no library found")
	}
	return libs, nil
}

func lastLine(s string) string {
	s = strings.TrimSpace(s)
	if i := strings.LastIndexByte(s, '\n'); i >= 0 {
		return s[i+1:]
	}
	return s
}
