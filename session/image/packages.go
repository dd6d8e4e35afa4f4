package image

import (
	"bytes"
	"errors"
	"fmt"
	"strings"
)

// Kind says which block a package belongs to.
type Kind int

const (
	Pip    Kind = iota // Python packages, pip install
	System             // Debian packages, apt-get install
)

func (k Kind) String() string {
	switch k {
	case Pip:
		return "pip"
	case System:
		return "apt"
	}
	return fmt.Sprintf("Kind(%d)", int(k))
}

// Package is one validated package spec.
type Package struct {
	// Name is the key two specs are compared by: pip names normalised per
	// PEP 503, apt names as written (with ":arch" when given, since libc6
	// and libc6:i386 are two packages that can be installed side by side).
	Name string
	// Spec is the spec as it goes into the Dockerfile, e.g. "numpy>=1.24,<2".
	Spec string
}

// Limits keep one argument or one file from producing a huge Dockerfile.
const (
	maxSpecLen      = 200
	maxRequirements = 1000
	maxReqFileSize  = 1 << 20
)

const (
	pipUsage = "use NAME, NAME[extra], NAME==1.2 or NAME>=1,<2"
	aptUsage = "use NAME, NAME=VERSION or NAME/RELEASE"
)

// specByte is every byte any valid spec may hold. Checking it first means
// the grammar below never sees a quote, space, '$', control character or
// non-ASCII byte, whatever its own bugs.
func specByte(c byte) bool {
	return isAlnum(c) || strings.IndexByte("._-[],=<>!~*+:/", c) >= 0
}

func isAlnum(c byte) bool {
	return 'a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9'
}

func isLowerAlnum(c byte) bool {
	return 'a' <= c && c <= 'z' || '0' <= c && c <= '9'
}

func isDigit(c byte) bool { return '0' <= c && c <= '9' }

// allBytes reports whether s is non-empty and every byte satisfies ok.
func allBytes(s string, ok func(byte) bool) bool {
	if s == "" {
		return false
	}
	for i := 0; i < len(s); i++ {
		if !ok(s[i]) {
			return false
		}
	}
	return true
}

// shortQuote quotes user input for an error message, escaping control and
// non-printable characters (terminal escapes must not reach a student's
// terminal) and cutting what is too long to be useful.
func shortQuote(s string) string {
	const keep = 60
	if len(s) > keep {
		return fmt.Sprintf("%q...", s[:keep])
	}
	return fmt.Sprintf("%q", s)
}

// precheck applies the refusals shared by pip and apt specs.
func precheck(spec string) bool {
	return len(spec) <= maxSpecLen && spec != "" && spec[0] != '-' && allBytes(spec, specByte)
}

// ParsePip validates one pip requirement: NAME, optional [extras], optional
// comma-separated version clauses. URLs, markers, options and anything a
// shell would interpret are refused.
func ParsePip(spec string) (Package, error) {
	bad := fmt.Errorf("invalid pip package %s: %s", shortQuote(spec), pipUsage)
	if !precheck(spec) {
		return Package{}, bad
	}
	name, rest := cutPipName(spec)
	if name == "" {
		return Package{}, bad
	}
	rest, ok := cutExtras(rest)
	if !ok || !validClauses(rest) {
		return Package{}, bad
	}
	return Package{Name: normalisePip(name), Spec: spec}, nil
}

// cutPipName splits off the longest PEP 508 name at the start of s. The
// name must start and end with a letter or digit.
func cutPipName(s string) (name, rest string) {
	if s == "" || !isAlnum(s[0]) {
		return "", s
	}
	end := 1 // end of the name as last seen ending in alnum
	for i := 1; i < len(s); i++ {
		c := s[i]
		if isAlnum(c) {
			end = i + 1
		} else if c != '.' && c != '_' && c != '-' {
			break
		}
	}
	return s[:end], s[end:]
}

// cutExtras removes "[a,b]" from the start of s, if present.
func cutExtras(s string) (rest string, ok bool) {
	if !strings.HasPrefix(s, "[") {
		return s, true
	}
	inner, rest, found := strings.Cut(s[1:], "]")
	if !found || inner == "" {
		return "", false
	}
	for _, extra := range strings.Split(inner, ",") {
		if n, tail := cutPipName(extra); n == "" || tail != "" {
			return "", false
		}
	}
	return rest, true
}

var pipOps = []string{"===", "==", "!=", "<=", ">=", "~=", "<", ">"} // longest first

// validClauses checks "" or one or more comma-separated "OP VERSION".
func validClauses(s string) bool {
	if s == "" {
		return true
	}
	for _, clause := range strings.Split(s, ",") {
		if !validClause(clause) {
			return false
		}
	}
	return true
}

func validClause(c string) bool {
	for _, op := range pipOps {
		if v, ok := strings.CutPrefix(c, op); ok {
			wildcardOK := op == "==" || op == "!="
			return validPipVersion(v, wildcardOK)
		}
	}
	return false
}

// validPipVersion allows the characters PEP 440 versions use; '*' only as
// a final ".*" where pip accepts it.
func validPipVersion(v string, wildcardOK bool) bool {
	if wildcardOK {
		if t, ok := strings.CutSuffix(v, ".*"); ok {
			v = t
		}
	}
	if v == "" || !isAlnum(v[0]) {
		return false
	}
	return allBytes(v, func(c byte) bool { return isAlnum(c) || strings.IndexByte(".+!_-", c) >= 0 })
}

// normalisePip applies PEP 503: lowercase, runs of -_. become one '-', so
// "NumPy" and "numpy", "scikit_learn" and "scikit-learn" are one package.
func normalisePip(name string) string {
	var b strings.Builder
	sep := false
	for i := 0; i < len(name); i++ {
		c := name[i]
		if c == '-' || c == '_' || c == '.' {
			sep = true
			continue
		}
		if sep && b.Len() > 0 {
			b.WriteByte('-')
		}
		sep = false
		if 'A' <= c && c <= 'Z' {
			c += 'a' - 'A'
		}
		b.WriteByte(c)
	}
	return b.String()
}

// ParseApt validates one Debian package: NAME[:ARCH] optionally followed by
// =VERSION or /RELEASE.
func ParseApt(spec string) (Package, error) {
	bad := fmt.Errorf("invalid apt package %s: %s", shortQuote(spec), aptUsage)
	if !precheck(spec) {
		return Package{}, bad
	}
	key, pin := spec, ""
	if i := strings.IndexAny(spec, "=/"); i >= 0 {
		key, pin = spec[:i], spec[i:]
	}
	name, arch, hasArch := strings.Cut(key, ":")
	if !validAptName(name) || hasArch && !allBytes(arch, aptArchByte) || !validAptPin(pin) {
		return Package{}, bad
	}
	return Package{Name: key, Spec: spec}, nil
}

// validAptName follows Debian policy 5.6.1.
func validAptName(n string) bool {
	return len(n) >= 2 && isLowerAlnum(n[0]) &&
		allBytes(n, func(c byte) bool { return isLowerAlnum(c) || c == '+' || c == '.' || c == '-' })
}

func aptArchByte(c byte) bool { return isLowerAlnum(c) || c == '-' }

// validAptPin checks "", "=VERSION" or "/RELEASE".
func validAptPin(pin string) bool {
	switch {
	case pin == "":
		return true
	case pin[0] == '/':
		return allBytes(pin[1:], func(c byte) bool { return isLowerAlnum(c) || c == '.' || c == '-' })
	default:
		return validDebVersion(pin[1:])
	}
}

// validDebVersion follows Debian policy 5.6.12: [EPOCH:]UPSTREAM[-REVISION],
// upstream starting with a digit; a colon only after a numeric epoch.
func validDebVersion(v string) bool {
	if epoch, rest, ok := strings.Cut(v, ":"); ok {
		if !allBytes(epoch, isDigit) {
			return false
		}
		v = rest
	}
	return v != "" && isDigit(v[0]) &&
		allBytes(v, func(c byte) bool { return isAlnum(c) || strings.IndexByte(".+~:-", c) >= 0 })
}

// Parse dispatches on kind.
func Parse(k Kind, spec string) (Package, error) {
	switch k {
	case Pip:
		return ParsePip(spec)
	case System:
		return ParseApt(spec)
	}
	return Package{}, fmt.Errorf("unknown package kind %d", int(k))
}

// ParseList splits a user's value on whitespace ("numpy pandas>=2") and
// parses each word. Commas are not separators: they belong to version
// clauses and extras.
func ParseList(k Kind, value string) ([]Package, error) {
	words := strings.Fields(value)
	if len(words) == 0 {
		return nil, fmt.Errorf("no %s packages given", k)
	}
	if len(words) > maxRequirements {
		return nil, fmt.Errorf("too many %s packages: at most %d at once", k, maxRequirements)
	}
	pkgs := make([]Package, 0, len(words))
	for _, w := range words {
		p, err := Parse(k, w)
		if err != nil {
			return nil, err
		}
		pkgs = append(pkgs, p)
	}
	return pkgs, nil
}

// ParseRequirements parses requirements.txt content. Only plain
// requirements are accepted: options (-r, -e, --index-url, ...) could pull
// code from anywhere, so they are refused rather than skipped.
func ParseRequirements(data []byte) ([]Package, error) {
	if len(data) > maxReqFileSize {
		return nil, fmt.Errorf("requirements file is larger than %d KiB", maxReqFileSize>>10)
	}
	data = bytes.TrimPrefix(data, []byte("\ufeff")) // editors on Windows add a BOM
	var pkgs []Package
	for i, line := range strings.Split(string(data), "\n") {
		req := requirementText(line)
		if req == "" {
			continue
		}
		p, err := parseRequirement(req)
		if err != nil {
			return nil, fmt.Errorf("requirements line %d: %w", i+1, err)
		}
		if len(pkgs) == maxRequirements {
			return nil, fmt.Errorf("requirements: more than %d packages", maxRequirements)
		}
		pkgs = append(pkgs, p)
	}
	if len(pkgs) == 0 {
		return nil, errors.New("no packages in requirements")
	}
	return pkgs, nil
}

// requirementText trims a line and drops a comment: a whole-line "#..." or
// a "#..." after whitespace (pip keeps a '#' glued to a word, so do we, and
// ParsePip then refuses it).
func requirementText(line string) string {
	line = strings.TrimSpace(line) // also drops the \r of CRLF
	for i := 0; i < len(line); i++ {
		if line[i] == '#' && (i == 0 || line[i-1] == ' ' || line[i-1] == '\t') {
			return strings.TrimSpace(line[:i])
		}
	}
	return line
}

func parseRequirement(req string) (Package, error) {
	switch {
	case strings.HasPrefix(req, "-"):
		return Package{}, fmt.Errorf("options such as %s are not supported: list one package per line", shortQuote(strings.Fields(req)[0]))
	case strings.Contains(req, ";"):
		return Package{}, fmt.Errorf("environment markers (;) are not supported in %s: remove the ; part", shortQuote(req))
	}
	return ParsePip(req)
}

// Merge returns cur with add applied: a package already present (same
// Name) is replaced in place, new ones are appended in order, and
// duplicates inside add collapse to the last. Neither input is modified.
func Merge(cur, add []Package) []Package {
	out := make([]Package, len(cur), len(cur)+len(add))
	copy(out, cur)
	at := make(map[string]int, len(out)+len(add))
	for i := len(out) - 1; i >= 0; i-- {
		at[out[i].Name] = i // first occurrence wins
	}
	for _, p := range add {
		if i, ok := at[p.Name]; ok {
			out[i] = p
			continue
		}
		at[p.Name] = len(out)
		out = append(out, p)
	}
	return out
}

// Remove returns cur without the packages named in names, and the names
// that matched nothing, in input order. A name may be written as the user
// added it ("NumPy", "numpy==2", "libc6:i386"): its Name is what counts.
func Remove(k Kind, cur []Package, names []string) (kept []Package, missing []string) {
	present := make(map[string]bool, len(cur))
	for _, p := range cur {
		present[p.Name] = true
	}
	drop := make(map[string]bool, len(names))
	for _, n := range names {
		key := packageKey(k, n)
		if !present[key] {
			missing = append(missing, n)
			continue
		}
		drop[key] = true
	}
	for _, p := range cur {
		if !drop[p.Name] {
			kept = append(kept, p)
		}
	}
	return kept, missing
}

// packageKey is the Name a user's word refers to.
func packageKey(k Kind, word string) string {
	if p, err := Parse(k, word); err == nil {
		return p.Name
	}
	if k == Pip {
		return normalisePip(word)
	}
	return word
}
