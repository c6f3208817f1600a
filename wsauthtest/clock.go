package wsauthtest

import (
	"container/heap"
	"sync"
	"time"

	"github.com/wsauth/wsauth/reauth"
)

var _ reauth.Clock = (*Clock)(nil)

// Clock is a fake reauth.Clock. Time stands still until Advance or Set moves
// it, and AfterFunc callbacks run synchronously inside those calls, in the
// caller's goroutine, so a test decides exactly when and where every timer
// fires and needs no sleeps. Clock starts no goroutines.
//
// Unlike time.AfterFunc, a callback gets no goroutine of its own: it runs in
// the goroutine that called Advance or Set, which waits for it. It may call
// any Clock method, Advance included.
//
// A Clock is safe for concurrent use. Its lock is never held while a callback
// runs. The zero Clock reads the zero time.Time; use NewClock.
type Clock struct {
	mu     sync.Mutex
	now    time.Time
	timers clockHeap
	seq    uint64 // creation order, breaks ties between equal deadlines
}

// NewClock returns a fake clock set to start. The monotonic clock reading
// of start, if any, is dropped, so every time the clock returns is a plain
// wall-clock time.
func NewClock(start time.Time) *Clock {
	return &Clock{now: start.Round(0)}
}

// Now returns the clock's current time.
func (c *Clock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

// AfterFunc arranges for f to run once the clock has been moved forward by
// d, inside the Advance or Set call that gets it there. A d <= 0 makes f due
// now: it runs on the next Advance or Set, Advance(0) included, never inside
// AfterFunc itself (the caller may hold locks f needs).
func (c *Clock) AfterFunc(d time.Duration, f func()) reauth.Timer {
	if f == nil {
		panic("wsauthtest: Clock.AfterFunc with nil func")
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	t := &clockTimer{clock: c, when: c.now.Add(max(d, 0)), seq: c.seq, f: f}
	c.seq++
	heap.Push(&c.timers, t)
	return t
}

// Advance moves the clock forward by d, which must not be negative. Every
// AfterFunc callback whose deadline is at or before the new time runs
// synchronously, in deadline order (ties in the order AfterFunc was called).
// While a callback runs, Now returns that callback's deadline; when Advance
// returns, Now returns the new time. Callbacks scheduled by a callback run
// in the same Advance call if their deadline falls within it. If a callback
// panics, the clock stays at that callback's deadline.
func (c *Clock) Advance(d time.Duration) {
	if d < 0 {
		panic("wsauthtest: Clock.Advance with negative duration " + d.String())
	}
	c.mu.Lock()
	t := c.now.Add(d)
	c.mu.Unlock()
	c.advanceTo(t)
}

// Set moves the clock to t, running due callbacks as Advance does. t must
// not be before Now.
func (c *Clock) Set(t time.Time) {
	t = t.Round(0)
	c.mu.Lock()
	before := t.Before(c.now)
	c.mu.Unlock()
	if before {
		panic("wsauthtest: Clock.Set moves time backwards")
	}
	c.advanceTo(t)
}

// Pending returns how many AfterFunc callbacks are waiting to run.
func (c *Clock) Pending() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return len(c.timers)
}

// advanceTo runs due callbacks one at a time, re-reading the heap after each
// so that timers a callback adds or stops are taken into account. Time never
// moves backwards, even when concurrent Advance calls interleave.
func (c *Clock) advanceTo(t time.Time) {
	for {
		c.mu.Lock()
		if len(c.timers) == 0 || c.timers[0].when.After(t) {
			if t.After(c.now) {
				c.now = t
			}
			c.mu.Unlock()
			return
		}
		next := heap.Pop(&c.timers).(*clockTimer)
		if next.when.After(c.now) {
			c.now = next.when
		}
		f := next.f
		next.f = nil
		c.mu.Unlock()
		f()
	}
}

// clockTimer is one pending AfterFunc call of a Clock.
type clockTimer struct {
	clock *Clock
	when  time.Time
	seq   uint64
	f     func()
	index int // position in clock.timers, -1 once run or stopped
}

// Stop removes the timer from its clock. It reports false if the callback
// already ran (or is running) or the timer was already stopped.
func (t *clockTimer) Stop() bool {
	c := t.clock
	c.mu.Lock()
	defer c.mu.Unlock()
	if t.index < 0 {
		return false
	}
	heap.Remove(&c.timers, t.index)
	t.f = nil
	return true
}

// clockHeap orders pending timers by deadline, then creation order.
type clockHeap []*clockTimer

func (h clockHeap) Len() int { return len(h) }

func (h clockHeap) Less(i, j int) bool {
	if !h[i].when.Equal(h[j].when) {
		return h[i].when.Before(h[j].when)
	}
	return h[i].seq < h[j].seq
}

func (h clockHeap) Swap(i, j int) {
	h[i], h[j] = h[j], h[i]
	h[i].index = i
	h[j].index = j
}

func (h *clockHeap) Push(x any) {
	t := x.(*clockTimer)
	t.index = len(*h)
	*h = append(*h, t)
}

func (h *clockHeap) Pop() any {
	old := *h
	n := len(old) - 1
	t := old[n]
	old[n] = nil
	t.index = -1
	*h = old[:n]
	return t
}
