package session

import (
	"bufio"
	"bytes"
	"fmt"
	"strconv"
	"strings"

	"github.com/ds01/ds01-gateway/store"
)

// homeDir is the user's home inside containers.
func homeDir(u store.User) string {
	if u.UID == 0 {
		return "/root"
	}
	return "/home/" + u.Name
}

// mergePasswd returns passwd with an entry for u, replacing any entry that
// has u's name or uid, so `whoami`, `id` and $HOME work on any base image.
// It also returns the login shell: the image's root shell when it has one.
func mergePasswd(passwd []byte, u store.User) (out []byte, shell string) {
	shell = "/bin/sh"
	var b bytes.Buffer
	for _, line := range lines(passwd) {
		f := strings.Split(line, ":")
		if len(f) >= 7 && f[2] == "0" && f[6] != "" && !strings.HasSuffix(f[6], "nologin") {
			shell = f[6]
		}
		if len(f) >= 3 && (f[0] == u.Name || f[2] == strconv.Itoa(u.UID)) {
			continue
		}
		b.WriteString(line)
		b.WriteByte('\n')
	}
	fmt.Fprintf(&b, "%s:x:%d:%d:%s:%s:%s\n", u.Name, u.UID, u.GID, u.Name, homeDir(u), shell)
	return b.Bytes(), shell
}

// mergeGroup keeps an existing group of u's gid, or adds one named after u.
func mergeGroup(group []byte, u store.User) []byte {
	var b bytes.Buffer
	gid := strconv.Itoa(u.GID)
	found := false
	for _, line := range lines(group) {
		f := strings.Split(line, ":")
		if len(f) >= 3 && f[2] == gid {
			found = true
		}
		if len(f) >= 3 && f[0] == u.Name && f[2] != gid {
			continue // a clashing name would shadow the user's own group
		}
		b.WriteString(line)
		b.WriteByte('\n')
	}
	if !found {
		fmt.Fprintf(&b, "%s:x:%d:\n", u.Name, u.GID)
	}
	return b.Bytes()
}

func lines(data []byte) []string {
	var out []string
	sc := bufio.NewScanner(bytes.NewReader(data))
	for sc.Scan() {
		if line := sc.Text(); strings.TrimSpace(line) != "" {
			out = append(out, line)
		}
	}
	return out
}
