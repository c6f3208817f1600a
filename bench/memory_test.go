package bench_test

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"testing"

	"github.com/wsauth/wsauth/bench/internal/loadgen"
)

// BenchmarkIdleMemory measures the server's memory per idle connection:
// authenticated wsauth sessions against idle gws connections. The clients
// run in a child process (this test binary, running TestBenchIdleChild), so
// only the server's memory is counted: the growth of this process's live
// heap, goroutine stacks and RSS, after a GC, divided by the connections.
// 1,000 connections by default, 10,000 with -wsauth.heavy.
//
// Metrics per connection: heap, stack and RSS bytes of each target; x-gws
// is wsauth's heap+stack over gws's (goal <= 1.3) and own-B/conn the
// difference, wsauth's own state (goal < 10 KiB).
func BenchmarkIdleMemory(b *testing.B) {
	n := 1000
	if *heavy {
		n = 10000
	}
	// The child holds n client sockets, this process n server sockets.
	if limit, err := loadgen.RaiseFileLimit(uint64(n) + 512); err != nil || limit < uint64(n)+512 {
		n = max(int(limit)-512, 10)
		b.Logf("RLIMIT_NOFILE is %d (%v): measuring %d connections", limit, err, n)
	}
	t := startTargets(b, loadgen.ServerOptions{})
	b.Run(fmt.Sprintf("conns=%d", n), func(b *testing.B) {
		ctx := benchCtx(b)
		child := func() *exec.Cmd {
			return exec.CommandContext(ctx, os.Args[0], "-test.run=^TestBenchIdleChild$", "-test.bench=^$", "-test.count=1")
		}
		var res [2]loadgen.IdleResult
		for i := range b.N {
			// Alternate which target goes first.
			for j := range 2 {
				k := (i + j) % 2
				srv := [2]*loadgen.Server{t.raw, t.ws}[k]
				r, err := loadgen.MeasureIdle(ctx, srv, n, child)
				if err != nil {
					b.Fatalf("%s: %v", srv.Kind, err)
				}
				res[k].Heap += r.Heap / float64(b.N)
				res[k].Stack += r.Stack / float64(b.N)
				res[k].RSS += r.RSS / float64(b.N)
			}
		}
		gws, ws := res[0], res[1]
		b.ReportMetric(gws.Heap, "gws-heap-B/conn")
		b.ReportMetric(gws.Stack, "gws-stack-B/conn")
		b.ReportMetric(gws.RSS, "gws-rss-B/conn")
		b.ReportMetric(ws.Heap, "wsauth-heap-B/conn")
		b.ReportMetric(ws.Stack, "wsauth-stack-B/conn")
		b.ReportMetric(ws.RSS, "wsauth-rss-B/conn")
		b.ReportMetric((ws.Heap+ws.Stack)/(gws.Heap+gws.Stack), "x-gws")
		b.ReportMetric(ws.RSS/gws.RSS, "rss-x-gws")
		b.ReportMetric(ws.Heap+ws.Stack-gws.Heap-gws.Stack, "own-B/conn")
	})
}

// TestBenchIdleChild is the client side of BenchmarkIdleMemory; it only
// runs in the child process the benchmark starts.
func TestBenchIdleChild(t *testing.T) {
	if !loadgen.IsIdleChild() {
		t.Skip("only runs as BenchmarkIdleMemory's child process")
	}
	if err := loadgen.RunIdleChild(context.Background(), os.Stdin, os.Stdout); err != nil {
		t.Fatal(err)
	}
}
