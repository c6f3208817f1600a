package natsbroker_test

import (
	"context"
	"encoding/json"
	"slices"
	"testing"
	"time"

	"github.com/wsauth/wsauth/internal/wstest"
	"github.com/wsauth/wsauth/protocol"
)

// The cluster's cost, end to end: wsauth servers on a NATS server in this
// process, a client on loopback. Each benchmark times the cross-node case
// and, in interleaved rounds, its reference, and reports both and their
// ratio.

// sendAndRead sends n messages to user from node, one at a time, each read
// by conn before the next is sent (send does the sending), and returns
// each one's latency, send to read.
func sendAndRead(b *testing.B, conn *wstest.Conn, n int, send func() error) []time.Duration {
	lat := make([]time.Duration, 0, n)
	for range n {
		start := time.Now()
		if err := send(); err != nil {
			b.Fatal(err)
		}
		for {
			raw, err := conn.Next()
			if err != nil {
				b.Fatal(err)
			}
			if f, err := protocol.DecodeServer(raw); err == nil && f.Type == protocol.TypeMessage {
				break
			}
		}
		lat = append(lat, time.Since(start))
	}
	return lat
}

func micros(d []time.Duration, p float64) float64 {
	d = slices.Clone(d)
	slices.Sort(d)
	return float64(d[int(float64(len(d)-1)*p)].Nanoseconds()) / 1e3
}

// interleave runs a and ref for b.N operations each, in 10 rounds, and
// reports msgs/s, p50 and p99 of each and the ratios a/ref.
func interleave(b *testing.B, name, refName string, a, ref func(n int) []time.Duration) {
	var la, lr []time.Duration
	var ta, tr time.Duration
	b.ResetTimer()
	for done, chunk := 0, (b.N+9)/10; done < b.N; done += chunk {
		chunk = min(chunk, b.N-done)
		start := time.Now()
		lr = append(lr, ref(chunk)...)
		tr += time.Since(start)
		start = time.Now()
		la = append(la, a(chunk)...)
		ta += time.Since(start)
	}
	b.StopTimer()
	rate := func(t time.Duration) float64 { return float64(b.N) / t.Seconds() }
	b.ReportMetric(rate(ta), name+"-msg/s")
	b.ReportMetric(rate(tr), refName+"-msg/s")
	b.ReportMetric(rate(ta)/rate(tr), "x-"+refName+"-rate")
	b.ReportMetric(micros(la, 0.5), name+"-p50-us")
	b.ReportMetric(micros(la, 0.99), name+"-p99-us")
	b.ReportMetric(micros(lr, 0.5), refName+"-p50-us")
	b.ReportMetric(micros(lr, 0.99), refName+"-p99-us")
	b.ReportMetric(micros(la, 0.99)-micros(lr, 0.99), "added-p99-us")
}

// BenchmarkCrossNode: a message to a user whose session is on another node
// (publish with its compare-and-set, the live announcement over NATS,
// delivery in order) against the same send from the session's own node
// (publish, local delivery): one message at a time, so the rate is the
// inverse of the latency.
func BenchmarkCrossNode(b *testing.B) {
	c := newWSCluster(b, 2)
	conn, _ := c.login(b, c.nodes[1], "bench", nil)
	data := json.RawMessage(`1`)
	p := c.p("bench")
	from := func(i int) func() error {
		return func() error { _, err := c.nodes[i].srv.SendToPrincipals(context.Background(), data, p); return err }
	}
	interleave(b, "cross", "local",
		func(n int) []time.Duration { return sendAndRead(b, conn, n, from(0)) },
		func(n int) []time.Duration { return sendAndRead(b, conn, n, from(1)) })
}

// BenchmarkDurableVsLive: the cost of durable, resumable delivery: a
// message to a user's stream (SendToPrincipals: JetStream, positioned)
// against a live-only one to every session of the cluster (Broadcast: core
// NATS), both sent from a node other than the session's.
func BenchmarkDurableVsLive(b *testing.B) {
	c := newWSCluster(b, 2)
	conn, _ := c.login(b, c.nodes[1], "bench", nil)
	data := json.RawMessage(`1`)
	interleave(b, "durable", "live",
		func(n int) []time.Duration {
			return sendAndRead(b, conn, n, func() error {
				_, err := c.nodes[0].srv.SendToPrincipals(context.Background(), data, c.p("bench"))
				return err
			})
		},
		func(n int) []time.Duration {
			return sendAndRead(b, conn, n, func() error { _, err := c.nodes[0].srv.Broadcast(context.Background(), data); return err })
		})
}

// BenchmarkResume1000: a client that missed 1,000 messages resumes on the
// other node: from its auth frame to the last missed message.
func BenchmarkResume1000(b *testing.B) {
	const missed = 1000
	c := newWSCluster(b, 2)
	conn, ok := c.login(b, c.nodes[0], "bench", nil)
	at := protocol.Position{Epoch: ok.Epoch, Seq: ok.Seq}
	conn.Close()
	var took time.Duration
	for range b.N {
		b.StopTimer()
		for range missed {
			if _, err := c.nodes[0].srv.SendToPrincipals(context.Background(), json.RawMessage(`1`), c.p("bench")); err != nil {
				b.Fatal(err)
			}
		}
		b.StartTimer()
		start := time.Now()
		conn, ok := c.login(b, c.nodes[1], "bench", &at)
		if ok.Resume != protocol.ResumeOK {
			b.Fatalf("resume: %q", ok.Resume)
		}
		for range missed {
			m := next(b, conn)
			at = protocol.Position{Epoch: m.Epoch, Seq: m.Seq}
		}
		took += time.Since(start)
		conn.Close()
	}
	b.ReportMetric(float64(took.Milliseconds())/float64(b.N), "ms/resume")
}
