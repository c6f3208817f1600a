package deadline_test

import (
	"sync/atomic"
	"testing"
)

// BenchmarkRescheduleParallel moves random entries of a heap of 1M from
// GOMAXPROCS goroutines at once, as sessions reauthenticating on their own
// read goroutines do: it measures the Scheduler's single lock under
// contention. Compare with BenchmarkReschedule/random, its one-goroutine
// counterpart.
func BenchmarkRescheduleParallel(b *testing.B) {
	h := newBenchHeap(b)
	var next atomic.Int64
	b.ReportAllocs()
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		// Each goroutine walks its own part of the operand table.
		i := int(next.Add(1)) * (benchTable / 64)
		for pb.Next() {
			j := i % benchTable
			h.s.Schedule(&h.sessions[h.idx[j]].expiry, h.ats[j], benchNop)
			i++
		}
	})
}
