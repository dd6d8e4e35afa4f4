package gpu

import (
	"fmt"
	"math"
	"strconv"
	"time"
)

// The limits file's lifecycle keys (issue 11). Unlike the resource limits,
// each has a fallback outside the file, the gateway's lifecycle block, so
// Limits carries them as Opt values that tell "not in the file" from null.

// Opt is a limits-file value with a fallback elsewhere. Set is false when no
// tier of the file names the key (use the fallback); Never is true for an
// explicit null (or "unlimited"); otherwise V holds the value. A tier that
// names the key overrides the tiers below it, null included.
type Opt[T any] struct {
	Set, Never bool
	V          T
}

// limitResourceFields counts the resource limits at the head of
// limitFields; the lifecycle keys follow them.
const limitResourceFields = 7

// limitMaxHours keeps an hours value inside time.Duration (about 292 years).
const limitMaxHours = 1e6

// limitHoursField is a DS01 "_h" key: hours as a float, null for never.
func limitHoursField(key, never string, field func(*Limits) *Opt[time.Duration]) limitField {
	return limitField{
		key: key,
		parse: func(p string, v any, l *Limits) error {
			h, ok := limitToFloat(v)
			if !ok || h < 0 || h > limitMaxHours {
				return fmt.Errorf("%s: want hours from 0 to %g (0.5 = 30 minutes) or null for %s, got %s", p, float64(limitMaxHours), never, limitDescribeValue(v))
			}
			// Milliseconds: short test timeouts written in hours (20 s =
			// 0.00555...) come out whole.
			*field(l) = Opt[time.Duration]{Set: true, V: time.Duration(math.Round(h*3600e3)) * time.Millisecond}
			return nil
		},
		null: func(_ string, l *Limits) error {
			*field(l) = Opt[time.Duration]{Set: true, Never: true}
			return nil
		},
		copy: func(d, s *Limits) { *field(d) = *field(s) },
		show: func(l Limits) string {
			o := *field(&l)
			switch {
			case !o.Set:
				return limitNotSet
			case o.Never:
				return never
			}
			return strconv.FormatFloat(o.V.Hours(), 'f', -1, 64)
		},
	}
}

// limitPercentField is a utilisation threshold in percent; most <= 0 means
// no upper bound (CPU percent is of one core, so 150 is 1.5 cores). A null
// has no sensible meaning for a threshold, so it is an error.
func limitPercentField(key string, most float64, field func(*Limits) *Opt[float64]) limitField {
	want := "a percent >= 0"
	if most > 0 {
		want = fmt.Sprintf("a percent from 0 to %g", most)
	}
	return limitField{
		key: key,
		parse: func(p string, v any, l *Limits) error {
			f, ok := limitToFloat(v)
			if !ok || f < 0 || most > 0 && f > most {
				return fmt.Errorf("%s: want %s, got %s", p, want, limitDescribeValue(v))
			}
			*field(l) = Opt[float64]{Set: true, V: f}
			return nil
		},
		null: func(p string, _ *Limits) error {
			return fmt.Errorf("%s: want %s, got null (leave the key out to use the gateway's setting)", p, want)
		},
		copy: func(d, s *Limits) { *field(d) = *field(s) },
		show: func(l Limits) string {
			o := *field(&l)
			if !o.Set {
				return limitNotSet
			}
			return strconv.FormatFloat(o.V, 'f', -1, 64)
		},
	}
}

// limitNotSet is what Describe shows for a lifecycle key no tier sets.
const limitNotSet = "not set (gateway setting)"
