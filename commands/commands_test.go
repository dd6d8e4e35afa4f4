package commands

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"io"
	"io/fs"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/ds01/ds01-gateway/session"
	"github.com/ds01/ds01-gateway/session/gpu"
	"github.com/ds01/ds01-gateway/session/image"
	"github.com/ds01/ds01-gateway/store"
)

// fakeService records what the commands asked for; the real one is
// exercised end to end in e2e.
type fakeService struct {
	Keys    // key commands' fake (keys_test.go); nil elsewhere
	df      []byte
	changes []session.Change
	updErr  error
	slots   []gpu.SlotState
	holds   []gpu.HoldState
	fakeAdmin
}

func (f *fakeService) Projects(context.Context, store.User) ([]session.ProjectInfo, error) {
	return []session.ProjectInfo{{Name: "thesis", ImageState: session.ImageBuilt}}, nil
}
func (f *fakeService) Project(_ context.Context, _ store.User, name string) (session.ProjectInfo, error) {
	return session.ProjectInfo{Name: name}, nil
}
func (f *fakeService) Dockerfile(context.Context, store.User, string) ([]byte, error) {
	return f.df, nil
}
func (f *fakeService) ReadProjectFile(context.Context, store.User, string, string) ([]byte, error) {
	return nil, fs.ErrNotExist
}
func (f *fakeService) Builds(context.Context, store.User, string, int) ([]store.Build, error) {
	return nil, nil
}
func (f *fakeService) CreateImage(context.Context, store.User, string, session.ImageSpec, io.Writer) (session.BuildResult, error) {
	return session.BuildResult{Built: true}, nil
}
func (f *fakeService) UpdateImage(_ context.Context, _ store.User, _ string, c session.Change, _ io.Writer) (session.BuildResult, error) {
	f.changes = append(f.changes, c)
	if c.Edit != nil {
		df, err := c.Edit(f.df)
		if err != nil {
			return session.BuildResult{}, err
		}
		f.df = df
	}
	return session.BuildResult{Built: true, Changed: true}, f.updErr
}
func (f *fakeService) RetireImage(context.Context, store.User, string) error { return nil }
func (f *fakeService) Containers(_ context.Context, _ store.User, retired bool) ([]session.ContainerInfo, error) {
	f.ownRetired = retired
	return f.own, nil
}
func (f *fakeService) RetireContainer(context.Context, store.User, string, string) error {
	return nil
}

func (f *fakeService) Keep(_ context.Context, _ store.User, project string, d time.Duration) (time.Time, error) {
	if project == "gone" {
		return time.Time{}, errors.New("gone has no running container: connect first, then keep it")
	}
	return time.Now().Add(d), nil
}

func (f *fakeService) Holds() []gpu.HoldState { return f.holds }

func (f *fakeService) SetProjectGPUs(context.Context, store.User, string, int) error { return nil }
func (f *fakeService) GPUStatus() ([]gpu.SlotState, []gpu.Waiter)                    { return f.slots, f.queue }
func (f *fakeService) GPUUtilization(string) (int, bool)                             { return 0, false }
func (f *fakeService) UserLimits(context.Context, store.User) session.Limits {
	return session.Limits{}
}

func run(t *testing.T, f *fakeService, stdin string, line string) (code int, stdout, stderr string) {
	t.Helper()
	var out, errb bytes.Buffer
	env := &Env{Service: f, User: store.User{Name: "ann"}, Login: "ds01", Host: "gw", Stdout: &out, Stderr: &errb}
	if stdin != "" {
		env.Stdin = strings.NewReader(stdin)
	}
	code = RunLine(context.Background(), env, line)
	return code, out.String(), errb.String()
}

// runAdmin is run by an admin.
func runAdmin(t *testing.T, f *fakeService, line string) (code int, stdout, stderr string) {
	t.Helper()
	var out, errb bytes.Buffer
	env := &Env{Service: f, User: store.User{Name: "boss", Group: "admin"}, Login: "ds01", Host: "gw", Stdout: &out, Stderr: &errb, Admin: true}
	code = RunLine(context.Background(), env, line)
	return code, out.String(), errb.String()
}

func TestExitCodesAndValidation(t *testing.T) {
	for _, tc := range []struct {
		line string
		code int
	}{
		{"help", 0},
		{"image-update --help", 0},
		{"image update thesis --add numpy", 0},
		{"image-update thesis --add numpy pandas --add-system jq", 0},
		{"image-update thesis", 2},                            // nothing to do, no terminal
		{"image-update", 2},                                   // no project
		{"image-update thesis extra --rebuild", 2},            // two projects
		{"image-update thesis --add 'x; rm -rf /'", 2},        // metacharacters
		{"image-update thesis --add x; rm -rf /", 2},          // the same, unquoted
		{"image-update thesis --add --index-url=http://e", 2}, // an option as a package
		{"image-update thesis --add-system 'jq curl|sh'", 2},
		{"image-update Thesis --rebuild", 2}, // not a project name
		{"image-update ds01 --rebuild", 2},   // the command login
		{"image-update thesis --dockerfile - --add x", 2},
		{"image-update thesis -r ../../etc/passwd", 2}, // outside the workspace
		{"image-update thesis -r /etc/passwd", 1},      // read as the workspace's etc/passwd: absent
		{"container-list --format yaml", 2},
		{"frobnicate", 2},
		{"container-list --format json", 0},
		{"container-keep thesis", 0},
		{"container-keep thesis --for 90m", 0},
		{"container-keep thesis --for soon", 2},
		{"container-keep thesis --for -1h", 2},
		{"container-keep", 2},
		{"container-keep gone", 1},
	} {
		f := &fakeService{df: image.DefaultDockerfile("base", "ann", "thesis")}
		code, _, stderr := run(t, f, "", tc.line)
		if code != tc.code {
			t.Errorf("%q: exit %d, want %d (%s)", tc.line, code, tc.code, stderr)
		}
		if code == 2 && len(f.changes) != 0 {
			t.Errorf("%q: a usage error reached the service", tc.line)
		}
	}
}

func TestControlCharactersRefused(t *testing.T) {
	for _, s := range []string{"image-update p --add 'x\nRUN id'", "image-update p --add x\rRUN", "image-list\x00"} {
		if _, err := SplitCommand(s); err == nil {
			t.Errorf("SplitCommand(%q) accepted a control character", s)
		}
	}
	w, err := SplitCommand(`image-update p --add "numpy pandas" --add-system jq`)
	if err != nil || !reflect.DeepEqual(w, []string{"image-update", "p", "--add", "numpy pandas", "--add-system", "jq"}) {
		t.Errorf("SplitCommand = %q, %v", w, err)
	}
}

// ssh drops the user's quotes: --add "a b" arrives as --add a b, and both
// packages must be taken.
func TestListFlagTakesFollowingWords(t *testing.T) {
	f := &fakeService{df: image.DefaultDockerfile("base", "ann", "thesis")}
	if code, _, stderr := run(t, f, "", "image-update thesis --add numpy pandas>=2 --add-system jq"); code != 0 {
		t.Fatalf("exit %d: %s", code, stderr)
	}
	pip, _, _ := image.Packages(f.df, image.Pip)
	sys, _, _ := image.Packages(f.df, image.System)
	if len(pip) != 2 || pip[1].Spec != "pandas>=2" || len(sys) != 1 || sys[0].Spec != "jq" {
		t.Errorf("pip %v, apt %v", pip, sys)
	}
	if got := f.changes[0].Reason; got != "image-update thesis --add numpy pandas>=2 --add-system jq" {
		t.Errorf("reason %q", got)
	}
	// Remove by name, from either block; an unknown name fails, changing nothing.
	if code, _, _ := run(t, f, "", "image-update thesis --remove NumPy jq"); code != 0 {
		t.Fatal("remove failed")
	}
	pip, _, _ = image.Packages(f.df, image.Pip)
	sys, _, _ = image.Packages(f.df, image.System)
	if len(pip) != 1 || len(sys) != 0 {
		t.Errorf("after remove: pip %v, apt %v", pip, sys)
	}
	if code, _, stderr := run(t, f, "", "image-update thesis --remove scipy"); code != 1 || !strings.Contains(stderr, "not among") {
		t.Errorf("remove of a missing package: %d %s", code, stderr)
	}
}

func TestRequirementsFromStdin(t *testing.T) {
	f := &fakeService{df: image.DefaultDockerfile("base", "ann", "thesis")}
	code, _, stderr := run(t, f, "numpy==1.26.4\n# comment\ntorch>=2 # pinned\n", "image-update thesis -r -")
	if code != 0 {
		t.Fatalf("exit %d: %s", code, stderr)
	}
	pip, _, _ := image.Packages(f.df, image.Pip)
	if len(pip) != 2 {
		t.Errorf("pip %v", pip)
	}
	code, _, stderr = run(t, f, "numpy\n--index-url http://evil\n", "image-update thesis -r -")
	if code != 2 || !strings.Contains(stderr, "line 2") {
		t.Errorf("an option line in requirements: %d %s", code, stderr)
	}
}

func TestJSONListingsParse(t *testing.T) {
	f := &fakeService{}
	for _, line := range []string{"project list --format json", "image-list --format json", "container-list --retired --format json"} {
		code, stdout, stderr := run(t, f, "", line)
		var v []map[string]any
		if code != 0 || json.Unmarshal([]byte(stdout), &v) != nil {
			t.Errorf("%q: exit %d, stdout %q, stderr %q", line, code, stdout, stderr)
		}
	}
	_, stdout, _ := run(t, f, "", "project list --format json")
	for _, field := range []string{`"name"`, `"image_state"`, `"container"`, `"gpus"`, `"workspace"`, `"last_used"`} {
		if !strings.Contains(stdout, field) {
			t.Errorf("project list JSON lacks %s: %s", field, stdout)
		}
	}
}

func TestComplete(t *testing.T) {
	projects := []string{"thesis", "thesis-old", "demo"}
	for _, tc := range []struct{ line, want string }{
		{"image-up", "image-update "},
		{"container-l", "container-list "},
		{"image up", "image update "},
		{"image-update d", "image-update demo "},
		{"image-update th", "image-update thesis"},
		{"image-update demo --add-s", "image-update demo --add-system "},
	} {
		got, pos, ok := complete(tc.line, len(tc.line), projects)
		if !ok || got != tc.want || pos != len(got) {
			t.Errorf("complete(%q) = %q, %d, %v; want %q", tc.line, got, pos, ok, tc.want)
		}
	}
}

// A Dockerfile or requirements list on stdin is bounded like a Dockerfile:
// every build keeps its Dockerfile in the store.
func TestStdinInputIsBounded(t *testing.T) {
	f := &fakeService{df: image.DefaultDockerfile("base", "ann", "thesis")}
	big := "FROM base\n#" + strings.Repeat("x", image.MaxDockerfile) + "\n"
	for line, in := range map[string]string{
		"image-update thesis --dockerfile -": big,
		"image-update thesis -r -":           strings.Repeat("numpy\n", image.MaxDockerfile/6+1),
	} {
		code, _, stderr := run(t, f, in, line)
		if code != ExitUsage || !strings.Contains(stderr, "larger than 64 KiB") {
			t.Errorf("%s with %d bytes: exit %d, %q", line, len(in), code, stderr)
		}
	}
	if len(f.changes) != 0 {
		t.Errorf("an oversized input reached the service: %d changes", len(f.changes))
	}
}

// A slot kept for the owner of a stopped container shows as such, so a
// user wondering why a free GPU is not theirs sees until when.
func TestGPUStatusShowsHolds(t *testing.T) {
	slot := gpu.Slot{UUID: "GPU-1", Index: "0", Name: "A100"}
	until := time.Now().Add(10 * time.Minute)
	f := &fakeService{slots: []gpu.SlotState{{Slot: slot}}, holds: []gpu.HoldState{{Slot: slot, User: "bob", Project: "train", Until: until}}}
	code, out, _ := run(t, f, "", "gpu-status")
	if code != 0 || !strings.Contains(out, "held for bob/train until "+until.Local().Format("15:04")) {
		t.Errorf("gpu-status:\n%s\nwant the hold shown", out)
	}
	code, out, _ = run(t, f, "", "gpu-status --format json")
	if code != 0 || !strings.Contains(out, `"held_for":"bob/train"`) && !strings.Contains(out, `"held_for": "bob/train"`) {
		t.Errorf("gpu-status --format json:\n%s\nwant held_for", out)
	}
}

// check-limits --format json names the lifecycle keys the limits file sets,
// in the file's units, and leaves out the ones it does not.
func TestLimitsJSONLifecycleKeys(t *testing.T) {
	l := gpu.Limits{
		IdleTimeout: gpu.Opt[time.Duration]{Set: true, V: 30 * time.Minute},
		MaxRuntime:  gpu.Opt[time.Duration]{Set: true, Never: true},
	}
	j := limitsJSON(l)
	if v, ok := j["idle_timeout_h"]; !ok || v != 0.5 {
		t.Errorf("idle_timeout_h = %v, want 0.5", v)
	}
	if v, ok := j["max_runtime_h"]; !ok || v != nil {
		t.Errorf("max_runtime_h = %v (present %v), want null for never", v, ok)
	}
	if _, ok := j["gpu_idle_threshold"]; ok {
		t.Error("gpu_idle_threshold shown though the file does not set it")
	}
}
