package commands

import (
	"bytes"
	"context"
	"encoding/json"
	"strings"
	"testing"

	"github.com/ds01/ds01-gateway/session"
	"github.com/ds01/ds01-gateway/store"
)

func (f *fakeService) DiskUsage(context.Context) (session.DiskReport, error) {
	return session.DiskReport{
		Users: []session.UserDisk{
			{User: "ann", UID: 1001, Images: 2, ImageBytes: 3 << 30, Workspaces: 1, WorkspaceBytes: 5 << 20},
			{User: "bob", UID: 1002, Workspaces: 2, WorkspaceBytes: 7 << 20, Partial: true},
			{User: "cyd", UID: 1003, Removed: true, Images: 1, ImageBytes: 1 << 30},
		},
		BuildCache: 256 << 20,
	}, nil
}

func runAs(t *testing.T, admin bool, line string) (code int, stdout, stderr string) {
	t.Helper()
	var out, errb bytes.Buffer
	env := &Env{Service: &fakeService{}, User: store.User{Name: "ann"}, Login: "ds01", Host: "gw", Stdout: &out, Stderr: &errb, Admin: admin}
	code = RunLine(context.Background(), env, line)
	return code, out.String(), errb.String()
}

// A non-admin gets one ds01: line and exit 1, nothing on stdout.
func TestDiskUsageRefusesNonAdmins(t *testing.T) {
	code, stdout, stderr := runAs(t, false, "disk-usage")
	if code != ExitFail || stdout != "" || strings.Count(stderr, "\n") != 1 || !strings.HasPrefix(stderr, "ds01: ") || !strings.Contains(stderr, "admin") {
		t.Errorf("non-admin disk-usage: exit %d, stdout %q, stderr %q", code, stdout, stderr)
	}
}

func TestDiskUsageTable(t *testing.T) {
	code, stdout, stderr := runAs(t, true, "disk-usage")
	if code != 0 {
		t.Fatalf("exit %d: %s", code, stderr)
	}
	for _, want := range []string{"ann", "3.0 GB", "bob", ">= 7 MB", "cyd (removed)", "TOTAL", "4.0 GB", ">= 12 MB", "build cache: 256 MB"} {
		if !strings.Contains(stdout, want) {
			t.Errorf("disk-usage lacks %q:\n%s", want, stdout)
		}
	}
}

func TestDiskUsageJSON(t *testing.T) {
	code, stdout, stderr := runAs(t, true, "disk-usage --format json")
	if code != 0 {
		t.Fatalf("exit %d: %s", code, stderr)
	}
	var v struct {
		Users []struct {
			User           string `json:"user"`
			ImageBytes     int64  `json:"image_bytes"`
			WorkspaceBytes int64  `json:"workspace_bytes"`
			Partial        bool   `json:"partial"`
		} `json:"users"`
		BuildCache *int64 `json:"build_cache_bytes"`
		Total      struct {
			Images         int   `json:"images"`
			ImageBytes     int64 `json:"image_bytes"`
			WorkspaceBytes int64 `json:"workspace_bytes"`
			Partial        bool  `json:"partial"`
		} `json:"total"`
	}
	if err := json.Unmarshal([]byte(stdout), &v); err != nil {
		t.Fatalf("%v: %s", err, stdout)
	}
	if len(v.Users) != 3 || v.Users[0].ImageBytes != 3<<30 || !v.Users[1].Partial || v.BuildCache == nil || *v.BuildCache != 256<<20 ||
		v.Total.Images != 3 || v.Total.ImageBytes != 4<<30 || v.Total.WorkspaceBytes != 12<<20 || !v.Total.Partial {
		t.Errorf("disk-usage JSON = %+v", v)
	}
}

func TestImageListJSONHasSizeBytes(t *testing.T) {
	_, stdout, _ := runAs(t, false, "image-list --format json")
	if !strings.Contains(stdout, `"size_bytes"`) || !strings.Contains(stdout, `"created"`) {
		t.Errorf("image-list JSON lacks size_bytes or created: %s", stdout)
	}
}
