package reauth_test

import (
	"cmp"
	"fmt"
	"math/rand/v2"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/wsauth/wsauth/reauth"
	"github.com/wsauth/wsauth/wsauthtest"
)

// Randomized and bulk tests: many entries, seeded random operations checked
// against a model, concurrent callers, and memory left behind.

func TestRandomDeadlinesFireInOrder(t *testing.T) {
	t.Parallel()
	for _, seed := range []uint64{1, 2, 3} {
		s, clock := newScheduler(t)
		rng := rand.New(rand.NewPCG(seed, 0))
		rec := &recorder{clock: clock}
		const n = 2000
		entries := make([]reauth.Entry, n)
		deadlines := make([]time.Duration, n)
		for i := range entries {
			// Whole milliseconds over 10s: plenty of ties.
			deadlines[i] = time.Duration(rng.IntN(10_000)) * time.Millisecond
			s.Schedule(&entries[i], epoch.Add(deadlines[i]), rec.fn(i))
		}
		require.Equal(t, n, s.Len())
		require.NoError(t, reauth.CheckInvariants(s))

		want := make([]int, n)
		for i := range want {
			want[i] = i
		}
		// Stable: ties fire in Schedule order.
		slices.SortStableFunc(want, func(a, b int) int { return cmp.Compare(deadlines[a], deadlines[b]) })

		for clock.Now().Sub(epoch) <= 10*time.Second {
			clock.Advance(time.Duration(rng.IntN(500)) * time.Millisecond)
			require.NoError(t, reauth.CheckInvariants(s))
		}
		assert.Equal(t, want, rec.ids(), "seed %d", seed)
		for _, f := range rec.firings() {
			// The fake clock reaches each deadline exactly: never early,
			// never late.
			assert.Equal(t, deadlines[f.id], f.at, "entry %d", f.id)
		}
		assert.Zero(t, s.Len())
		assert.LessOrEqual(t, clock.Pending(), 1, "more than one timer armed")
	}
}

// TestRandomOps checks the heap invariants and the fired sequence against a
// simple model after every step of a seeded random mix of operations.
func TestRandomOps(t *testing.T) {
	t.Parallel()
	for seed := range uint64(20) {
		t.Run(fmt.Sprint("seed", seed), func(t *testing.T) {
			t.Parallel()
			s, clock := newScheduler(t)
			rng := rand.New(rand.NewPCG(seed, 99))
			rec := &recorder{clock: clock}

			type want struct {
				at  time.Duration
				seq int
			}
			const n = 64
			var entries [n]reauth.Entry
			model := map[int]want{}
			seq := 0
			now := time.Duration(0)
			var fired []firing

			for range 3000 {
				id := rng.IntN(n)
				switch op := rng.IntN(10); {
				case op < 5:
					// Coarse deadlines for ties; some in the past.
					at := now + time.Duration(rng.IntN(40)-5)*time.Second
					s.Schedule(&entries[id], epoch.Add(at), rec.fn(id))
					model[id] = want{at, seq}
					seq++
				case op < 8:
					_, ok := model[id]
					require.Equal(t, ok, s.Cancel(&entries[id]))
					delete(model, id)
				default:
					target := now + time.Duration(rng.IntN(10))*time.Second
					var due []int
					for id, w := range model {
						if w.at <= target {
							due = append(due, id)
						}
					}
					slices.SortFunc(due, func(a, b int) int {
						return cmp.Or(cmp.Compare(model[a].at, model[b].at), cmp.Compare(model[a].seq, model[b].seq))
					})
					for _, id := range due {
						fired = append(fired, firing{id, max(model[id].at, now)})
						delete(model, id)
					}
					clock.Advance(target - now)
					now = target
					if got := rec.firings(); !slices.Equal(fired, got) {
						require.Equal(t, fired, got)
					}
				}
				if err := reauth.CheckInvariants(s); err != nil {
					t.Fatal(err)
				}
				if s.Len() != len(model) {
					t.Fatalf("Len() = %d, want %d", s.Len(), len(model))
				}
				if _, ok := model[id]; s.Scheduled(&entries[id]) != ok {
					t.Fatalf("Scheduled(entry %d) = %v, want %v", id, !ok, ok)
				}
			}
		})
	}
}

// TestConcurrent runs Schedule, Cancel and two clock-advancing goroutines at
// once; callbacks must still never overlap. Run it with -race.
func TestConcurrent(t *testing.T) {
	t.Parallel()
	s, clock := newScheduler(t)
	var running, ran atomic.Int64
	fn := func() {
		if running.Add(1) != 1 {
			t.Error("callbacks overlap")
		}
		ran.Add(1)
		running.Add(-1)
	}

	var wg sync.WaitGroup
	stop := make(chan struct{})
	for w := range 4 {
		entries := make([]reauth.Entry, 100)
		wg.Go(func() {
			rng := rand.New(rand.NewPCG(uint64(w), 7))
			for range 5000 {
				e := &entries[rng.IntN(len(entries))]
				if rng.IntN(3) == 0 {
					s.Cancel(e)
				} else {
					s.Schedule(e, clock.Now().Add(time.Duration(rng.IntN(100))*time.Millisecond), fn)
				}
			}
		})
	}
	var advancers sync.WaitGroup
	for range 2 {
		advancers.Go(func() {
			for {
				select {
				case <-stop:
					return
				default:
					clock.Advance(time.Millisecond)
				}
			}
		})
	}
	wg.Wait()
	close(stop)
	advancers.Wait()
	clock.Advance(time.Second)
	assert.Zero(t, s.Len())
	assert.Positive(t, ran.Load())
}

// TestShrink checks that a burst of entries leaves no big array behind once
// they are gone, however they go.
func TestShrink(t *testing.T) {
	t.Parallel()
	const n = 100_000
	tests := []struct {
		name  string
		empty func(s *reauth.Scheduler, clock *wsauthtest.Clock, entries []reauth.Entry)
	}{
		{"cancel in order", func(s *reauth.Scheduler, _ *wsauthtest.Clock, entries []reauth.Entry) {
			for i := range entries {
				s.Cancel(&entries[i])
			}
		}},
		{"cancel in reverse", func(s *reauth.Scheduler, _ *wsauthtest.Clock, entries []reauth.Entry) {
			for i := len(entries) - 1; i >= 0; i-- {
				s.Cancel(&entries[i])
			}
		}},
		{"cancel at random", func(s *reauth.Scheduler, _ *wsauthtest.Clock, entries []reauth.Entry) {
			for _, i := range rand.New(rand.NewPCG(1, 2)).Perm(len(entries)) {
				s.Cancel(&entries[i])
			}
		}},
		{"fire", func(_ *reauth.Scheduler, clock *wsauthtest.Clock, _ []reauth.Entry) {
			clock.Advance(time.Hour)
		}},
		{"stop", func(s *reauth.Scheduler, _ *wsauthtest.Clock, _ []reauth.Entry) {
			s.Stop()
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			s, clock := newScheduler(t)
			entries := make([]reauth.Entry, n)
			nop := func() {}
			for i := range entries {
				s.Schedule(&entries[i], epoch.Add(time.Duration(i%977)*time.Second), nop)
			}
			require.Equal(t, n, s.Len())
			require.GreaterOrEqual(t, reauth.HeapCap(s), n)

			tt.empty(s, clock, entries)
			assert.Zero(t, s.Len())
			assert.LessOrEqual(t, reauth.HeapCap(s), 2048)
			for i := range entries {
				if s.Scheduled(&entries[i]) {
					t.Fatalf("entry %d still scheduled", i)
				}
			}
		})
	}
}
