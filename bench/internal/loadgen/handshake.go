package loadgen

import (
	"context"
	"math"
	"sync"
	"sync/atomic"
	"time"
)

// Handshakes opens connections to t and closes them again, workers at a
// time, n in all (or, with n == 0, for d). One handshake is TCP connect,
// the WebSocket upgrade, the auth frame and auth_ok (the hello frame for
// the gws baseline); its latency is measured up to auth_ok, the close after
// it is not. Worker w authenticates as subject "bench-<w mod Subjects>"
// with the same token every time.
func Handshakes(ctx context.Context, t Target, n int64, d time.Duration, workers int, opts DialOptions, progress Progress) (Stats, error) {
	workers = max(workers, 1)
	p := newPool(t, workers, opts)
	if n <= 0 {
		n = math.MaxInt64
	}
	// The phase only carries run's deadline, progress and end: echo-like, run
	// waits for the workers after the deadline.
	ph := newPhase(phaseEcho, 0)
	var claimed, done atomic.Int64
	var wg sync.WaitGroup
	start, allocs := time.Now(), heapObjects()
	for w := range workers {
		wg.Go(func() {
			for !ph.stopped.Load() && claimed.Add(1) <= n {
				t0 := time.Now()
				c, err := p.dial(ctx, w)
				if err != nil {
					ph.abort(err)
					return
				}
				ph.hist.Record(time.Since(t0))
				done.Add(1)
				c.Close()
			}
		})
	}
	finished := make(chan struct{})
	go func() {
		wg.Wait()
		ph.finish()
		close(finished)
	}()
	err := p.run(ctx, ph, start, d, progress, func() uint64 { return uint64(done.Load()) })
	ph.stopped.Store(true)
	<-finished
	p.wg.Wait()
	return Stats{Msgs: done.Load(), Elapsed: time.Since(start), Hist: ph.hist, Allocs: heapObjects() - allocs}, err
}
