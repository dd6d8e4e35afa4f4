package cgroup

import (
	"testing"
)

// BenchmarkSweep100 is one sampling sweep of 100 idle containers (init and
// keeper, no user process) on each cgroup layout; the budget is
// 50 ms of gateway CPU per sweep. bench/run.sh measures the same against
// 100 real containers.
func BenchmarkSweep100(b *testing.B) {
	for _, kind := range []string{"v1", "v2-systemd"} {
		b.Run(kind, func(b *testing.B) {
			h := newFakeHost(b, kind)
			readers := make([]*Reader, 100)
			for i := range readers {
				c := h.container(i)
				if i%10 == 0 {
					c.proc(c.init+2, c.init, 'S', 500) // a detached job
				}
				r, err := Open(h.fs, c.init, c.id)
				if err != nil {
					b.Fatal(err)
				}
				readers[i] = r
			}
			b.ReportAllocs()
			b.ResetTimer()
			for b.Loop() {
				for _, r := range readers {
					if _, err := r.Sample(); err != nil {
						b.Fatal(err)
					}
				}
			}
		})
	}
}
