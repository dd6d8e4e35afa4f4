package image

import (
	"archive/tar"
	"bytes"
	"errors"
	"io"
	"os"
	"path/filepath"
	"reflect"
	"sort"
	"strings"
	"syscall"
	"testing"
	"time"
)

func TestSources(t *testing.T) {
	df := `FROM x
# COPY ignored.txt /
COPY requirements.txt /tmp/
COPY --chown=1:1 src/ lib/*.py /app/
ADD ["with space.txt", "/dst/"]
COPY --from=builder /out /out
ADD https://example.com/f /f
COPY ../escape /x
RUN echo COPY not-a-source /
COPY a \
     b /multi/
`
	got := Sources([]byte(df))
	want := []string{"requirements.txt", "src", "lib/*.py", "with space.txt", "a", "b"}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("Sources = %q, want %q", got, want)
	}
}

func TestDefaultDockerfile(t *testing.T) {
	df := string(DefaultDockerfile("ds01-base:bookworm", "alice", "thesis"))
	for _, want := range []string{"FROM ds01-base:bookworm\n", SystemBegin, SystemEnd, PipBegin, PipEnd, "WORKDIR /workspace"} {
		if !strings.Contains(df, want) {
			t.Errorf("default Dockerfile lacks %q:\n%s", want, df)
		}
	}
	if len(Sources([]byte(df))) != 0 {
		t.Error("default Dockerfile must need no build context files")
	}
}

// The context holds the Dockerfile and what it names, never the rest of the
// workspace, and nothing reached through a symlink out of the workspace.
func TestContextOnlyNamedFilesInsideWorkspace(t *testing.T) {
	ws := t.TempDir()
	write := func(name, body string) {
		p := filepath.Join(ws, name)
		os.MkdirAll(filepath.Dir(p), 0o755)
		if err := os.WriteFile(p, []byte(body), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	write("Dockerfile", "FROM x\nCOPY requirements.txt /r\nCOPY conf /conf\nCOPY leak /leak\nCOPY leakdir /ld\n")
	write("requirements.txt", "numpy\n")
	write("conf/a.yaml", "a")
	write("data/huge.bin", "dataset")
	os.Symlink("/etc/passwd", filepath.Join(ws, "leak"))
	os.Symlink("/etc", filepath.Join(ws, "leakdir"))

	var buf bytes.Buffer
	df, _ := os.ReadFile(filepath.Join(ws, "Dockerfile"))
	root, err := os.OpenRoot(ws)
	if err != nil {
		t.Fatal(err)
	}
	defer root.Close()
	if err := ContextFor(root, df, &buf); err != nil {
		t.Fatal(err)
	}
	var names []string
	tr := tar.NewReader(&buf)
	for {
		h, err := tr.Next()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		names = append(names, h.Name)
		body, _ := io.ReadAll(tr)
		if strings.Contains(string(body), "root:") {
			t.Errorf("%s carries a file from outside the workspace", h.Name)
		}
	}
	sort.Strings(names)
	want := []string{"Dockerfile", "conf/a.yaml", "requirements.txt"}
	if !reflect.DeepEqual(names, want) {
		t.Errorf("context = %q, want %q", names, want)
	}
}

// A FIFO (or socket) in the workspace that the Dockerfile names must not
// hold the context writer: nobody will ever write to it.
func TestContextSkipsFIFOs(t *testing.T) {
	ws := t.TempDir()
	if err := syscall.Mkfifo(filepath.Join(ws, "req.fifo"), 0o644); err != nil {
		t.Skip(err)
	}
	os.WriteFile(filepath.Join(ws, "ok.txt"), []byte("ok"), 0o644)
	os.Mkdir(filepath.Join(ws, "dir"), 0o755)
	syscall.Mkfifo(filepath.Join(ws, "dir", "inner.fifo"), 0o644)
	os.Symlink("req.fifo", filepath.Join(ws, "link"))
	root, err := os.OpenRoot(ws)
	if err != nil {
		t.Fatal(err)
	}
	defer root.Close()
	df := []byte("FROM x\nCOPY req.fifo /a\nCOPY dir /d\nCOPY link ok.txt /b/\n")
	done := make(chan error, 1)
	var buf bytes.Buffer
	go func() { done <- ContextFor(root, df, &buf) }()
	select {
	case err := <-done:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("ContextFor blocked on a FIFO")
	}
	var names []string
	tr := tar.NewReader(&buf)
	for h, err := tr.Next(); err == nil; h, err = tr.Next() {
		names = append(names, h.Name)
	}
	if want := []string{"Dockerfile", "ok.txt"}; !reflect.DeepEqual(names, want) {
		t.Errorf("context = %q, want %q", names, want)
	}
}
