package session

import (
	"strings"
	"testing"

	"github.com/ds01/ds01-gateway/store"
)

func TestMergePasswd(t *testing.T) {
	image := "root:x:0:0:root:/root:/bin/bash\nubuntu:x:1000:1000::/home/ubuntu:/bin/sh\nalice:x:5:5::/x:/bin/false\n"
	got, shell := mergePasswd([]byte(image), store.User{Name: "alice", UID: 1000, GID: 1000})
	if shell != "/bin/bash" {
		t.Errorf("shell = %q, want the image's root shell", shell)
	}
	want := "root:x:0:0:root:/root:/bin/bash\nalice:x:1000:1000:alice:/home/alice:/bin/bash\n"
	if string(got) != want {
		t.Errorf("passwd:\n%s\nwant:\n%s", got, want)
	}
}

func TestMergePasswdEmptyImage(t *testing.T) {
	got, shell := mergePasswd(nil, store.User{Name: "bob", UID: 2000, GID: 3000})
	if shell != "/bin/sh" || string(got) != "bob:x:2000:3000:bob:/home/bob:/bin/sh\n" {
		t.Errorf("got %q shell %q", got, shell)
	}
}

func TestMergePasswdRoot(t *testing.T) {
	got, _ := mergePasswd([]byte("root:x:0:0:root:/root:/bin/bash\n"), store.User{Name: "root", UID: 0, GID: 0})
	if string(got) != "root:x:0:0:root:/root:/bin/bash\n" {
		t.Errorf("got %q", got)
	}
}

func TestMergeGroup(t *testing.T) {
	g := string(mergeGroup([]byte("root:x:0:\nusers:x:100:\n"), store.User{Name: "alice", UID: 1000, GID: 1000}))
	if !strings.HasSuffix(g, "alice:x:1000:\n") {
		t.Errorf("no group for the gid: %q", g)
	}
	g = string(mergeGroup([]byte("root:x:0:\nusers:x:100:\n"), store.User{Name: "alice", UID: 1000, GID: 100}))
	if strings.Contains(g, "alice") {
		t.Errorf("existing gid must be kept as is: %q", g)
	}
}
