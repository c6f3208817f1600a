package prommetrics_test

import (
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/wsauth/wsauth"
	"github.com/wsauth/wsauth/prommetrics"
	"github.com/wsauth/wsauth/protocol"
	"github.com/wsauth/wsauth/session"
)

// events is one Event of every kind, as a server sends them.
var events = []wsauth.Event{
	{Kind: wsauth.Queued, N: 1, Bytes: 64},
	{Kind: wsauth.Sent, N: 1},
	{Kind: wsauth.Received, N: 1},
	{Kind: wsauth.StateChanged, From: session.Active, To: session.Expired},
	{Kind: wsauth.Verified, Stage: "auth", Reason: "", Took: 40 * time.Microsecond},
	{Kind: wsauth.Verified, Stage: "message", Reason: "token expired", Took: 40 * time.Microsecond},
	{Kind: wsauth.Reauthenticated, Took: 2 * time.Second},
	{Kind: wsauth.Overflowed},
	{Kind: wsauth.Undelivered, N: 3},
	{Kind: wsauth.Resumed, N: 2},
	{Kind: wsauth.Closed, Code: protocol.CloseNormal},
	{Kind: wsauth.Refused, Status: 403, Reason: "origin"},
	{Kind: wsauth.BrokerCall, Stage: "Publish", Took: 200 * time.Microsecond},
}

func name(e wsauth.Event) string {
	n := e.Kind.String()
	if e.Kind == wsauth.Verified && e.Reason != "" {
		n += "-refused"
	}
	return n
}

func newObserver(tb testing.TB) *prommetrics.Observer {
	o, err := prommetrics.New(prometheus.NewRegistry(), prommetrics.Options{})
	if err != nil {
		tb.Fatal(err)
	}
	return o
}

// TestObserveDoesNotAllocate: once a series exists, Observe allocates
// nothing, for any kind of event. (Not parallel: AllocsPerRun counts the
// whole process's allocations.)
func TestObserveDoesNotAllocate(t *testing.T) {
	o := newObserver(t)
	for _, e := range events {
		o.Observe(e) // makes the series
		if n := testing.AllocsPerRun(100, func() { o.Observe(e) }); n != 0 {
			t.Errorf("%s: %v allocations per Observe", name(e), n)
		}
	}
}

// BenchmarkObserve measures Observe for each kind of event, on one
// goroutine and on GOMAXPROCS goroutines at once (every session of a
// server updates the same metrics).
func BenchmarkObserve(b *testing.B) {
	o := newObserver(b)
	for _, e := range events {
		o.Observe(e)
		b.Run(name(e), func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				o.Observe(e)
			}
		})
		b.Run(name(e)+"/parallel", func(b *testing.B) {
			b.ReportAllocs()
			b.RunParallel(func(pb *testing.PB) {
				for pb.Next() {
					o.Observe(e)
				}
			})
		})
	}
}
