package docker

import (
	"strings"
	"testing"
)

func TestPushDigest(t *testing.T) {
	const d = "sha256:2f1d5c1e0b3a8c4a6e9f0d7b1c2e3f405162738495a6b7c8d9e0f1a2b3c4d5e6"
	ok := `{"status":"The push refers to repository [127.0.0.1:5000/ds01/img]"}
{"status":"Pushed","progressDetail":{},"id":"abc"}
{"status":"t: digest: ` + d + ` size: 528"}
{"progressDetail":{},"aux":{"Tag":"t","Digest":"` + d + `","Size":528}}
`
	if got, err := pushDigest(strings.NewReader(ok)); err != nil || got != d {
		t.Fatalf("pushDigest = %q, %v; want %s", got, err, d)
	}
	bad := `{"status":"Preparing","id":"abc"}
{"errorDetail":{"message":"denied: requested access to the resource is denied"},"error":"denied: requested access to the resource is denied"}
`
	if _, err := pushDigest(strings.NewReader(bad)); err == nil || !strings.Contains(err.Error(), "denied") {
		t.Fatalf("an error in the stream: err = %v, want the registry's message", err)
	}
	if _, err := pushDigest(strings.NewReader(`{"status":"Pushed"}`)); err == nil {
		t.Fatal("a stream without a digest must fail")
	}
	if _, err := pushDigest(strings.NewReader(`{"status":`)); err == nil {
		t.Fatal("a cut stream must fail")
	}
}

func TestRepoOf(t *testing.T) {
	for in, want := range map[string]string{
		"127.0.0.1:5000/ds01/img:abc": "127.0.0.1:5000/ds01/img",
		"127.0.0.1:5000/ds01/img":     "127.0.0.1:5000/ds01/img",
		"registry.lab/a/b:v1":         "registry.lab/a/b",
		"img":                         "img",
	} {
		if got := repoOf(in); got != want {
			t.Errorf("repoOf(%q) = %q, want %q", in, got, want)
		}
	}
}
