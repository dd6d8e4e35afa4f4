package lifecycle

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"strings"
	"time"
	"unicode"

	"go.yaml.in/yaml/v3"
)

// Exemption is what one user is exempt from now.
type Exemption struct {
	Idle    bool      // idle_timeout_h: never stopped for idleness
	Runtime bool      // max_runtime_h: no maximum runtime
	Until   time.Time // the last day (UTC midnight) it holds; zero = no end
	Reason  string
}

// Exemptions is a parsed lifecycle-exemptions.yaml; read-only once loaded.
// A nil *Exemptions exempts nobody.
type Exemptions struct {
	entries []exemptionEntry
}

type exemptionEntry struct {
	user          string
	idle, runtime bool
	until         time.Time // zero: no expiry
	reason        string
}

// LoadExemptions reads DS01's lifecycle-exemptions.yaml: a list (top level,
// or under "exemptions:") of entries
//
//   - username: alice
//     exempt_from: [idle_timeout_h, max_runtime_h]
//     expires_on: "2027-01-31"   # or a bare YAML date; no key = no end
//     reason: thesis deadline
//
// A bare date works here (DS01 silently ignores it). A missing file means no
// exemptions. Errors name the file and the entry. Other keys in an entry
// are ignored, but "expires" is an error: read as no expiry, that typo would
// exempt the user forever.
func LoadExemptions(path string) (*Exemptions, error) {
	data, err := os.ReadFile(path)
	if errors.Is(err, fs.ErrNotExist) {
		return &Exemptions{}, nil
	}
	if err != nil {
		return nil, fmt.Errorf("exemptions file: %w", err)
	}
	e, err := ParseExemptions(data)
	if err != nil {
		return nil, fmt.Errorf("exemptions file %s: %w", path, err)
	}
	return e, nil
}

// ParseExemptions parses the content of a lifecycle-exemptions.yaml.
func ParseExemptions(data []byte) (*Exemptions, error) {
	var doc any
	if err := yaml.Unmarshal(data, &doc); err != nil {
		return nil, err
	}
	if m, ok := doc.(map[string]any); ok {
		list, found := m["exemptions"]
		if !found {
			return nil, errors.New("top level: want a list of exemptions (or exemptions: with one)")
		}
		doc = list
	}
	if doc == nil {
		return &Exemptions{}, nil // empty, or comments only
	}
	list, ok := doc.([]any)
	if !ok {
		return nil, fmt.Errorf("top level: want a list of exemptions, got %s", describe(doc))
	}
	e := &Exemptions{}
	for i, item := range list {
		ent, err := parseExemption(item)
		if err != nil {
			where := fmt.Sprintf("entry %d", i+1)
			if ent.user != "" {
				where += " (" + ent.user + ")"
			}
			return nil, fmt.Errorf("%s: %w", where, err)
		}
		e.entries = append(e.entries, ent)
	}
	return e, nil
}

func parseExemption(item any) (exemptionEntry, error) {
	var ent exemptionEntry
	m, ok := item.(map[string]any)
	if !ok {
		return ent, fmt.Errorf("want a mapping with username and exempt_from, got %s", describe(item))
	}
	switch u := m["username"].(type) {
	case string:
		ent.user = strings.TrimSpace(u)
	case int:
		ent.user = fmt.Sprint(u) // an all-digit user name (a student ID)
	}
	if ent.user == "" {
		return ent, fmt.Errorf("username: want a user name, got %s", describe(m["username"]))
	}
	from, ok := m["exempt_from"].([]any)
	if !ok || len(from) == 0 {
		return ent, fmt.Errorf("exempt_from: want a list of idle_timeout_h and/or max_runtime_h, got %s", describe(m["exempt_from"]))
	}
	for _, f := range from {
		switch f {
		case "idle_timeout_h", "idle_timeout":
			ent.idle = true
		case "max_runtime_h", "max_runtime":
			ent.runtime = true
		default:
			return ent, fmt.Errorf("exempt_from: unknown limit %s: want idle_timeout_h or max_runtime_h", describe(f))
		}
	}
	if _, typo := m["expires"]; typo {
		return ent, errors.New(`"expires": did you mean expires_on?`)
	}
	switch x := m["expires_on"].(type) {
	case nil:
	case time.Time: // a bare YAML date
		y, mo, d := x.UTC().Date()
		ent.until = time.Date(y, mo, d, 0, 0, 0, 0, time.UTC)
	case string:
		t, err := time.Parse(time.DateOnly, strings.TrimSpace(x))
		if err != nil {
			return ent, fmt.Errorf("expires_on: want a date like 2027-01-31, got %s", describe(x))
		}
		ent.until = t
	default:
		return ent, fmt.Errorf("expires_on: want a date like 2027-01-31, got %s", describe(x))
	}
	if r, ok := m["reason"].(string); ok {
		ent.reason = oneLine(r)
	}
	return ent, nil
}

// For is user's exemption at now. An entry holds through the whole UTC day
// of its expires_on. Several entries of one user add up; Until is then the
// earliest end and Reason the first given.
func (e *Exemptions) For(user string, now time.Time) Exemption {
	var out Exemption
	if e == nil {
		return out
	}
	for _, ent := range e.entries {
		if ent.user != user || !ent.until.IsZero() && !now.Before(ent.until.AddDate(0, 0, 1)) {
			continue
		}
		out.Idle = out.Idle || ent.idle
		out.Runtime = out.Runtime || ent.runtime
		if !ent.until.IsZero() && (out.Until.IsZero() || ent.until.Before(out.Until)) {
			out.Until = ent.until
		}
		if out.Reason == "" {
			out.Reason = ent.reason
		}
	}
	return out
}

// oneLine keeps an admin's reason to one line of printable text, since it
// is shown in the user's terminal.
func oneLine(s string) string {
	s = strings.Map(func(r rune) rune {
		if unicode.IsControl(r) {
			return ' '
		}
		return r
	}, s)
	return strings.Join(strings.Fields(s), " ")
}

func describe(v any) string {
	switch x := v.(type) {
	case nil:
		return "nothing"
	case string:
		return fmt.Sprintf("%q", x)
	case []any:
		return "a list"
	case map[string]any:
		return "a mapping"
	}
	return fmt.Sprint(v)
}
