package natsbroker_test

import (
	"context"
	"runtime"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/wsauth/wsauth/broker"
	"github.com/wsauth/wsauth/internal/natstest"
	"github.com/wsauth/wsauth/natsbroker"
	"github.com/wsauth/wsauth/protocol"
	"github.com/wsauth/wsauth/session"
)

// Each benchmark does b.N operations on the NATS broker, against an
// in-process server (timed: ns/op is the NATS broker's), and as many on
// references (timer stopped): a broker.Memory, and for Publish a bare
// JetStream publish. They run in interleaved rounds, so that a busy
// machine weighs on all alike; each reference's ns/op is reported, and
// the ratio of the NATS broker's to it (x-memory, x-jetstream).

// A ref is a reference measured alongside the NATS broker.
type ref struct {
	name string
	run  func(n int)
}

// compare runs b.N operations of run and of each reference in 10 rounds.
func compare(b *testing.B, run func(n int), refs ...ref) {
	took := make([]time.Duration, len(refs))
	b.ResetTimer()
	for done, chunk := 0, (b.N+9)/10; done < b.N; done += chunk {
		chunk = min(chunk, b.N-done)
		b.StopTimer()
		for i, r := range refs {
			start := time.Now()
			r.run(chunk)
			took[i] += time.Since(start)
		}
		b.StartTimer()
		run(chunk)
	}
	b.StopTimer()
	natsNs := float64(b.Elapsed().Nanoseconds()) / float64(b.N)
	for i, r := range refs {
		ns := float64(took[i].Nanoseconds()) / float64(b.N)
		b.ReportMetric(ns, r.name+"-ns/op")
		b.ReportMetric(natsNs/ns, "x-"+r.name)
	}
}

// pair is a Memory broker and a NATS broker on a fresh server, each with
// a member.
type pair struct {
	mem, nats broker.Member
	memory    *broker.Memory
	broker    *natsbroker.Broker
	url       string
}

func newPair(b *testing.B, opts natsbroker.Options) pair {
	s := natstest.Start(b)
	pr := pair{memory: broker.NewMemory(broker.MemoryOptions{MaxMessages: opts.MaxMessages}), url: s.URL()}
	pr.broker = newBroker(b, pr.url, opts)
	pr.nats, _ = join(b, pr.broker)
	pr.mem, _ = join(b, pr.memory)
	return pr
}

// on returns a run of f on m.
func on(m broker.Member, f func(m broker.Member, n int)) func(n int) {
	return func(n int) { f(m, n) }
}

// parallel runs n calls of f on GOMAXPROCS goroutines, each with a user
// of its own.
func parallel(n int, f func(p session.Principal)) {
	var next atomic.Int64
	var wg sync.WaitGroup
	for range runtime.GOMAXPROCS(0) {
		p := newUser()
		wg.Go(func() {
			for next.Add(1) <= int64(n) {
				f(p)
			}
		})
	}
	wg.Wait()
}

func BenchmarkPublish(b *testing.B) {
	ctx := context.Background()
	msg := data(42)
	must := func(_ protocol.Position, err error) {
		if err != nil {
			b.Error(err)
		}
	}
	oneUser := func(p session.Principal) func(m broker.Member, n int) {
		return func(m broker.Member, n int) {
			for range n {
				must(m.Publish(ctx, p, msg))
			}
		}
	}
	// Against the floor too: a JetStream publish to the same stream on
	// another connection, without the compare-and-set header, the live
	// announcement or the broker around it.
	b.Run("one user", func(b *testing.B) {
		pr := newPair(b, natsbroker.Options{})
		js, err := jetstream.New(connect(b, pr.url))
		if err != nil {
			b.Fatal(err)
		}
		jsAlone := func(n int) {
			for range n {
				if _, err := js.Publish(ctx, "WSAUTH.u.plain", msg); err != nil {
					b.Fatal(err)
				}
			}
		}
		p := newUser()
		compare(b, on(pr.nats, oneUser(p)), ref{"memory", on(pr.mem, oneUser(p))}, ref{"jetstream", jsAlone})
	})
	b.Run("a user per goroutine", func(b *testing.B) {
		pr := newPair(b, natsbroker.Options{})
		run := func(m broker.Member, n int) {
			parallel(n, func(p session.Principal) { must(m.Publish(ctx, p, msg)) })
		}
		compare(b, on(pr.nats, run), ref{"memory", on(pr.mem, run)})
	})
	// Two connections publish to one user: every Seq is contested, and the
	// loser of each compare-and-set reads the head and tries again.
	b.Run("one user from two connections", func(b *testing.B) {
		pr := newPair(b, natsbroker.Options{})
		other := newBroker(b, pr.url, natsbroker.Options{})
		nats2, _ := join(b, other)
		mem2, _ := join(b, pr.memory)
		p := newUser()
		two := func(m1, m2 broker.Member) func(n int) {
			return func(n int) {
				var wg sync.WaitGroup
				for i, m := range []broker.Member{m1, m2} {
					wg.Go(func() { oneUser(p)(m, (n+i)/2) })
				}
				wg.Wait()
			}
		}
		compare(b, two(pr.nats, nats2), ref{"memory", two(pr.mem, mem2)})
		b.ReportMetric(float64(natsbroker.Conflicts(pr.broker)+natsbroker.Conflicts(other))/float64(b.N), "conflicts/op")
	})
}

// History of a user with 1,000 messages kept: all of them (a resume from
// the start, one batched read), and the last 10 (a walk back from the
// head).
func BenchmarkHistory1000(b *testing.B) {
	const n = 1000
	ctx := context.Background()
	pr := newPair(b, natsbroker.Options{MaxMessages: n})
	p := newUser()
	epochs := map[broker.Member]string{pr.mem: publish(b, pr.mem, p, n).Epoch, pr.nats: publish(b, pr.nats, p, n).Epoch}
	for _, after := range []uint64{0, n - 10} {
		name := "all"
		if after > 0 {
			name = "last 10"
		}
		b.Run(name, func(b *testing.B) {
			run := func(m broker.Member, times int) {
				for range times {
					msgs, _, err := m.History(ctx, p, protocol.Position{Epoch: epochs[m], Seq: after})
					if err != nil || len(msgs) != int(n-after) {
						b.Fatalf("History: %d messages, %v", len(msgs), err)
					}
				}
			}
			compare(b, on(pr.nats, run), ref{"memory", on(pr.mem, run)})
		})
	}
}
