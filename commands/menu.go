package commands

import (
	"context"
	"fmt"
	"strings"

	"github.com/ds01/ds01-gateway/session"
	"github.com/ds01/ds01-gateway/session/image"
)

// updateMenu is DS01's interactive image-update: pick what to do, give the
// packages, and the image is rebuilt.
func updateMenu(ctx context.Context, env *Env, project string, c session.Change) error {
	if _, err := env.Service.Project(ctx, env.User, project); err != nil {
		return err
	}
	for {
		fmt.Fprintf(env.Stdout, "\nimage-update %s:\n", project)
		for i, item := range menuItems {
			fmt.Fprintf(env.Stdout, "  %d) %s\n", i+1, item)
		}
		choice, err := env.Prompt("choice [1-8]: ")
		if err != nil {
			return nil // ^D: same as cancel
		}
		switch strings.TrimSpace(choice) {
		case "1":
			if err := listPackages(ctx, env, project); err != nil {
				return err
			}
		case "2", "4":
			kind, what := image.Pip, "pip packages"
			if strings.TrimSpace(choice) == "4" {
				kind, what = image.System, "apt packages"
			}
			line, err := env.Prompt(what + " (space-separated): ")
			if err != nil || strings.TrimSpace(line) == "" {
				continue
			}
			pkgs, err := image.ParseList(kind, line)
			if err != nil {
				env.notef("%v", err)
				continue
			}
			if kind == image.Pip {
				c.Edit = packageEdit(pkgs, nil, nil)
			} else {
				c.Edit = packageEdit(nil, pkgs, nil)
			}
			c.Reason = fmt.Sprintf("image-update %s (menu) add %s", project, line)
			return applyChange(ctx, env, project, c)
		case "3":
			fmt.Fprintln(env.Stdout, "Paste requirements.txt, then an empty line:")
			var b strings.Builder
			for {
				l, err := env.Prompt("")
				if err != nil || strings.TrimSpace(l) == "" {
					break
				}
				b.WriteString(l + "\n")
			}
			reqs, err := image.ParseRequirements([]byte(b.String()))
			if err != nil {
				env.notef("%v", err)
				continue
			}
			c.Edit = packageEdit(reqs, nil, nil)
			c.Reason = fmt.Sprintf("image-update %s (menu) requirements", project)
			return applyChange(ctx, env, project, c)
		case "5":
			line, err := env.Prompt("packages to remove: ")
			if err != nil || strings.TrimSpace(line) == "" {
				continue
			}
			names, err := removeNames(strings.Fields(line))
			if err != nil {
				env.notef("%v", err)
				continue
			}
			c.Edit = packageEdit(nil, nil, names)
			c.Reason = fmt.Sprintf("image-update %s (menu) remove %s", project, line)
			return applyChange(ctx, env, project, c)
		case "6":
			df, err := env.Service.Dockerfile(ctx, env.User, project)
			if err != nil {
				return err
			}
			if _, err := env.Stdout.Write(df); err != nil {
				return err
			}
		case "7":
			c.Rebuild, c.Reason = true, fmt.Sprintf("image-update %s (menu) rebuild", project)
			return applyChange(ctx, env, project, c)
		case "8", "q", "":
			env.notef("cancelled; nothing changed")
			return nil
		default:
			env.notef("pick a number from 1 to 8")
		}
	}
}

var menuItems = []string{
	"list packages",
	"add pip packages",
	"import requirements.txt",
	"add system (apt) packages",
	"remove packages",
	"show Dockerfile",
	"rebuild",
	"cancel",
}

func listPackages(ctx context.Context, env *Env, project string) error {
	df, err := env.Service.Dockerfile(ctx, env.User, project)
	if err != nil {
		return err
	}
	for _, k := range []image.Kind{image.Pip, image.System} {
		pkgs, _, err := image.Packages(df, k)
		if err != nil {
			env.notef("%v", err)
			continue
		}
		specs := make([]string, 0, len(pkgs))
		for _, p := range pkgs {
			specs = append(specs, p.Spec)
		}
		if len(specs) == 0 {
			specs = []string{"(none)"}
		}
		fmt.Fprintf(env.Stdout, "%s: %s\n", k, strings.Join(specs, " "))
	}
	return nil
}
