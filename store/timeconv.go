package store

import "time"

// Times are stored as unix nanoseconds so they sort and compare as integers
// in SQL. The zero time.Time maps to 0 (its own UnixNano overflows) so that
// "unset" survives a round trip.
func toNanos(t time.Time) int64 {
	if t.IsZero() {
		return 0
	}
	return t.UnixNano()
}

func fromNanos(n int64) time.Time {
	if n == 0 {
		return time.Time{}
	}
	return time.Unix(0, n).UTC()
}

// orNow returns t, or the current time when t is unset, so callers need not
// fill CreatedAt themselves.
func orNow(t time.Time) time.Time {
	if t.IsZero() {
		return time.Now()
	}
	return t
}
