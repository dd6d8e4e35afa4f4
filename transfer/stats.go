package transfer

import "sync/atomic"

// Stats counts payload bytes: In = written into the tree (uploads), Out =
// read from it (downloads).
type Stats struct {
	BytesIn  int64 `json:"bytes_in"`
	BytesOut int64 `json:"bytes_out"`
}

// counters are shared by concurrent SFTP workers.
type counters struct{ in, out atomic.Int64 }

func (c *counters) stats() Stats {
	return Stats{BytesIn: c.in.Load(), BytesOut: c.out.Load()}
}
