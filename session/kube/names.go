package kube

import (
	"crypto/sha256"
	"encoding/hex"
	"strings"
)

// maxName bounds pod names (the API allows 253) so they stay readable in
// kubectl and usable where a DNS label is needed.
const maxName = 63

// podName turns a container name into a valid pod name: a DNS label, as
// the API recommends for a name that may become a hostname. A name that
// needs no change is kept as it is; one that does gets a hash of the
// original appended, so two names that sanitise alike (Alice, alice;
// a.b, a-b) still name two pods.
func podName(name string) string {
	out := dnsName(name)
	if out == name && len(out) <= maxName {
		return out
	}
	sum := sha256.Sum256([]byte(name))
	suffix := "-" + hex.EncodeToString(sum[:4])
	out = strings.TrimRight(truncate(out, maxName-len(suffix)), "-")
	if out == "" {
		out = "ds01"
	}
	return out + suffix
}

// hostname turns a project name into a DNS label: the kubelet refuses a
// pod whose hostname is not one, and project names may hold '_'.
func hostname(name string) string {
	out := strings.TrimRight(truncate(dnsName(name), maxName), "-")
	if out == "" {
		return "ds01"
	}
	return out
}

// dnsName lowercases s, replaces what a DNS label cannot hold with '-',
// and trims '-' from both ends.
func dnsName(s string) string {
	var b strings.Builder
	for _, r := range strings.ToLower(s) {
		if r >= 'a' && r <= 'z' || r >= '0' && r <= '9' || r == '-' {
			b.WriteRune(r)
		} else {
			b.WriteByte('-')
		}
	}
	return strings.Trim(b.String(), "-")
}

func truncate(s string, n int) string {
	if len(s) > n {
		return s[:n]
	}
	return s
}
