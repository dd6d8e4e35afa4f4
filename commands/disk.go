package commands

import (
	"context"
	"fmt"

	"github.com/ds01/ds01-gateway/session"
)

// Disk reports what the users hold on disk; *session.Disk implements it.
type Disk interface {
	DiskUsage(ctx context.Context) (session.DiskReport, error)
}

func diskUsage() *command {
	return &command{
		name: "disk-usage", flags: []flagSpec{formatFlag}, admin: true,
		summary: "Admins: disk used per user by images and workspaces, and the build cache.",
		run: func(ctx context.Context, env *Env, p *parsed) error {
			rep, err := env.Service.DiskUsage(ctx)
			if err != nil {
				return err
			}
			var tot diskJSON
			for _, u := range rep.Users {
				tot.Images += u.Images
				tot.ImageBytes += u.ImageBytes
				tot.Workspaces += u.Workspaces
				tot.WorkspaceBytes += u.WorkspaceBytes
				tot.Partial = tot.Partial || u.Partial
			}
			if isJSON(p) {
				users := make([]diskJSON, 0, len(rep.Users))
				for _, u := range rep.Users {
					users = append(users, diskJSON{u.User, u.UID, u.Removed, u.Images, u.ImageBytes, u.Workspaces, u.WorkspaceBytes, u.Partial})
				}
				var cache *int64
				if rep.BuildCacheErr == "" {
					cache = &rep.BuildCache
				}
				return writeJSON(env.Stdout, struct {
					Users           []diskJSON `json:"users"`
					BuildCacheBytes *int64     `json:"build_cache_bytes"`
					Total           diskJSON   `json:"total"`
				}{users, cache, tot})
			}
			tw := table(env.Stdout)
			fmt.Fprintln(tw, "USER\tUID\tIMAGES\tIMAGE SIZE\tWORKSPACES\tWORKSPACE SIZE")
			for _, u := range rep.Users {
				name := u.User
				if u.Removed {
					name += " (removed)"
				}
				fmt.Fprintf(tw, "%s\t%d\t%d\t%s\t%d\t%s\n", name, u.UID, u.Images, size(u.ImageBytes), u.Workspaces, atLeast(u.WorkspaceBytes, u.Partial))
			}
			fmt.Fprintf(tw, "TOTAL\t\t%d\t%s\t%d\t%s\n", tot.Images, size(tot.ImageBytes), tot.Workspaces, atLeast(tot.WorkspaceBytes, tot.Partial))
			if err := tw.Flush(); err != nil {
				return err
			}
			if rep.BuildCacheErr != "" {
				fmt.Fprintf(env.Stdout, "build cache: unknown (%s)\n", rep.BuildCacheErr)
			} else {
				fmt.Fprintf(env.Stdout, "build cache: %s (the engine's, shared by all)\n", size(rep.BuildCache))
			}
			fmt.Fprintln(env.Stdout, "Image sizes count the layers images share in each image; >= marks a workspace walk that timed out or could not read everything.")
			return nil
		},
	}
}

// diskJSON is one user's row, or the total (without user and uid).
type diskJSON struct {
	User           string `json:"user,omitempty"`
	UID            int    `json:"uid,omitempty"`
	Removed        bool   `json:"removed,omitempty"`
	Images         int    `json:"images"`
	ImageBytes     int64  `json:"image_bytes"`
	Workspaces     int    `json:"workspaces"`
	WorkspaceBytes int64  `json:"workspace_bytes"`
	// Partial: WorkspaceBytes is a lower bound.
	Partial bool `json:"partial"`
}

// atLeast shows a size that may be a lower bound.
func atLeast(n int64, partial bool) string {
	if partial {
		return ">= " + size(n)
	}
	return size(n)
}
