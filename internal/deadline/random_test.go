package deadline_test

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

	"github.com/wsauth/wsauth/internal/deadline"
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
		entries := make([]deadline.Entry, n)
		deadlines := make([]time.Duration, n)
		for i := range entries {
			// Whole milliseconds over 10s: plenty of ties.
			deadlines[i] = time.Duration(rng.IntN(10_000)) * time.Millisecond
			s.Schedule(&entries[i], epoch.Add(deadlines[i]), rec.fn(i))
		}
		require.Equal(t, n, s.Len())
		require.NoError(t, deadline.CheckInvariants(s))

		want := make([]int, n)
		for i := range want {
			want[i] = i
		}
		// Stable: ties fire in Schedule order.
		slices.SortStableFunc(want, func(a, b int) int { return cmp.Compare(deadlines[a], deadlines[b]) })

		for clock.Now().Sub(epoch) <= 10*time.Second {
			clock.Advance(time.Duration(rng.IntN(500)) * time.Millisecond)
			require.NoError(t, deadline.CheckInvariants(s))
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
// simple model after every step of a seeded random mix of operations: new
// entries, moves later (which leave stale slots), to the same deadline and
// earlier, cancels, and clock advances, some far enough that many stale
// slots come due at once. Some callbacks schedule, move or cancel an entry
// themselves, so operations also interleave with firing.
func TestRandomOps(t *testing.T) {
	t.Parallel()
	configs := []struct {
		name  string
		seeds uint64
		n     int           // entries
		steps int           // operations
		unit  time.Duration // deadline granularity: coarse for ties
		span  int           // deadlines within span units of now
		step  int           // the largest clock advance, in units
		jump  int           // the largest occasional clock advance
	}{
		{"small", 10, 64, 3000, time.Second, 40, 10, 10},
		{"large", 4, 1000, 8000, 10 * time.Millisecond, 4000, 20, 3000},
	}
	for _, cfg := range configs {
		for seed := range cfg.seeds {
			t.Run(fmt.Sprint(cfg.name, "/seed", seed), func(t *testing.T) {
				t.Parallel()
				randomOps(t, seed, cfg.n, cfg.steps, cfg.unit, cfg.span, cfg.step, cfg.jump)
			})
		}
	}
}

// action is what a callback does when it runs, besides being recorded:
// schedule entry id (possibly its own) delta after the time it runs, or
// cancel entry id.
type action struct {
	kind  int // actNone, actSchedule, actCancel
	id    int
	delta time.Duration
}

const (
	actNone = iota
	actSchedule
	actCancel
)

func randomOps(t *testing.T, seed uint64, n, steps int, unit time.Duration, span, step, jump int) {
	s, clock := newScheduler(t)
	rng := rand.New(rand.NewPCG(seed, 99))
	rec := &recorder{clock: clock}

	type want struct {
		at  time.Duration
		seq int
		act action
	}
	entries := make([]deadline.Entry, n)
	model := map[int]want{}
	seq := 0
	now := time.Duration(0)
	var fired []firing
	var stale, refreshed int // steps that left stale slots, and that refreshed some

	// fn returns entry id's callback: record, then act.
	var fn func(id int, act action) func()
	fn = func(id int, act action) func() {
		record := rec.fn(id)
		return func() {
			record()
			at := clock.Now().Add(act.delta)
			switch act.kind {
			case actSchedule:
				s.Schedule(&entries[act.id], at, fn(act.id, action{}))
			case actCancel:
				s.Cancel(&entries[act.id])
			}
		}
	}
	schedule := func(id int, at time.Duration) {
		var act action
		switch r := rng.IntN(10); {
		case r == 0:
			act = action{actSchedule, rng.IntN(n), time.Duration(rng.IntN(span/4)-span/20) * unit}
		case r == 1:
			act = action{actCancel, rng.IntN(n), 0}
		}
		s.Schedule(&entries[id], epoch.Add(at), fn(id, act))
		model[id] = want{at, seq, act}
		seq++
	}
	// advance moves the model and the clock to target, firing what is due
	// in model order and applying the callbacks' actions as they run.
	advance := func(target time.Duration) {
		d := target - now
		for {
			id, ok := -1, false
			for i, w := range model {
				if w.at <= target && (!ok || w.at < model[id].at || w.at == model[id].at && w.seq < model[id].seq) {
					id, ok = i, true
				}
			}
			if !ok {
				break
			}
			w := model[id]
			delete(model, id)
			now = max(now, w.at)
			fired = append(fired, firing{id, now})
			switch w.act.kind {
			case actSchedule:
				model[w.act.id] = want{now + w.act.delta, seq, action{}}
				seq++
			case actCancel:
				delete(model, w.act.id)
			}
		}
		before := deadline.Stale(s)
		clock.Advance(d)
		now = target
		if deadline.Stale(s) < before {
			refreshed++
		}
		if got := rec.firings(); !slices.Equal(fired, got) {
			require.Equal(t, fired, got)
		}
	}

	for range steps {
		id := rng.IntN(n)
		w, scheduled := model[id]
		switch op := rng.IntN(100); {
		case op == 0:
			// A group of entries due at once, all moved later before
			// then, as sessions that connected together reauthenticate:
			// more stale slots due at once than a firing refreshes under
			// one lock hold.
			at := now + time.Duration(rng.IntN(span))*unit
			group := make([]int, n/8)
			for i := range group {
				group[i] = rng.IntN(n)
				schedule(group[i], at)
			}
			for _, id := range group {
				schedule(id, model[id].at+time.Duration(1+rng.IntN(span/2))*unit)
			}
		case op < 35 || op < 65 && !scheduled:
			// Some in the past.
			schedule(id, now+time.Duration(rng.IntN(span)-span/8)*unit)
		case op < 50:
			schedule(id, w.at+time.Duration(rng.IntN(span/2))*unit) // later or same
		case op < 55:
			schedule(id, w.at) // same deadline: now after every tie
		case op < 65:
			schedule(id, w.at-time.Duration(rng.IntN(span/2))*unit) // earlier or same
		case op < 80:
			require.Equal(t, scheduled, s.Cancel(&entries[id]))
			delete(model, id)
		default:
			d := rng.IntN(step)
			if rng.IntN(10) == 0 {
				d = rng.IntN(jump)
			}
			advance(now + time.Duration(d)*unit)
		}
		if err := deadline.CheckInvariants(s); err != nil {
			t.Fatal(err)
		}
		if s.Len() != len(model) {
			t.Fatalf("Len() = %d, want %d", s.Len(), len(model))
		}
		if _, ok := model[id]; s.Scheduled(&entries[id]) != ok {
			t.Fatalf("Scheduled(entry %d) = %v, want %v", id, !ok, ok)
		}
		if deadline.Stale(s) > 0 {
			stale++
		}
	}
	advance(now + time.Duration(span)*unit*2)
	assert.Empty(t, model)
	// The lazy paths were taken, not only the eager ones.
	assert.Greater(t, stale, steps/10, "steps with stale slots")
	assert.Greater(t, refreshed, 10, "advances that refreshed stale slots")
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
		entries := make([]deadline.Entry, 100)
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
		empty func(s *deadline.Scheduler, clock *wsauthtest.Clock, entries []deadline.Entry)
	}{
		{"cancel in order", func(s *deadline.Scheduler, _ *wsauthtest.Clock, entries []deadline.Entry) {
			for i := range entries {
				s.Cancel(&entries[i])
			}
		}},
		{"cancel in reverse", func(s *deadline.Scheduler, _ *wsauthtest.Clock, entries []deadline.Entry) {
			for i := len(entries) - 1; i >= 0; i-- {
				s.Cancel(&entries[i])
			}
		}},
		{"cancel at random", func(s *deadline.Scheduler, _ *wsauthtest.Clock, entries []deadline.Entry) {
			for _, i := range rand.New(rand.NewPCG(1, 2)).Perm(len(entries)) {
				s.Cancel(&entries[i])
			}
		}},
		{"fire", func(_ *deadline.Scheduler, clock *wsauthtest.Clock, _ []deadline.Entry) {
			clock.Advance(time.Hour)
		}},
		{"stop", func(s *deadline.Scheduler, _ *wsauthtest.Clock, _ []deadline.Entry) {
			s.Stop()
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			s, clock := newScheduler(t)
			entries := make([]deadline.Entry, n)
			nop := func() {}
			for i := range entries {
				s.Schedule(&entries[i], epoch.Add(time.Duration(i%977)*time.Second), nop)
			}
			require.Equal(t, n, s.Len())
			require.GreaterOrEqual(t, deadline.HeapCap(s), n)

			tt.empty(s, clock, entries)
			assert.Zero(t, s.Len())
			assert.LessOrEqual(t, deadline.HeapCap(s), 2048)
			for i := range entries {
				if s.Scheduled(&entries[i]) {
					t.Fatalf("entry %d still scheduled", i)
				}
			}
		})
	}
}
