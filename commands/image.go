package commands

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"path"
	"strings"
	"unicode/utf8"

	"github.com/ds01/ds01-gateway/session"
	"github.com/ds01/ds01-gateway/session/image"
)

var (
	addFlag       = flagSpec{name: "--add", short: "-p", kind: listFlag, arg: "PKGS", help: "pip packages, e.g. --add \"transformers torch==2.3.0\""}
	addSystemFlag = flagSpec{name: "--add-system", short: "-s", kind: listFlag, arg: "PKGS", help: "Debian (apt) packages, e.g. --add-system \"jq ffmpeg\""}
	reqFlag       = flagSpec{name: "--requirements", short: "-r", kind: valueFlag, arg: "FILE|-", help: "pip requirements: - reads stdin, FILE is in the workspace"}
)

func imageCreate() *command {
	return &command{
		name: "image-create", args: "<project>", minArgs: 1, maxArgs: 1,
		summary: "Create a project's Dockerfile and build its image.",
		flags: []flagSpec{
			{name: "--base", kind: valueFlag, arg: "IMAGE", help: "base image (the admin may restrict it)"},
			addFlag, addSystemFlag, reqFlag,
		},
		run: runImageCreate,
	}
}

func runImageCreate(ctx context.Context, env *Env, p *parsed) error {
	project := p.args[0]
	if err := session.ValidateProject(project, env.Login); err != nil {
		return err
	}
	pip, sys, err := packagesFromFlags(ctx, env, p, project)
	if err != nil {
		return err
	}
	base := p.value("--base")
	if base != "" {
		if err := image.ValidateRef(base); err != nil {
			return usageError{err.Error()}
		}
	}
	spec := session.ImageSpec{Base: base, Pip: pip, System: sys, Reason: reason("image-create", p)}
	env.notef("creating image for %s ...", project)
	res, err := env.Service.CreateImage(ctx, env.User, project, spec, env.Stderr)
	if err != nil {
		if errors.Is(err, session.ErrImageExists) || errors.Is(err, session.ErrHasDockerfile) {
			return fmt.Errorf("%w; to change it: %s", err, env.hint("image-update "+project+" --add PKGS"))
		}
		return err
	}
	env.notef("image %s built in %.1f s (%s); connect with: ssh %s@%s", project, res.Duration.Seconds(), shortID(res.ImageID), project, env.Host)
	return nil
}

func imageUpdate() *command {
	return &command{
		name: "image-update", args: "<project>", minArgs: 1, maxArgs: 1,
		summary: "Change a project's image: add or remove packages, or rebuild it.\n" +
			"Packages go into marked blocks of /workspace/Dockerfile; your own lines stay.\n" +
			"The Dockerfile changes only if the build succeeds. With no options on a terminal, a menu.",
		flags: []flagSpec{
			addFlag, addSystemFlag, reqFlag,
			{name: "--remove", kind: listFlag, arg: "PKGS", help: "remove pip or apt packages"},
			{name: "--dockerfile", kind: valueFlag, arg: "-", help: "replace the Dockerfile with stdin"},
			{name: "--rebuild", kind: boolFlag, help: "build again (e.g. after editing the Dockerfile yourself)"},
			{name: "--no-cache", kind: boolFlag, help: "build every step afresh"},
		},
		run: runImageUpdate,
	}
}

func runImageUpdate(ctx context.Context, env *Env, p *parsed) error {
	project := p.args[0]
	if err := session.ValidateProject(project, env.Login); err != nil {
		return err
	}
	c := session.Change{Reason: reason("image-update", p), NoCache: p.bools["--no-cache"], Rebuild: p.bools["--rebuild"] || p.bools["--no-cache"]}
	switch {
	case p.has("--dockerfile"):
		if p.has("--add") || p.has("--add-system") || p.has("--remove") || p.has("--requirements") {
			return usagef("--dockerfile replaces the whole file: use it alone")
		}
		df, err := dockerfileFromStdin(env, p.value("--dockerfile"))
		if err != nil {
			return err
		}
		c.Edit = func([]byte) ([]byte, error) { return df, nil }
	case p.has("--add") || p.has("--add-system") || p.has("--remove") || p.has("--requirements"):
		pip, sys, err := packagesFromFlags(ctx, env, p, project)
		if err != nil {
			return err
		}
		remove, err := removeNames(p.list("--remove"))
		if err != nil {
			return err
		}
		c.Edit = packageEdit(pip, sys, remove)
	case c.Rebuild:
	case env.Prompt != nil:
		return updateMenu(ctx, env, project, c)
	default:
		return usagef("nothing to do: give --add, --add-system, --remove, -r, --dockerfile or --rebuild (or use ssh -t for a menu)")
	}
	return applyChange(ctx, env, project, c)
}

// applyChange runs the change and tells the user what became of it.
func applyChange(ctx context.Context, env *Env, project string, c session.Change) error {
	res, err := env.Service.UpdateImage(ctx, env.User, project, c, env.Stderr)
	if errors.Is(err, session.ErrNoChange) {
		env.notef("nothing to change: the Dockerfile already says so (--rebuild builds it again)")
		return nil
	}
	if err != nil {
		return err
	}
	what := "rebuilt"
	if res.Changed {
		what = "updated; previous Dockerfile kept as /workspace/Dockerfile.bak"
	}
	env.notef("image %s %s (%.1f s, %s)", project, what, res.Duration.Seconds(), shortID(res.ImageID))
	if res.Running {
		env.notef("container %s still runs the previous image; to switch: %s, then connect again", project, env.hint("container-retire "+project))
	}
	return nil
}

// packagesFromFlags validates --add, --add-system and -r; nothing the user
// typed reaches the Dockerfile unless every package parses.
func packagesFromFlags(ctx context.Context, env *Env, p *parsed, project string) (pip, sys []image.Package, err error) {
	if w := p.list("--add"); len(w) > 0 {
		if pip, err = image.ParseList(image.Pip, strings.Join(w, " ")); err != nil {
			return nil, nil, usageError{err.Error()}
		}
	}
	if w := p.list("--add-system"); len(w) > 0 {
		if sys, err = image.ParseList(image.System, strings.Join(w, " ")); err != nil {
			return nil, nil, usageError{err.Error()}
		}
	}
	if src := p.value("--requirements"); src != "" {
		data, err := readRequirements(ctx, env, src, project)
		if err != nil {
			return nil, nil, err
		}
		reqs, err := image.ParseRequirements(data)
		if err != nil {
			return nil, nil, usageError{err.Error()}
		}
		pip = image.Merge(pip, reqs)
	}
	return pip, sys, nil
}

// maxInput bounds what a command reads from stdin.
const maxInput = 1 << 20

// maxDockerfileInput bounds a Dockerfile or requirements list read from
// stdin: either becomes (part of) a Dockerfile, which has this bound.
const maxDockerfileInput = image.MaxDockerfile

func readRequirements(ctx context.Context, env *Env, src, project string) ([]byte, error) {
	if src == "-" {
		if env.Stdin == nil {
			return nil, usagef("-r - reads stdin, which the shell does not have: %s", env.hint("image-update PROJECT -r - < requirements.txt"))
		}
		return readLimited(env.Stdin)
	}
	rel := path.Clean(strings.TrimPrefix(strings.TrimPrefix(src, "/workspace"), "/"))
	if rel == "." || strings.HasPrefix(rel, "../") || rel == ".." {
		return nil, usagef("-r %s: name a file in the project's workspace, or - for stdin", src)
	}
	data, err := env.Service.ReadProjectFile(ctx, env.User, project, rel)
	var pe *fs.PathError
	if errors.As(err, &pe) {
		err = pe.Err // the path is the user's own, said once
	}
	if err != nil {
		return nil, fmt.Errorf("-r %s: %w", src, err)
	}
	return data, nil
}

func readLimited(r io.Reader) ([]byte, error) {
	data, err := io.ReadAll(io.LimitReader(r, maxDockerfileInput+1))
	if err != nil {
		return nil, err
	}
	if len(data) > maxDockerfileInput {
		return nil, usagef("the input on stdin is larger than %d KiB", maxDockerfileInput>>10)
	}
	return data, nil
}

func dockerfileFromStdin(env *Env, src string) ([]byte, error) {
	if src != "-" {
		return nil, usagef("--dockerfile takes - (stdin); to use a file of the workspace, edit /workspace/Dockerfile and --rebuild")
	}
	if env.Stdin == nil {
		return nil, usagef("--dockerfile - reads stdin, which the shell does not have: %s", env.hint("image-update PROJECT --dockerfile - < Dockerfile"))
	}
	df, err := readLimited(env.Stdin)
	if err != nil {
		return nil, err
	}
	if !utf8.Valid(df) || bytes.IndexByte(df, 0) >= 0 {
		return nil, usagef("the Dockerfile on stdin is not text")
	}
	if !image.HasFrom(df) {
		return nil, usagef("the Dockerfile on stdin has no FROM line")
	}
	return df, nil
}

// removeNames checks the names given to --remove: each must be a package
// name of either kind.
func removeNames(words []string) ([]string, error) {
	for _, w := range words {
		_, perr := image.ParsePip(w)
		_, aerr := image.ParseApt(w)
		if perr != nil && aerr != nil {
			return nil, usagef("--remove: %q is not a package name", w)
		}
	}
	return words, nil
}

// packageEdit adds and removes packages in the Dockerfile's marked blocks.
func packageEdit(pip, sys []image.Package, remove []string) func([]byte) ([]byte, error) {
	return func(df []byte) ([]byte, error) {
		curPip, _, err := image.Packages(df, image.Pip)
		if err != nil {
			return nil, err
		}
		curSys, _, err := image.Packages(df, image.System)
		if err != nil {
			return nil, err
		}
		newPip, newSys := image.Merge(curPip, pip), image.Merge(curSys, sys)
		if len(remove) > 0 {
			var missPip, missSys []string
			newPip, missPip = image.Remove(image.Pip, newPip, remove)
			newSys, missSys = image.Remove(image.System, newSys, remove)
			for _, n := range remove {
				if contains(missPip, n) && contains(missSys, n) {
					return nil, fmt.Errorf("%q is not among the Dockerfile's packages (image-show lists them)", n)
				}
			}
		}
		if !samePackages(curSys, newSys) {
			if df, err = image.WithPackages(df, image.System, newSys); err != nil {
				return nil, err
			}
		}
		if !samePackages(curPip, newPip) {
			if df, err = image.WithPackages(df, image.Pip, newPip); err != nil {
				return nil, err
			}
		}
		return df, nil
	}
}

func samePackages(a, b []image.Package) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}

func contains(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}

// reason is the command line recorded with a build, as the user typed it.
func reason(name string, p *parsed) string {
	return strings.TrimSpace(name + " " + strings.Join(p.words, " "))
}

func shortID(id string) string {
	id = strings.TrimPrefix(id, "sha256:")
	if len(id) > 12 {
		id = id[:12]
	}
	return id
}
