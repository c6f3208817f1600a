package deadline_test

import (
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.uber.org/goleak"

	"github.com/wsauth/wsauth/internal/deadline"
	"github.com/wsauth/wsauth/reauth"
	"github.com/wsauth/wsauth/wsauthtest"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

var epoch = time.Date(2030, 1, 2, 3, 4, 5, 0, time.UTC)

// newScheduler returns a Scheduler on a fake clock set to epoch, stopped
// and checked when the test ends.
func newScheduler(t *testing.T) (*deadline.Scheduler, *wsauthtest.Clock) {
	t.Helper()
	clock := wsauthtest.NewClock(epoch)
	s := deadline.New(clock)
	t.Cleanup(func() {
		assert.NoError(t, deadline.CheckInvariants(s))
		s.Stop()
		assert.Zero(t, clock.Pending(), "timer left armed after Stop")
	})
	return s, clock
}

type firing struct {
	id int
	at time.Duration // clock time when the callback ran, since epoch
}

// recorder records which callbacks ran, in order, and when.
type recorder struct {
	clock reauth.Clock
	mu    sync.Mutex
	got   []firing
}

func (r *recorder) fn(id int) func() {
	return func() {
		at := r.clock.Now().Sub(epoch)
		r.mu.Lock()
		r.got = append(r.got, firing{id, at})
		r.mu.Unlock()
	}
}

func (r *recorder) ids() []int {
	r.mu.Lock()
	defer r.mu.Unlock()
	ids := make([]int, len(r.got))
	for i, f := range r.got {
		ids[i] = f.id
	}
	return ids
}

func (r *recorder) firings() []firing {
	r.mu.Lock()
	defer r.mu.Unlock()
	return slices.Clone(r.got)
}

func TestTiesFireInScheduleOrder(t *testing.T) {
	t.Parallel()
	s, clock := newScheduler(t)
	rec := &recorder{clock: clock}
	var entries [5]deadline.Entry
	at := epoch.Add(time.Second)
	for i := range entries {
		s.Schedule(&entries[i], at, rec.fn(i))
	}
	// Rescheduling to the same deadline counts as a new Schedule call.
	s.Schedule(&entries[1], at, rec.fn(1))
	clock.Advance(time.Second)
	assert.Equal(t, []int{0, 2, 3, 4, 1}, rec.ids())
}

func TestReschedule(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name   string
		first  time.Duration
		second time.Duration
	}{
		{"earlier", 10 * time.Second, 2 * time.Second},
		{"later", 2 * time.Second, 10 * time.Second},
		{"same", 5 * time.Second, 5 * time.Second},
		{"into the past", 5 * time.Second, -time.Hour},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			s, clock := newScheduler(t)
			rec := &recorder{clock: clock}
			var e, other deadline.Entry
			s.Schedule(&other, epoch.Add(6*time.Second), rec.fn(2))
			s.Schedule(&e, epoch.Add(tt.first), rec.fn(0))
			s.Schedule(&e, epoch.Add(tt.second), rec.fn(1))
			require.Equal(t, 2, s.Len())

			clock.Advance(20 * time.Second)
			wantAt := max(tt.second, 0)
			want := []firing{{1, wantAt}, {2, 6 * time.Second}}
			if wantAt > 6*time.Second {
				want = []firing{{2, 6 * time.Second}, {1, wantAt}}
			}
			assert.Equal(t, want, rec.firings(), "the replaced fn must not run")
		})
	}
}

// Moving an entry later leaves its heap slot at the old deadline; the timer
// fires there, moves the entry, runs nothing and re-arms.
func TestRescheduleLaterIsLazy(t *testing.T) {
	t.Parallel()
	s, clock := newScheduler(t)
	rec := &recorder{clock: clock}
	var a, b deadline.Entry
	s.Schedule(&a, epoch.Add(time.Second), rec.fn(0))
	s.Schedule(&b, epoch.Add(2*time.Second), rec.fn(1))
	s.Schedule(&a, epoch.Add(3*time.Second), rec.fn(2))
	assert.Equal(t, 1, deadline.Stale(s))
	assert.Equal(t, 2, s.Len())
	assert.True(t, s.Scheduled(&a))
	require.NoError(t, deadline.CheckInvariants(s))

	clock.Advance(time.Second) // the timer armed for a's old deadline
	assert.Empty(t, rec.ids(), "a ran at its old deadline")
	assert.Zero(t, deadline.Stale(s))
	assert.Equal(t, 1, clock.Pending())
	require.NoError(t, deadline.CheckInvariants(s))

	clock.Advance(time.Hour)
	assert.Equal(t, []firing{{1, 2 * time.Second}, {2, 3 * time.Second}}, rec.firings())
}

// Ties between a lazily moved entry and others are still broken by the
// order of the Schedule calls that set the deadlines, moves included.
func TestLazyMoveTies(t *testing.T) {
	t.Parallel()
	s, clock := newScheduler(t)
	rec := &recorder{clock: clock}
	var a, b, c, d deadline.Entry
	at := epoch.Add(5 * time.Second)
	s.Schedule(&a, epoch.Add(time.Second), rec.fn(0))
	s.Schedule(&b, at, rec.fn(1))
	s.Schedule(&c, epoch.Add(2*time.Second), rec.fn(2))
	s.Schedule(&a, at, rec.fn(0)) // later: lazy
	s.Schedule(&b, at, rec.fn(1)) // same deadline, now after a: lazy
	s.Schedule(&d, at, rec.fn(3)) // a new entry, after both
	s.Schedule(&c, at, rec.fn(2)) // later again, after d
	assert.Equal(t, 3, deadline.Stale(s))
	clock.Advance(time.Hour)
	assert.Equal(t, []firing{{0, 5 * time.Second}, {1, 5 * time.Second}, {3, 5 * time.Second}, {2, 5 * time.Second}}, rec.firings())
}

// A sequence of moves, later and earlier, of an entry whose slot may be
// stale: it runs once, at the last deadline, relative to a fixed entry.
func TestRescheduleSequences(t *testing.T) {
	t.Parallel()
	const fixed = 6 * time.Second
	tests := []struct {
		name  string
		moves []time.Duration // the first schedules
		stale int             // stale slots after the moves
	}{
		{"later, earlier but after the slot", []time.Duration{5 * time.Second, 20 * time.Second, 10 * time.Second}, 1},
		{"later, then before the slot", []time.Duration{5 * time.Second, 20 * time.Second, 3 * time.Second}, 0},
		{"later, then to the slot's deadline", []time.Duration{5 * time.Second, 20 * time.Second, 5 * time.Second}, 1},
		{"later twice", []time.Duration{time.Second, 4 * time.Second, 8 * time.Second}, 1},
		{"later, then into the past", []time.Duration{time.Second, 8 * time.Second, -time.Hour}, 0},
		{"to the fixed entry's deadline", []time.Duration{time.Second, fixed}, 1},
		{"earlier, then later", []time.Duration{10 * time.Second, 2 * time.Second, 7 * time.Second}, 1},
		{"1ns earlier", []time.Duration{5 * time.Second, 5*time.Second - 1}, 0},
		{"later, then 1ns before the slot", []time.Duration{5 * time.Second, 20 * time.Second, 5*time.Second - 1}, 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			s, clock := newScheduler(t)
			rec := &recorder{clock: clock}
			var e, other deadline.Entry
			s.Schedule(&other, epoch.Add(fixed), rec.fn(0))
			for i, at := range tt.moves {
				s.Schedule(&e, epoch.Add(at), rec.fn(i+1))
				require.NoError(t, deadline.CheckInvariants(s))
			}
			assert.Equal(t, tt.stale, deadline.Stale(s))
			last := tt.moves[len(tt.moves)-1]
			want := []firing{{len(tt.moves), max(last, 0)}, {0, fixed}}
			if last >= fixed { // ties after other, scheduled first
				want[0], want[1] = want[1], want[0]
			}
			for clock.Now().Sub(epoch) < time.Minute {
				clock.Advance(500 * time.Millisecond)
				require.NoError(t, deadline.CheckInvariants(s))
			}
			assert.Equal(t, want, rec.firings())
		})
	}
}

// Cancel and Stop drop a stale entry like any other.
func TestCancelAndStopStale(t *testing.T) {
	t.Parallel()
	s, clock := newScheduler(t)
	rec := &recorder{clock: clock}
	var a, b, c deadline.Entry
	s.Schedule(&a, epoch.Add(time.Second), rec.fn(0))
	s.Schedule(&b, epoch.Add(2*time.Second), rec.fn(1))
	s.Schedule(&c, epoch.Add(3*time.Second), rec.fn(2))
	s.Schedule(&a, epoch.Add(time.Hour), rec.fn(0))
	s.Schedule(&b, epoch.Add(time.Hour), rec.fn(1))
	require.Equal(t, 2, deadline.Stale(s))
	assert.True(t, s.Cancel(&a))
	assert.False(t, s.Scheduled(&a))
	assert.Equal(t, 2, s.Len())
	require.NoError(t, deadline.CheckInvariants(s))
	clock.Advance(10 * time.Second)
	assert.Equal(t, []firing{{2, 3 * time.Second}}, rec.firings())
	s.Stop()
	assert.False(t, s.Scheduled(&b))
	clock.Advance(2 * time.Hour)
	assert.Equal(t, []int{2}, rec.ids())
}

// More stale slots due at once than a firing refreshes under one lock hold:
// the firing refreshes all of them, and they run in one firing, in order.
func TestManyStaleDue(t *testing.T) {
	t.Parallel()
	clock := &capturingClock{Clock: wsauthtest.NewClock(epoch)}
	s := deadline.New(clock)
	defer s.Stop()
	rec := &recorder{clock: clock}
	entries := make([]deadline.Entry, 500)
	for i := range entries {
		s.Schedule(&entries[i], epoch.Add(time.Second), rec.fn(i))
	}
	// All moved to one later deadline, in reverse: ties run in that order.
	for i := len(entries) - 1; i >= 0; i-- {
		s.Schedule(&entries[i], epoch.Add(time.Minute), rec.fn(i))
	}
	require.Equal(t, len(entries), deadline.Stale(s))
	clock.Set(epoch.Add(time.Hour))
	got := rec.firings()
	require.Len(t, got, len(entries))
	for i, f := range got {
		assert.Equal(t, firing{len(entries) - 1 - i, time.Minute}, f)
	}
	assert.Zero(t, s.Len())
	// One timer for the old deadline, one for the new.
	assert.Len(t, clock.fns, 2, "the firing was cut short and re-armed")
}

// A stale slot whose entry's seq has wrapped around to the slot's is still
// stale: its entry must not run at the slot's deadline.
func TestSeqWrapKeepsStale(t *testing.T) {
	t.Parallel()
	s, clock := newScheduler(t)
	rec := &recorder{clock: clock}
	var e deadline.Entry
	deadline.SetSeq(s, 7)
	s.Schedule(&e, epoch.Add(time.Second), rec.fn(0))
	deadline.SetSeq(s, 7) // as after 2^32 more Schedule calls
	s.Schedule(&e, epoch.Add(time.Hour), rec.fn(1))
	clock.Advance(time.Minute)
	assert.Empty(t, rec.ids(), "ran at the deadline it was moved away from")
	clock.Advance(time.Hour)
	assert.Equal(t, []firing{{1, time.Hour}}, rec.firings())
}

// Entries moved later, as sessions that reauthenticate before their token
// expires, do not each cost a timer wakeup at their old deadline: a firing
// refreshes a few stale slots ahead of time.
func TestStaleWakeups(t *testing.T) {
	t.Parallel()
	clock := &capturingClock{Clock: wsauthtest.NewClock(epoch)}
	s := deadline.New(clock)
	defer s.Stop()
	rec := &recorder{clock: clock}
	const n = 100
	entries := make([]deadline.Entry, n)
	for i := range entries {
		s.Schedule(&entries[i], epoch.Add(time.Duration(i+1)*time.Second), rec.fn(i))
	}
	for i := range entries {
		s.Schedule(&entries[i], epoch.Add(time.Hour+time.Duration(i)*time.Second), rec.fn(i))
	}
	clock.Advance(time.Second)
	// A firing refreshes a few slots ahead, not every stale one: they
	// may move again before their old deadline.
	assert.Greater(t, deadline.Stale(s), n/2)
	clock.Advance((n - 1) * time.Second)
	assert.Empty(t, rec.ids())
	assert.Zero(t, deadline.Stale(s))
	assert.LessOrEqual(t, len(clock.fns), n/5, "timer wakeups for %d stale entries", n)
	require.NoError(t, deadline.CheckInvariants(s))
}

func TestCancel(t *testing.T) {
	t.Parallel()
	s, clock := newScheduler(t)
	rec := &recorder{clock: clock}
	var a, b, never deadline.Entry
	s.Schedule(&a, epoch.Add(time.Second), rec.fn(0))
	s.Schedule(&b, epoch.Add(2*time.Second), rec.fn(1))

	assert.True(t, s.Scheduled(&a))
	assert.True(t, s.Cancel(&a), "cancel of the earliest entry")
	assert.False(t, s.Scheduled(&a))
	assert.False(t, s.Cancel(&a), "second cancel")
	assert.False(t, s.Cancel(&never), "cancel of a zero Entry")
	assert.Equal(t, 1, s.Len())

	// The timer armed for a still fires at 1s, finds nothing due and
	// re-arms for b.
	clock.Advance(time.Second)
	assert.Empty(t, rec.ids())
	assert.Equal(t, 1, clock.Pending())
	clock.Advance(time.Second)
	assert.Equal(t, []firing{{1, 2 * time.Second}}, rec.firings())
	assert.False(t, s.Cancel(&b), "cancel after firing")
	assert.False(t, s.Scheduled(&b))
}

func TestCancelFromCallback(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name     string
		victimAt time.Duration // the killer runs at 1s
	}{
		{"same deadline, same batch", time.Second},
		{"later deadline, same Advance", 1500 * time.Millisecond},
		{"later Advance", time.Hour},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			s, clock := newScheduler(t)
			rec := &recorder{clock: clock}
			var killer, victim deadline.Entry
			var cancelled bool
			s.Schedule(&killer, epoch.Add(time.Second), func() {
				cancelled = s.Cancel(&victim)
			})
			s.Schedule(&victim, epoch.Add(tt.victimAt), rec.fn(1))
			clock.Advance(2 * time.Second)
			clock.Advance(2 * time.Hour)
			assert.True(t, cancelled)
			assert.Empty(t, rec.ids())
			assert.Zero(t, s.Len())
		})
	}
}

func TestScheduleFromCallback(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name  string
		after time.Duration // of the nested entry, from the callback's time
		want  []firing      // after Advance(10s)
	}{
		{"due now", 0, []firing{{0, time.Second}, {1, time.Second}}},
		{"in the past", -time.Hour, []firing{{0, time.Second}, {1, time.Second}}},
		{"within the Advance", 3 * time.Second, []firing{{0, time.Second}, {1, 4 * time.Second}}},
		{"after the Advance", time.Hour, []firing{{0, time.Second}}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			s, clock := newScheduler(t)
			rec := &recorder{clock: clock}
			var outer, nested deadline.Entry
			s.Schedule(&outer, epoch.Add(time.Second), func() {
				rec.fn(0)()
				s.Schedule(&nested, clock.Now().Add(tt.after), rec.fn(1))
			})
			clock.Advance(10 * time.Second)
			assert.Equal(t, tt.want, rec.firings())
			assert.Equal(t, len(tt.want) == 1, s.Scheduled(&nested))
		})
	}
}

func TestPeriodicSelfReschedule(t *testing.T) {
	t.Parallel()
	s, clock := newScheduler(t)
	rec := &recorder{clock: clock}
	var e deadline.Entry
	var tick func()
	tick = func() {
		rec.fn(0)()
		s.Schedule(&e, clock.Now().Add(time.Second), tick)
	}
	s.Schedule(&e, epoch.Add(time.Second), tick)
	clock.Advance(3500 * time.Millisecond)
	assert.Equal(t, []firing{{0, time.Second}, {0, 2 * time.Second}, {0, 3 * time.Second}}, rec.firings())
	assert.True(t, s.Scheduled(&e))
}

func TestPastDeadlinesFireOnNextFiring(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name string
		at   time.Time
	}{
		{"now", epoch},
		{"an hour ago", epoch.Add(-time.Hour)},
		{"zero time", time.Time{}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			s, clock := newScheduler(t)
			rec := &recorder{clock: clock}
			var e deadline.Entry
			s.Schedule(&e, tt.at, rec.fn(0))
			assert.Empty(t, rec.ids(), "Schedule must not run fn itself")
			clock.Advance(0)
			assert.Equal(t, []firing{{0, 0}}, rec.firings())
		})
	}
}

func TestFarFutureNeverFires(t *testing.T) {
	t.Parallel()
	s, clock := newScheduler(t)
	rec := &recorder{clock: clock}
	var e deadline.Entry
	// Beyond what a Duration from the Scheduler's origin can hold.
	s.Schedule(&e, epoch.AddDate(1000, 0, 0), rec.fn(0))
	clock.Advance(100 * 365 * 24 * time.Hour)
	assert.Empty(t, rec.ids())
	assert.True(t, s.Scheduled(&e))
}

func TestStop(t *testing.T) {
	t.Parallel()
	s, clock := newScheduler(t)
	rec := &recorder{clock: clock}
	var a, b, c deadline.Entry
	s.Schedule(&a, epoch.Add(time.Second), rec.fn(0))
	s.Schedule(&b, epoch.Add(2*time.Second), rec.fn(1))
	s.Stop()
	assert.Zero(t, s.Len())
	assert.Zero(t, clock.Pending(), "Stop must stop the timer")
	assert.False(t, s.Scheduled(&a))
	assert.False(t, s.Cancel(&a))

	s.Schedule(&c, epoch, rec.fn(2))
	assert.False(t, s.Scheduled(&c), "Schedule after Stop")
	s.Stop() // idempotent
	clock.Advance(time.Hour)
	assert.Empty(t, rec.ids())

	// Entries dropped by Stop are reusable on another Scheduler.
	s2, clock2 := newScheduler(t)
	rec2 := &recorder{clock: clock2}
	s2.Schedule(&a, epoch.Add(time.Second), rec2.fn(0))
	clock2.Advance(time.Second)
	assert.Equal(t, []int{0}, rec2.ids())
}

func TestStopFromCallback(t *testing.T) {
	t.Parallel()
	s, clock := newScheduler(t)
	rec := &recorder{clock: clock}
	var stopper, sameBatch, later deadline.Entry
	s.Schedule(&stopper, epoch.Add(time.Second), func() {
		rec.fn(0)()
		s.Stop()
	})
	s.Schedule(&sameBatch, epoch.Add(time.Second), rec.fn(1))
	s.Schedule(&later, epoch.Add(2*time.Second), rec.fn(2))
	clock.Advance(time.Hour)
	assert.Equal(t, []int{0}, rec.ids())
	assert.Zero(t, clock.Pending())
}

// A timer that was replaced or stopped but had already started firing must
// not run anything: only the armed timer's generation may.
func TestStaleTimerIsHarmless(t *testing.T) {
	t.Parallel()
	clock := &capturingClock{Clock: wsauthtest.NewClock(epoch)}
	s := deadline.New(clock)
	defer s.Stop()
	rec := &recorder{clock: clock}
	var a, b deadline.Entry
	s.Schedule(&a, epoch.Add(2*time.Second), rec.fn(0))
	s.Schedule(&b, epoch.Add(time.Second), rec.fn(1)) // new earliest: re-arms
	require.Len(t, clock.fns, 2)

	clock.Set(epoch.Add(3 * time.Second))
	require.Equal(t, []int{1, 0}, rec.ids())
	// Both timers' funcs, run again as if they had raced their Stop.
	var c deadline.Entry
	s.Schedule(&c, epoch, rec.fn(2)) // due, timer armed but not yet fired
	for _, fn := range clock.fns[:2] {
		fn()
	}
	assert.Equal(t, []int{1, 0}, rec.ids(), "stale timer ran a callback")
	require.NoError(t, deadline.CheckInvariants(s))

	s.Stop()
	for _, fn := range clock.fns {
		fn() // after Stop, even the last armed timer's func does nothing
	}
	assert.Equal(t, []int{1, 0}, rec.ids())
}

// capturingClock keeps every func passed to AfterFunc, so a test can call
// them after their timer was stopped.
type capturingClock struct {
	*wsauthtest.Clock
	fns []func()
}

func (c *capturingClock) AfterFunc(d time.Duration, f func()) reauth.Timer {
	c.fns = append(c.fns, f)
	return c.Clock.AfterFunc(d, f)
}

func TestOneTimerArmed(t *testing.T) {
	t.Parallel()
	s, clock := newScheduler(t)
	rec := &recorder{clock: clock}
	entries := make([]deadline.Entry, 100)
	for i := range entries {
		// Each one earlier than the last: every Schedule re-arms.
		s.Schedule(&entries[i], epoch.Add(time.Duration(len(entries)-i)*time.Second), rec.fn(i))
		require.Equal(t, 1, clock.Pending())
	}
	for i := range entries {
		s.Cancel(&entries[i])
	}
	assert.Equal(t, 1, clock.Pending(), "Cancel leaves the timer armed")
	clock.Advance(time.Hour)
	assert.Zero(t, clock.Pending(), "nothing left to arm for")
	assert.Empty(t, rec.ids())
}

func TestLen(t *testing.T) {
	t.Parallel()
	s, clock := newScheduler(t)
	var e [3]deadline.Entry
	nop := func() {}
	steps := []struct {
		name string
		do   func()
		want int
	}{
		{"schedule", func() { s.Schedule(&e[0], epoch.Add(time.Second), nop) }, 1},
		{"reschedule", func() { s.Schedule(&e[0], epoch.Add(3*time.Second), nop) }, 1},
		{"schedule more", func() {
			s.Schedule(&e[1], epoch.Add(2*time.Second), nop)
			s.Schedule(&e[2], epoch.Add(4*time.Second), nop)
		}, 3},
		{"cancel", func() { s.Cancel(&e[2]) }, 2},
		{"cancel again", func() { s.Cancel(&e[2]) }, 2},
		{"fire one", func() { clock.Advance(2 * time.Second) }, 1},
		{"fire all", func() { clock.Advance(time.Hour) }, 0},
	}
	for _, step := range steps {
		step.do()
		assert.Equal(t, step.want, s.Len(), step.name)
	}
}

func TestMisusePanics(t *testing.T) {
	t.Parallel()
	s1, _ := newScheduler(t)
	s2, _ := newScheduler(t)
	var e deadline.Entry
	var other deadline.Entry
	s1.Schedule(&e, epoch.Add(time.Second), func() {})
	// With an entry of its own, s2's heap has a slot at e's position.
	s2.Schedule(&other, epoch.Add(time.Second), func() {})
	for _, at := range []time.Duration{0, time.Second, time.Hour} { // earlier, same, later
		assert.PanicsWithValue(t, "reauth: Entry is scheduled on another Scheduler, or was copied", func() {
			s2.Schedule(&e, epoch.Add(at), func() {})
		}, "moving to %v", at)
	}
	assert.Panics(t, func() { s2.Cancel(&e) })
	assert.False(t, s2.Scheduled(&e))
	assert.True(t, s1.Scheduled(&e))
	assert.PanicsWithValue(t, "reauth: Schedule with nil func", func() {
		s1.Schedule(&e, epoch, nil)
	})
}

// A callback that panics (recovered by the test, as a fake clock lets it
// be) must not leave the scheduler without a timer.
func TestCallbackPanic(t *testing.T) {
	t.Parallel()
	s, clock := newScheduler(t)
	rec := &recorder{clock: clock}
	var bad, good deadline.Entry
	s.Schedule(&bad, epoch.Add(time.Second), func() { panic("boom") })
	s.Schedule(&good, epoch.Add(time.Second), rec.fn(1))
	assert.PanicsWithValue(t, "boom", func() { clock.Advance(time.Second) })
	require.NoError(t, deadline.CheckInvariants(s))
	clock.Advance(0)
	assert.Equal(t, []int{1}, rec.ids())
}

// TestSystemClock proves the plumbing through time.AfterFunc with real,
// millisecond deadlines.
func TestSystemClock(t *testing.T) {
	t.Parallel()
	s := deadline.New(nil)
	defer s.Stop()

	type result struct {
		id   int
		late time.Duration
	}
	results := make(chan result, 4)
	start := time.Now()
	var entries [5]deadline.Entry
	offsets := []time.Duration{3 * time.Millisecond, time.Millisecond, -time.Second, 2 * time.Millisecond}
	for i, off := range offsets {
		deadline := start.Add(off)
		s.Schedule(&entries[i], deadline, func() {
			results <- result{i, time.Since(deadline)}
		})
	}
	// Cancelled earliest entry: its timer fires for nothing and re-arms.
	s.Schedule(&entries[4], start.Add(500*time.Microsecond), func() { t.Error("cancelled entry ran") })
	s.Cancel(&entries[4])

	var got []int
	// Only a failure waits this long; a passing run takes ~3ms. The margin
	// is for loaded CI machines.
	timeout := time.After(5 * time.Second)
	for range offsets {
		select {
		case r := <-results:
			got = append(got, r.id)
			assert.GreaterOrEqual(t, r.late, time.Duration(0), "entry %d ran early", r.id)
		case <-timeout:
			t.Fatalf("only %v ran within 5s", got)
		}
	}
	assert.Equal(t, []int{2, 1, 3, 0}, got)
	assert.Zero(t, s.Len())
}
