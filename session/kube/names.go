package kube

import (
	"crypto/sha256"
	"encoding/hex"
	"strings"
)

// maxName bounds pod names (the API allows 253) so they stay readable in
// kubectl and usable where a DNS label is needed.
const maxName = 63

// podName turns a container name into a valid pod name (a lowercase RFC
// 1123 subdomain). A name that needs no change is kept as it is; one that
// does gets a hash of the original appended, so two names that sanitise
// alike (Alice, alice) still name two pods.
func podName(name string) string {
	out := dnsName(name, true)
	if out == name && len(out) <= maxName {
		return out
	}
	sum := sha256.Sum256([]byte(name))
	suffix := "-" + hex.EncodeToString(sum[:4])
	out = strings.TrimRight(truncate(out, maxName-len(suffix)), "-.")
	if out == "" {
		out = "ds01"
	}
	return out + suffix
}

// hostname turns a project name into a DNS label: the kubelet refuses a
// pod whose hostname is not one, and project names may hold '_'.
func hostname(name string) string {
	out := strings.TrimRight(truncate(dnsName(name, false), maxName), "-")
	if out == "" {
		return "ds01"
	}
	return out
}

// dnsName lowercases s and replaces what a DNS name cannot hold with '-';
// with dots, each dot-separated part starts and ends with a letter or digit.
func dnsName(s string, dots bool) string {
	var b strings.Builder
	for _, r := range strings.ToLower(s) {
		switch {
		case r >= 'a' && r <= 'z', r >= '0' && r <= '9', r == '-':
			b.WriteRune(r)
		case r == '.' && dots:
			b.WriteRune(r)
		default:
			b.WriteByte('-')
		}
	}
	parts := strings.Split(b.String(), ".")
	kept := parts[:0]
	for _, p := range parts {
		if p = strings.Trim(p, "-"); p != "" {
			kept = append(kept, p)
		}
	}
	return strings.Join(kept, ".")
}

func truncate(s string, n int) string {
	if len(s) > n {
		return s[:n]
	}
	return s
}
