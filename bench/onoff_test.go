package bench_test

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/wsauth/wsauth/bench/internal/loadgen"
)

// Indexes of an onOffPair's servers.
const (
	off = iota
	on
)

// onOffPair is two wsauth servers that differ by one setting, off and on
// (BenchmarkMetrics, BenchmarkPerMessageToken), and their client pools by
// size, reused by the benchmark framework's repeated calls with growing
// b.N.
type onOffPair struct {
	setting string // what differs, for errors
	servers [2]*loadgen.Server
	dial    [2]loadgen.DialOptions
	pools   map[int][2]*loadgen.Pool
}

// startOnOffPair starts the two servers, {off, on}, whose clients dial
// with dial[i]; they and their pools close when b ends.
func startOnOffPair(b *testing.B, setting string, opts [2]loadgen.ServerOptions, dial [2]loadgen.DialOptions) *onOffPair {
	b.Helper()
	pp := &onOffPair{setting: setting, dial: dial, pools: make(map[int][2]*loadgen.Pool)}
	// Registered first, run last: the pools close before the servers.
	b.Cleanup(func() {
		for _, pair := range pp.pools {
			pair[off].Close()
			pair[on].Close()
		}
	})
	for i := range pp.servers {
		s, err := loadgen.StartWsauth(opts[i])
		if err != nil {
			b.Fatal(pp.err(i, err))
		}
		b.Cleanup(func() {
			if err := s.Close(); err != nil {
				b.Error(pp.err(i, err))
			}
		})
		pp.servers[i] = s
	}
	return pp
}

// poolPair returns conns connections to each server, {off, on}, having
// checked that both servers answer every message: a refused message gets
// an error frame instead of its echo, and a phase would wait for that
// echo until benchCtx ends.
func (pp *onOffPair) poolPair(b *testing.B, conns int) [2]*loadgen.Pool {
	b.Helper()
	if pair, ok := pp.pools[conns]; ok {
		return pair
	}
	var pair [2]*loadgen.Pool
	for i, s := range pp.servers {
		p, err := loadgen.Dial(benchCtx(b), s.Target(), conns, pp.dial[i])
		if err != nil {
			if i > off {
				pair[off].Close()
			}
			b.Fatal(pp.err(i, err))
		}
		pair[i] = p
	}
	pp.pools[conns] = pair
	ctx, cancel := context.WithTimeout(benchCtx(b), 10*time.Second)
	defer cancel()
	for i, p := range pair {
		if _, err := p.Echo(ctx, int64(2*conns), 64); err != nil {
			b.Fatal(pp.err(i, err))
		}
	}
	return pair
}

// echo measures 64 B echo round trips on conns connections to each
// server, interleaved, and fails if a server answered one with an error
// frame.
func (pp *onOffPair) echo(b *testing.B, conns int) {
	ctx := benchCtx(b)
	pools := pp.poolPair(b, conns)
	b.ResetTimer()
	total := interleaveFine(b, int64(b.N), func(i int, n int64) (loadgen.Stats, error) {
		st, err := pools[i].Echo(ctx, n, 64)
		return st, pp.err(i, err)
	})
	b.StopTimer()
	for i, p := range pools {
		for _, c := range p.Conns {
			if n := c.ErrorFrames.Load(); n > 0 {
				b.Fatal(pp.err(i, fmt.Errorf("connection %d got %d error frames", c.Index, n)))
			}
		}
	}
	reportOnOff(b, total, "msg/s")
}

// err names the server in an error.
func (pp *onOffPair) err(i int, err error) error {
	if err == nil {
		return nil
	}
	return fmt.Errorf("%s %s: %w", pp.setting, [...]string{off: "off", on: "on"}[i], err)
}

// interleaveFine measures n operations on each server in up to 64
// rounds of at least 250 operations, alternating which server goes first
// (interleaveN runs at most 8 rounds): the difference to measure is a
// fraction of a percent, far below the swings of a shared machine's load,
// and shorter rounds spread those more evenly over both servers.
func interleaveFine(b *testing.B, n int64, run func(i int, n int64) (loadgen.Stats, error)) []loadgen.Stats {
	b.Helper()
	rounds := min(max(n/250, 1), 64)
	total := make([]loadgen.Stats, 2)
	for r := range rounds {
		chunk := n / rounds
		if r < n%rounds {
			chunk++
		}
		for k := range 2 {
			i := k ^ int(r%2) // off, on; then on, off
			st, err := run(i, chunk)
			if err != nil {
				b.Fatal(err)
			}
			total[i].Add(st)
		}
	}
	return total
}

// reportOnOff reports the rates of a pair of servers, {off, on}, their
// ratios and their allocations per operation.
func reportOnOff(b *testing.B, total []loadgen.Stats, unit string) {
	offSt, onSt := total[off], total[on]
	b.ReportMetric(offSt.Rate(), "off-"+unit)
	b.ReportMetric(onSt.Rate(), "on-"+unit)
	if offSt.Rate() > 0 {
		b.ReportMetric(onSt.Rate()/offSt.Rate(), "on-x-off")
	}
	if p := offSt.Hist.Quantile(0.99); p > 0 {
		b.ReportMetric(float64(onSt.Hist.Quantile(0.99))/float64(p), "p99-on-x-off")
	}
	b.ReportMetric(offSt.AllocsPerMsg(), "off-allocs/op")
	b.ReportMetric(onSt.AllocsPerMsg(), "on-allocs/op")
}
