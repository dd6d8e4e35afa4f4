package image

import (
	"errors"
	"fmt"
	"net/netip"
	"path"
	"regexp"
	"strconv"
	"strings"

	"github.com/distribution/reference"
)

// ErrRefused marks an image reference, or a Dockerfile line, that a user's
// build may not use.
var ErrRefused = errors.New("not allowed")

// RefPolicy says which images a user's build may name.
type RefPolicy struct {
	// UID is the building user's: ds01-<UID>/... images are theirs, every
	// other ds01-<uid>/... image is another user's.
	UID int
	// AllowedBases are glob patterns for every other image; none allow any.
	AllowedBases []string
	// Lookup resolves a registry's host name, so that a name for a host on
	// the server's own networks is refused like an address; nil skips it.
	Lookup func(host string) ([]netip.Addr, error)
}

// idLike matches what the engine may resolve as an image ID or a prefix of
// one when no image has that name: "cafe12", "sha256:cafe12", a full ID.
// Names like these cannot be told from an ID, so they are refused.
var idLike = regexp.MustCompile(`^((sha256|sha384|sha512):)?[0-9a-f]+$`)

// projectRepo matches the repository of a project image, ds01-<uid>/name.
var projectRepo = regexp.MustCompile(`^ds01-([0-9]+)/`)

// CheckRef refuses an image a build of p.UID may not use: another user's
// project image (by name or by ID), a registry on the server's own
// networks, or an image outside allowed_bases. The user's own project
// images are always allowed: they were built under the same rules.
func (p RefPolicy) CheckRef(ref string) error {
	if ref == "" {
		return fmt.Errorf("%w: an empty image name", ErrRefused)
	}
	if idLike.MatchString(ref) {
		return fmt.Errorf("%w: %s looks like an image ID; name images as NAME[:TAG], e.g. python:3.12", ErrRefused, shortQuote(ref))
	}
	named, err := parseRef(ref)
	if err != nil {
		return err
	}
	domain, repo := reference.Domain(named), reference.Path(named)
	if m := projectRepo.FindStringSubmatch(repo); m != nil && domain == "docker.io" {
		if m[1] == strconv.Itoa(p.UID) {
			return nil
		}
		return fmt.Errorf("%w: %s is another user's image", ErrRefused, shortQuote(ref))
	}
	if domain != "docker.io" && !p.namesRegistry(domain) {
		if why := p.localRegistry(domain); why != "" {
			return fmt.Errorf("%w: %s is on %s; the admin must name that registry in allowed_bases", ErrRefused, shortQuote(ref), why)
		}
	}
	if !BaseAllowed(ref, p.AllowedBases) {
		return fmt.Errorf("%w: %s is not in allowed_bases (%s)", ErrRefused, shortQuote(ref), strings.Join(p.AllowedBases, ", "))
	}
	return nil
}

// namesRegistry reports whether an allowed_bases pattern names domain
// literally: a local registry needs the admin's word, not a wildcard's.
func (p RefPolicy) namesRegistry(domain string) bool {
	for _, pat := range p.AllowedBases {
		if host, _, ok := strings.Cut(pat, "/"); ok && host == domain {
			return true
		}
	}
	return false
}

// localRegistry says why a registry host is on the server's own networks,
// or "": dockerd pulls from the host's network namespace, so such a
// "registry" is a host-local service (ADD from a URL, by another door).
func (p RefPolicy) localRegistry(domain string) string {
	host := domain
	if h, _, ok := strings.Cut(strings.TrimPrefix(domain, "["), "]"); strings.HasPrefix(domain, "[") && ok {
		host = h
	} else if i := strings.LastIndexByte(domain, ':'); i >= 0 && strings.Count(domain, ":") == 1 {
		host = domain[:i]
	}
	host = strings.ToLower(host)
	if host == "localhost" || strings.HasSuffix(host, ".localhost") {
		return "the server itself"
	}
	if a, err := netip.ParseAddr(host); err == nil {
		if !PublicAddr(a) {
			return "a local address"
		}
		return ""
	}
	if p.Lookup == nil {
		return ""
	}
	addrs, err := p.Lookup(host)
	if err != nil {
		return "" // the pull fails the same way
	}
	for _, a := range addrs {
		if !PublicAddr(a) {
			return "a host that resolves to a local address"
		}
	}
	return ""
}

// cgnat is the shared address space carriers (and some sites) use inside.
var cgnat = netip.MustParsePrefix("100.64.0.0/10")

// PublicAddr reports whether a is a global unicast address outside the
// private, shared and unique-local ranges.
func PublicAddr(a netip.Addr) bool {
	a = a.Unmap()
	return a.IsGlobalUnicast() && !a.IsPrivate() && !cgnat.Contains(a)
}

// BaseAllowed reports whether ref matches one of the glob patterns
// (path.Match syntax). No patterns allow everything. With patterns set, a
// ref with '$' (expanded only at build time) or one that is not a plain
// image reference (quotes, escapes Docker would strip) is never allowed.
func BaseAllowed(ref string, patterns []string) bool {
	if len(patterns) == 0 {
		return true
	}
	if strings.Contains(ref, "$") || ValidateRef(ref) != nil {
		return false
	}
	for _, p := range patterns {
		if ok, err := path.Match(p, ref); ok && err == nil {
			return true
		}
	}
	return false
}

// ValidateRef checks that ref is an image reference Docker accepts:
// [HOST[:PORT]/]PATH[:TAG][@sha256:HEX].
func ValidateRef(ref string) error {
	_, err := parseRef(ref)
	return err
}

// parseRef parses ref as the engine does, refusing the odd names the
// grammar reads as a path although their first part names a host
// ("exa_mple.com/x"): which registry they mean is anybody's guess.
func parseRef(ref string) (reference.Named, error) {
	named, err := reference.ParseNormalizedNamed(ref)
	if err != nil {
		return nil, badRef(ref)
	}
	if first, _, ok := strings.Cut(ref, "/"); ok && (strings.ContainsAny(first, ".:") || first == "localhost") {
		if d := reference.Domain(named); d != first && (first != "index.docker.io" || d != "docker.io") {
			return nil, badRef(ref)
		}
	}
	return named, nil
}

func badRef(ref string) error {
	return fmt.Errorf("invalid image %s: use a lowercase NAME[:TAG], e.g. python:3.12 or nvidia/cuda:12.4.1-runtime-ubuntu22.04", shortQuote(ref))
}

// OwnImage reports whether ref names one of the user's project images.
func OwnImage(ref string, uid int) bool {
	named, err := parseRef(ref)
	if err != nil {
		return false
	}
	m := projectRepo.FindStringSubmatch(reference.Path(named))
	return m != nil && reference.Domain(named) == "docker.io" && m[1] == strconv.Itoa(uid)
}
