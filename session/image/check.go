package image

import (
	"encoding/csv"
	"fmt"
	"slices"
	"strconv"
	"strings"
)

// MaxDockerfile bounds a Dockerfile wherever one enters: a real one is a
// few KiB, and every build keeps its Dockerfile in the store.
const MaxDockerfile = 64 << 10

// Check refuses a user's Dockerfile that would make the engine, which runs
// as root in the host's network namespace, act for the user beyond their
// own files and images. Every line's problem names the line:
//
//   - ADD from a URL or git (dockerd would fetch it from the host's
//     network: host-local services, port probes);
//   - an image the user may not build from (see RefPolicy.CheckRef), in
//     FROM (ARG defaults expanded), COPY --from and RUN --mount from=;
//   - a LABEL ds01.*: the gateway owns those labels;
//   - any of these inside ONBUILD.
//
// It returns the images the FROM lines pull, for the caller to inspect.
func Check(df []byte, p RefPolicy) (bases []string, err error) {
	if len(df) > MaxDockerfile {
		return nil, fmt.Errorf("the Dockerfile is %d KiB; at most %d KiB is allowed", (len(df)+1023)>>10, MaxDockerfile>>10)
	}
	for _, r := range Readings(df) {
		c := checker{p: p, esc: r.Escape, meta: map[string]string{}, stages: map[string]bool{}}
		for i := range r.Insts {
			if err := c.inst(&r.Insts[i], false); err != nil {
				return nil, fmt.Errorf("Dockerfile line %d: %w", r.Insts[i].Line(), err)
			}
		}
		for _, b := range c.bases {
			if !slices.Contains(bases, b) {
				bases = append(bases, b)
			}
		}
	}
	return bases, nil
}

type checker struct {
	p      RefPolicy
	esc    byte
	meta   map[string]string // ARGs before the first FROM: what FROM expands
	stages map[string]bool   // stage names so far, lower case
	inFrom bool              // a FROM has been seen
	bases  []string
}

func (c *checker) inst(in *Instruction, trigger bool) error {
	switch in.Keyword {
	case "ARG":
		if !c.inFrom && !trigger {
			c.metaArgs(in)
		}
	case "FROM":
		if trigger {
			return nil // Docker refuses ONBUILD FROM
		}
		c.inFrom = true
		return c.from(in)
	case "ADD", "COPY":
		if v, ok := in.Flag("from"); ok {
			if err := c.fromFlag(v, trigger); err != nil {
				return fmt.Errorf("%s --from: %w", in.Keyword, err)
			}
		}
		if in.Keyword == "ADD" {
			return c.add(in)
		}
	case "RUN":
		for _, f := range in.Flags {
			if v, ok := cutFlag(f, "mount"); ok {
				if err := c.mount(v, trigger); err != nil {
					return fmt.Errorf("RUN --mount: %w", err)
				}
			}
		}
	case "LABEL":
		return c.label(in)
	case "ONBUILD":
		if in.Trigger != nil {
			if err := c.inst(in.Trigger, true); err != nil {
				return fmt.Errorf("ONBUILD: %w", err)
			}
		}
	}
	return nil
}

func cutFlag(f, name string) (string, bool) {
	k, v, ok := strings.Cut(strings.TrimPrefix(f, "--"), "=")
	return v, ok && strings.EqualFold(k, name)
}

// metaArgs records ARG defaults before the first FROM, which FROM lines
// expand (the gateway passes no --build-arg).
func (c *checker) metaArgs(in *Instruction) {
	for _, w := range quotedWords(in.Rest, c.esc) {
		k, v, hasVal := strings.Cut(w, "=")
		key, err := shellWord(k, c.esc, c.meta)
		if err != nil {
			continue
		}
		if !hasVal {
			if _, set := c.meta[key]; !set {
				c.meta[key] = ""
			}
			continue
		}
		val, err := shellWord(v, c.esc, c.meta)
		if err != nil {
			val = "$" // unknowable: a FROM that uses it is refused below
		}
		c.meta[key] = val
	}
}

func (c *checker) from(in *Instruction) error {
	var img, stage string
	args := in.Args
	switch {
	case len(args) == 1:
		img = args[0]
	case len(args) == 3 && strings.EqualFold(args[1], "AS"):
		img, stage = args[0], args[2]
	default:
		return nil // Docker refuses it: FROM takes one or three arguments
	}
	name, err := shellWord(img, c.esc, c.meta)
	if err == nil && strings.Contains(name, "$") {
		err = errVariable
	}
	if err != nil {
		return fmt.Errorf("FROM %s: %w: use a plain image name, or ARG NAME=value before the FROM", shortQuote(img), err)
	}
	low := strings.ToLower(name)
	if low != "scratch" && !c.stages[low] {
		if err := c.p.CheckRef(name); err != nil {
			return fmt.Errorf("FROM: %w", err)
		}
		c.bases = append(c.bases, name)
	}
	if stage != "" {
		c.stages[strings.ToLower(stage)] = true // only later lines may name it
	}
	return nil
}

// fromFlag checks COPY --from= and RUN --mount from=: an earlier stage by
// name or index, or an image. A trigger runs in another build, whose
// stages are unknown here, so there every name is taken as an image.
func (c *checker) fromFlag(v string, trigger bool) error {
	if strings.Contains(v, "$") {
		return errVariable
	}
	if _, err := strconv.Atoi(v); err == nil {
		return nil // a stage index
	}
	if !trigger && c.stages[strings.ToLower(v)] {
		return nil
	}
	return c.p.CheckRef(v)
}

// mount checks a RUN --mount=... value: comma-separated key=value fields,
// CSV-quoted as BuildKit reads them.
func (c *checker) mount(v string, trigger bool) error {
	fields, err := csv.NewReader(strings.NewReader(v)).Read()
	if err != nil {
		return fmt.Errorf("cannot read %s: %w", shortQuote(v), err)
	}
	for _, f := range fields {
		if k, val, ok := strings.Cut(f, "="); ok && strings.EqualFold(strings.TrimSpace(k), "from") {
			if err := c.fromFlag(val, trigger); err != nil {
				return err
			}
		}
	}
	return nil
}

// add refuses remote sources. A source with a variable is refused too: it
// could expand to a URL.
func (c *checker) add(in *Instruction) error {
	if len(in.Args) < 2 {
		return nil // Docker refuses it
	}
	for _, src := range in.Args[:len(in.Args)-1] {
		s, err := shellWord(src, c.esc, nil)
		if err != nil {
			return fmt.Errorf("ADD %s: %w; COPY files from the workspace instead", shortQuote(src), err)
		}
		if isRemote(s) {
			return fmt.Errorf("%w: ADD %s: the server does not fetch URLs for a build; download the file into the workspace and COPY it", ErrRefused, shortQuote(s))
		}
	}
	return nil
}

// isRemote reports a source the builder would fetch rather than read from
// the context: a URL of any scheme, or git.
func isRemote(src string) bool {
	return strings.Contains(src, "://") || strings.HasPrefix(src, "git@")
}

// label refuses ds01.* label keys: reconciliation and listings read them
// as the gateway's word about a container.
func (c *checker) label(in *Instruction) error {
	for _, k := range labelKeys(in, c.esc) {
		key, err := shellWord(k, c.esc, nil)
		if err != nil {
			return fmt.Errorf("LABEL %s: %w", shortQuote(k), err)
		}
		if strings.HasPrefix(strings.ToLower(strings.TrimSpace(key)), "ds01.") {
			return fmt.Errorf("%w: LABEL %s: ds01.* labels belong to the gateway; use another name", ErrRefused, shortQuote(key))
		}
	}
	return nil
}

// HasFrom reports whether df has a FROM instruction.
func HasFrom(df []byte) bool {
	for _, in := range Readings(df)[0].Insts {
		if in.Keyword == "FROM" {
			return true
		}
	}
	return false
}

// CheckTriggers applies Check's rules to a base image's ONBUILD triggers,
// which the builder reads one by one as instructions of the build.
func CheckTriggers(triggers []string, p RefPolicy) error {
	for _, t := range triggers {
		for _, r := range Readings([]byte(t)) {
			c := checker{p: p, esc: r.Escape, meta: map[string]string{}, stages: map[string]bool{}}
			for i := range r.Insts {
				if err := c.inst(&r.Insts[i], true); err != nil {
					return fmt.Errorf("ONBUILD %s: %w", shortQuote(t), err)
				}
			}
		}
	}
	return nil
}
