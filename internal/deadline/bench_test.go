package deadline_test

import (
	"math/rand/v2"
	"runtime"
	"runtime/debug"
	"testing"
	"time"
	"unsafe"

	"github.com/wsauth/wsauth/internal/deadline"
	"github.com/wsauth/wsauth/wsauthtest"
)

// The benchmarks run on a fake clock that is never advanced (except in
// BenchmarkFire), so no timer ever fires and timing noise stays out.

const benchSessions = 1_000_000

func benchNop() {}

// benchSession stands for a server's per-session struct: 64 bytes, with the
// Entry embedded.
type benchSession struct {
	expiry deadline.Entry
	_      [64 - unsafe.Sizeof(deadline.Entry{})]byte
}

// benchTable is the size of the precomputed random operands, a power of two.
const benchTable = 1 << 20

// benchHeap is a Scheduler holding 1M sessions with random deadlines within
// the next hour, and random operands (a session index, a deadline within
// the hour) precomputed so that generating them is not measured.
type benchHeap struct {
	s        *deadline.Scheduler
	sessions []benchSession
	idx      [benchTable]int
	ats      [benchTable]time.Time
}

func newBenchHeap(b *testing.B) *benchHeap {
	b.Helper()
	h := &benchHeap{
		s:        deadline.New(wsauthtest.NewClock(epoch)),
		sessions: make([]benchSession, benchSessions),
	}
	b.Cleanup(h.s.Stop)
	rng := rand.New(rand.NewPCG(1, 2))
	deadline := func() time.Time { return epoch.Add(time.Duration(rng.Int64N(int64(time.Hour)))) }
	for i := range h.sessions {
		h.s.Schedule(&h.sessions[i].expiry, deadline(), benchNop)
	}
	for j := range benchTable {
		h.idx[j] = rng.IntN(benchSessions)
		h.ats[j] = deadline()
	}
	return h
}

// BenchmarkSchedule measures scheduling an unscheduled Entry, at a random
// deadline, into a heap of 1M.
func BenchmarkSchedule(b *testing.B) {
	h := newBenchHeap(b)
	const batch = 1 << 16
	extra := make([]benchSession, batch)
	// Grow the heap array once up front; the batches below reuse it.
	for j := range extra {
		h.s.Schedule(&extra[j].expiry, h.ats[j], benchNop)
	}
	for j := range extra {
		h.s.Cancel(&extra[j].expiry)
	}
	b.ReportAllocs()
	b.ResetTimer()
	for i := range b.N {
		j := i % batch
		if j == 0 && i > 0 {
			// Back to 1M entries, off the clock.
			b.StopTimer()
			for k := range extra {
				h.s.Cancel(&extra[k].expiry)
			}
			b.StartTimer()
		}
		h.s.Schedule(&extra[j].expiry, h.ats[j], benchNop)
	}
}

// BenchmarkReschedule measures moving a random scheduled Entry of 1M, to a
// random deadline and to a deadline later than all others (what a
// reauthentication does to a token's expiry).
func BenchmarkReschedule(b *testing.B) {
	b.Run("random", func(b *testing.B) {
		h := newBenchHeap(b)
		b.ReportAllocs()
		i := 0
		for b.Loop() {
			j := i % benchTable
			h.s.Schedule(&h.sessions[h.idx[j]].expiry, h.ats[j], benchNop)
			i++
		}
	})
	b.Run("later", func(b *testing.B) {
		h := newBenchHeap(b)
		at := epoch.Add(time.Hour)
		b.ReportAllocs()
		i := 0
		for b.Loop() {
			at = at.Add(time.Millisecond)
			h.s.Schedule(&h.sessions[h.idx[i%benchTable]].expiry, at, benchNop)
			i++
		}
	})
}

// BenchmarkReauth measures the whole cost of sessions reauthenticating, the
// timer's share included: 1M sessions with deadlines within the hour; each op
// moves a random session's deadline to an hour from now, and the clock
// advances so that an hour passes every 1M ops. A session that was not
// moved in time expires (its callback runs and it leaves the heap) and is
// scheduled again when it next comes up. Work that Schedule leaves to the
// timer goroutine is done inside clock.Advance, on the clock. Deadlines are
// all distinct, so the timer fires about every other op, and the fake
// clock's timers (an allocation each) are much of the cost: compare it
// across versions of the Scheduler, not with the other benchmarks.
func BenchmarkReauth(b *testing.B) {
	clock := wsauthtest.NewClock(epoch)
	s := deadline.New(clock)
	defer s.Stop()
	sessions := make([]benchSession, benchSessions)
	rng := rand.New(rand.NewPCG(1, 2))
	for i := range sessions {
		s.Schedule(&sessions[i].expiry, epoch.Add(time.Duration(rng.Int64N(int64(time.Hour)))), benchNop)
	}
	idx := make([]int, benchTable)
	for j := range idx {
		idx[j] = rng.IntN(benchSessions)
	}
	const tick = 1000 // ops per clock step
	step := time.Hour / (benchSessions / tick)
	b.ReportAllocs()
	i := 0
	for b.Loop() {
		if i%tick == 0 {
			clock.Advance(step)
		}
		s.Schedule(&sessions[idx[i%benchTable]].expiry, clock.Now().Add(time.Hour), benchNop)
		i++
	}
}

// BenchmarkCancel measures a Cancel of a random Entry of 1M followed by its
// Schedule at a random deadline: one op is the pair.
func BenchmarkCancel(b *testing.B) {
	h := newBenchHeap(b)
	b.ReportAllocs()
	i := 0
	for b.Loop() {
		j := i % benchTable
		e := &h.sessions[h.idx[j]].expiry
		h.s.Cancel(e)
		h.s.Schedule(e, h.ats[j], benchNop)
		i++
	}
}

// BenchmarkCancelVsAfterFunc measures, in the same run, a Cancel +
// Schedule of a random Entry of 1M (as BenchmarkCancel) and what a runtime
// timer per session costs for the same job: Stop of a random one of 1M
// time.AfterFunc timers with deadlines within the hour, and a new
// AfterFunc in its place. The two alternate in batches of 4,096, so that
// both see the same load from the rest of the machine. The garbage
// collector is off while they run: each new runtime timer is an
// allocation, and the collections they cause would otherwise land in
// either side's batches; the runtime timers' share of GC is left out, in
// their favour. It reports each one's ns per pair and x-afterfunc, the
// Scheduler's time over the runtime's (goal <= 0.5).
func BenchmarkCancelVsAfterFunc(b *testing.B) {
	h := newBenchHeap(b)
	timers := make([]*time.Timer, benchSessions)
	rng := rand.New(rand.NewPCG(3, 4))
	for i := range timers {
		timers[i] = time.AfterFunc(time.Duration(rng.Int64N(int64(time.Hour))), benchNop)
	}
	b.Cleanup(func() {
		for _, t := range timers {
			t.Stop()
		}
	})
	const batch = 4096
	var sched, runtimeTimers time.Duration
	i := 0
	runtime.GC()
	defer debug.SetGCPercent(debug.SetGCPercent(-1))
	b.ReportAllocs()
	b.ResetTimer()
	for n := 0; n < b.N; n += batch {
		k := min(batch, b.N-n)
		t0 := time.Now()
		for range k {
			j := i % benchTable
			e := &h.sessions[h.idx[j]].expiry
			h.s.Cancel(e)
			h.s.Schedule(e, h.ats[j], benchNop)
			i++
		}
		t1 := time.Now()
		i -= k
		for range k {
			j := i % benchTable
			x := h.idx[j]
			timers[x].Stop()
			timers[x] = time.AfterFunc(h.ats[j].Sub(epoch), benchNop)
			i++
		}
		sched += t1.Sub(t0)
		runtimeTimers += time.Since(t1)
	}
	b.StopTimer()
	b.ReportMetric(float64(sched)/float64(b.N), "scheduler-ns/pair")
	b.ReportMetric(float64(runtimeTimers)/float64(b.N), "afterfunc-ns/pair")
	if runtimeTimers > 0 {
		b.ReportMetric(float64(sched)/float64(runtimeTimers), "x-afterfunc")
	}
}

// BenchmarkFire measures running due entries out of a heap of 1M, a thousand
// due per millisecond; each callback schedules its entry again a second
// later, as a session's next deadline. One op is one callback, including
// its share of the fake clock's timer.
func BenchmarkFire(b *testing.B) {
	clock := wsauthtest.NewClock(epoch)
	s := deadline.New(clock)
	defer s.Stop()
	sessions := make([]benchSession, benchSessions)
	fired := 0
	for i := range sessions {
		e := &sessions[i].expiry
		var again func()
		again = func() {
			fired++
			s.Schedule(e, clock.Now().Add(time.Second), again)
		}
		s.Schedule(e, epoch.Add(time.Duration(i/1000+1)*time.Millisecond), again)
	}
	b.ReportAllocs()
	for b.Loop() {
		for fired == 0 {
			clock.Advance(time.Millisecond)
		}
		fired--
	}
}

// BenchmarkMemoryPerSession schedules 1M sessions and reports the
// scheduler's own memory per session as B/session: the heap array and the
// Scheduler, not the Entry, which lives inside the session struct (its size
// is reported as Entry-B, the whole 64-byte session as session-B). One op
// builds and fills a Scheduler, so ns/op includes two forced GCs.
func BenchmarkMemoryPerSession(b *testing.B) {
	var perSession float64
	for b.Loop() {
		sessions := make([]benchSession, benchSessions)
		rng := rand.New(rand.NewPCG(1, 2))
		var before, after runtime.MemStats
		runtime.GC()
		runtime.ReadMemStats(&before)
		s := deadline.New(wsauthtest.NewClock(epoch))
		for i := range sessions {
			s.Schedule(&sessions[i].expiry, epoch.Add(time.Duration(rng.Int64N(int64(time.Hour)))), benchNop)
		}
		runtime.GC()
		runtime.ReadMemStats(&after)
		runtime.KeepAlive(sessions)
		perSession = float64(int64(after.HeapAlloc)-int64(before.HeapAlloc)) / benchSessions
		s.Stop()
	}
	b.ReportMetric(perSession, "B/session")
	b.ReportMetric(float64(unsafe.Sizeof(deadline.Entry{})), "Entry-B")
	b.ReportMetric(float64(unsafe.Sizeof(benchSession{})), "session-B")
}
