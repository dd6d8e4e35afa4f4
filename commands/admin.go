package commands

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"unicode"
	"unicode/utf8"

	"github.com/ds01/ds01-gateway/session"
)

// Admins (Env.Admin, the config's admin_group) act across users: the
// commands and flags marked admin are refused to everyone else with one
// line and exit 1. Each admin action records an admin.<action> event
// naming the admin (session.Admin does).

// errNotAdmin is the refusal of an admin command or flag.
var errNotAdmin = errors.New("only admins may do that")

// allowed refuses a non-admin an admin command or flag.
func (c *command) allowed(env *Env, p *parsed) error {
	if env.Admin {
		return nil
	}
	if c.admin {
		return errNotAdmin
	}
	for _, f := range c.flags {
		if f.admin && p.has(f.name) {
			return fmt.Errorf("%s: %w", f.name, errNotAdmin)
		}
	}
	return nil
}

// maxAnnouncement bounds an announcement: it is one line on every
// session's terminal and in every alerts file.
const maxAnnouncement = 500

// announcement checks the text of an announcement: one line of printable
// text, bounded, as it lands on other people's terminals.
func announcement(words []string) (string, error) {
	text := strings.TrimSpace(strings.Join(words, " "))
	switch {
	case text == "":
		return "", usagef("the announcement is empty")
	case !utf8.ValidString(text):
		return "", usagef("the announcement is not UTF-8 text")
	case utf8.RuneCountInString(text) > maxAnnouncement:
		return "", usagef("the announcement is longer than %d characters", maxAnnouncement)
	}
	for _, r := range text {
		// Control characters (escape sequences, newlines) would let an
		// announcement rewrite other people's terminals or fake a line.
		if unicode.IsControl(r) || r == '\u2028' || r == '\u2029' || unicode.Is(unicode.Bidi_Control, r) {
			return "", usagef("the announcement contains a control character (%U)", r)
		}
	}
	return text, nil
}

func announce() *command {
	return &command{
		name: "announce", args: "<text>", minArgs: 1, maxArgs: maxAnnouncement, admin: true,
		summary: "Admins: write a ds01: line to every open container session and each running project's .ds01-alerts.\n" +
			"Quote the text twice over ssh: ssh ds01@host 'announce \"reboot at 18:00\"'.",
		run: func(ctx context.Context, env *Env, p *parsed) error {
			text, err := announcement(p.args)
			if err != nil {
				return err
			}
			res := env.Service.Announce(ctx, env.User, text)
			env.notef("announced to %d open session(s) and %d .ds01-alerts file(s)", res.Sessions, res.Files)
			if res.Failed > 0 {
				env.notef("%d workspace(s) could not take the alerts line (see the gateway log)", res.Failed)
			}
			return nil
		},
	}
}

func userList() *command {
	return &command{
		name: "user-list", aliases: []string{"users"}, flags: []flagSpec{formatFlag}, admin: true,
		summary: "Admins: every account: uid, group, keys, projects, running containers.",
		run: func(ctx context.Context, env *Env, p *parsed) error {
			us, err := env.Service.Users(ctx)
			if err != nil {
				return err
			}
			env.Service.Audit(ctx, env.User, "user_list", nil)
			if isJSON(p) {
				type userJSON struct {
					Name       string   `json:"name"`
					UID        int      `json:"uid"`
					GID        int      `json:"gid"`
					Group      string   `json:"group"`
					Keys       int      `json:"keys"`
					Projects   []string `json:"projects"`
					Containers int      `json:"containers_running"`
				}
				return writeJSONList(env.Stdout, us, func(u session.UserInfo) userJSON {
					return userJSON{u.Name, u.UID, u.GID, u.Group, u.Keys, append([]string{}, u.Projects...), u.Containers}
				})
			}
			tw := table(env.Stdout)
			fmt.Fprintln(tw, "USER\tUID\tGID\tGROUP\tKEYS\tRUNNING\tPROJECTS")
			for _, u := range us {
				fmt.Fprintf(tw, "%s\t%d\t%d\t%s\t%d\t%d\t%s\n", u.Name, u.UID, u.GID, orDash(u.Group), u.Keys, u.Containers, orDash(strings.Join(u.Projects, ",")))
			}
			return tw.Flush()
		},
	}
}

// retireOther is container-retire USER/PROJECT, an admin's.
func retireOther(ctx context.Context, env *Env, target string) error {
	if !env.Admin {
		return fmt.Errorf("%s: %w (your own: container-retire PROJECT)", target, errNotAdmin)
	}
	user, project, _ := strings.Cut(target, "/")
	if err := session.ValidateUser(user); err != nil {
		return err
	}
	if err := session.ValidateProject(project, ""); err != nil {
		return err
	}
	if err := env.Service.RetireUserContainer(ctx, env.User, user, project); err != nil {
		return err
	}
	env.notef("container %s/%s retired; its open sessions were told that an admin did it", user, project)
	return nil
}
