package deadline

import (
	"math"
	"sync"
	"sync/atomic"
	"time"

	"github.com/wsauth/wsauth/reauth"
)

// Entry is one scheduled callback. Embed it by value in the per-session
// struct that owns the deadline, so scheduling allocates nothing:
//
//	type conn struct {
//		expiry deadline.Entry
//		// ...
//	}
//
// The zero Entry is unscheduled. An Entry is scheduled on at most one
// Scheduler at a time and must not be copied once used (go vet reports
// copies); its fields belong to the Scheduler's lock.
type Entry struct {
	_     noCopy
	pos   int32  // 1-based position in Scheduler.heap, 0 when not scheduled
	owner uint32 // Scheduler.id of the heap holding the entry, 0 when not scheduled
	// seq is the order of the Schedule call that set when; it breaks ties
	// between equal deadlines. slotSeq is seq as it was when the heap
	// slot's deadline was set: the heap orders slots by it. The two differ,
	// or when is later than the slot's deadline, after a move to a later
	// deadline that left the slot alone (see Scheduler.Schedule).
	seq     uint32
	slotSeq uint32
	when    int64 // deadline, in nanoseconds since Scheduler.base, saturated
	fn      func()
}

// Scheduler runs callbacks at deadlines. It keeps every Entry in one min-heap
// and arms a single Clock.AfterFunc timer for the earliest deadline, so a
// million sessions cost a million Entries and one timer, not a million
// timers or goroutines.
//
// Callbacks run one at a time, in deadline order (ties in the order of their
// Schedule calls), in the goroutine of the timer that found them due; never
// two at once. They must not block for long: a slow callback delays every
// callback due after it. They may call any Scheduler method.
//
// Deadlines are compared with Clock.Now in wall-clock time, the time token
// expiries are expressed in. A callback never runs before its deadline by
// Clock.Now, but may run late: by the timer's latency, by callbacks queued
// before it, or by a forward step of the system clock.
//
// A Scheduler is safe for concurrent use.
type Scheduler struct {
	clock reauth.Clock
	base  time.Time // wall-clock origin of the heap's deadlines
	id    uint32    // marks the Entries in heap, see Entry.owner

	mu sync.Mutex
	// heap holds the entries with their deadlines, in nanoseconds since
	// base, saturated; see heap.go.
	heap []slot
	seq  uint32

	// timer is the armed AfterFunc, nil when none; it fires at armedAt or
	// earlier than the earliest entry (Cancel leaves it armed, see Cancel).
	// Only the timer armed with the current gen may fire callbacks: a
	// replaced or stopped timer that races its Stop finds gen changed and
	// does nothing.
	timer   reauth.Timer
	armedAt int64
	gen     uint64
	// firing is set while a timer goroutine runs due callbacks. No timer is
	// armed meanwhile; the firing goroutine arms one when it is done, which
	// is what keeps callbacks sequential.
	firing  bool
	stopped bool
}

// lastID is the id of the latest Scheduler. Ids repeat after 2^32 calls to
// New, which only weakens the check for Entries used on two Schedulers.
var lastID atomic.Uint32

// New returns a Scheduler on clock; a nil clock means SystemClock.
func New(clock reauth.Clock) *Scheduler {
	if clock == nil {
		clock = reauth.SystemClock
	}
	id := lastID.Add(1)
	for id == 0 { // 0 marks unscheduled Entries
		id = lastID.Add(1)
	}
	// Round(0) drops the monotonic reading: deadlines and Now are then
	// both measured on the wall clock, as a token's exp is.
	return &Scheduler{clock: clock, base: clock.Now().Round(0), id: id}
}

// Schedule arranges for fn to run at time at; at or before now means as soon
// as possible, which is still on a timer goroutine, never inside Schedule.
// If e is already scheduled it is moved to at and its fn replaced. After Stop,
// Schedule does nothing.
//
// Scheduling an unscheduled e and moving e earlier are O(log n). Moving e to
// a deadline no earlier than its current one, which is what a
// reauthentication does to a token's expiry, is O(1) and touches only e: the
// heap keeps e's old deadline, and when that deadline comes, the timer
// goroutine finds e there and moves it to its new one, in O(log n), instead
// of running fn. A firing also moves ahead of time a few of the entries that
// are next in line, so that the timer is usually armed for a real deadline;
// an entry that is moved later costs at most one early wakeup of the timer.
//
// Schedule allocates nothing unless e becomes the earliest entry with a
// deadline before the armed timer's: then it re-arms the timer (one
// Clock.AfterFunc).
func (s *Scheduler) Schedule(e *Entry, at time.Time, fn func()) {
	if fn == nil {
		panic("reauth: Schedule with nil func")
	}
	// Sub saturates, so the zero Time and far-future times are safe.
	when := int64(at.Sub(s.base))
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.stopped {
		return
	}
	if e.pos != 0 && e.owner != s.id {
		panic(errOwner)
	}
	seq := s.seq
	s.seq++
	e.fn = fn
	if e.pos != 0 && when >= e.when {
		// No earlier than e's current deadline, so no earlier than its
		// slot's either: the slot stays where it is, stale, until it
		// reaches the root (see next). The timer, armed no later than
		// the slot's deadline, needs nothing.
		e.when, e.seq = when, seq
		return
	}
	if e.pos == 0 {
		e.owner = s.id
		e.when, e.seq, e.slotSeq = when, seq, seq
		s.push(e, when)
	} else {
		i := index(e)
		s.checkSlot(e, i)
		e.when, e.seq = when, seq
		if when >= s.heap[i].when {
			// Earlier than e's deadline, but not than its stale slot's:
			// the slot stays, still no later than e.
			return
		}
		e.slotSeq = seq
		s.up(i, slot{when, e})
	}
	if e.pos == 1 && !s.firing && (s.timer == nil || when < s.armedAt) {
		s.arm()
	}
}

// Cancel unschedules e and reports whether it was scheduled. False means fn
// already ran, is running, or was never scheduled. After Cancel the Scheduler
// holds no reference to e or its fn. O(log n).
//
// Cancel leaves the timer alone, even when e was the earliest entry: the
// timer then fires early, finds nothing due and re-arms for the new earliest
// deadline. That costs at most one wasted wakeup per armed deadline, where
// stopping and re-arming would cost a timer allocation every time the
// earliest entry is cancelled or moved later. Schedule re-arms only when an
// entry becomes earlier than the armed timer.
func (s *Scheduler) Cancel(e *Entry) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if e.pos == 0 {
		return false
	}
	// The slot tells whether e is s's: no need for e.owner.
	i := index(e)
	s.checkSlot(e, i)
	s.removeAt(i)
	return true
}

// Scheduled reports whether e is waiting to run on s.
func (s *Scheduler) Scheduled(e *Entry) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.owns(e)
}

// Len returns how many entries are waiting to run.
func (s *Scheduler) Len() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.count()
}

// Stop stops the timer and drops every entry without running it; later
// Schedule calls are ignored. A callback already running when Stop is called
// finishes (Stop does not wait for it), but no other callback starts. Stop is
// idempotent.
func (s *Scheduler) Stop() {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.stopped {
		return
	}
	s.stopped = true
	s.gen++
	if s.timer != nil {
		s.timer.Stop()
		s.timer = nil
	}
	for _, x := range s.heap[min(heapRoot, len(s.heap)):] {
		x.e.pos = 0
		x.e.owner = 0
		x.e.fn = nil
	}
	s.heap = nil
}

// errOwner is the panic of a Scheduler asked to change an Entry that is
// scheduled elsewhere: touching it would corrupt another Scheduler's heap.
const errOwner = "reauth: Entry is scheduled on another Scheduler, or was copied"

// owns reports whether e is in s's heap.
func (s *Scheduler) owns(e *Entry) bool {
	i := index(e)
	return e.pos > 0 && e.owner == s.id && i < len(s.heap) && s.heap[i].e == e
}

// checkSlot panics unless e, which is scheduled, is at array index i of s's
// heap: it is on another Scheduler, or a copy of a scheduled Entry, which
// carries the original's position and owner. Moving an entry later does not
// look at its slot, so a copy is caught only by the operations that do.
func (s *Scheduler) checkSlot(e *Entry, i int) {
	if i >= len(s.heap) || s.heap[i].e != e {
		panic(errOwner)
	}
}

// now returns Clock.Now on the scale of the heap's deadlines.
func (s *Scheduler) now() int64 {
	return int64(s.clock.Now().Sub(s.base))
}

// arm replaces the timer with one for the earliest entry. s.mu is held and
// the heap is not empty.
func (s *Scheduler) arm() {
	if s.timer != nil {
		s.timer.Stop()
	}
	s.gen++
	gen := s.gen
	head := s.head().when
	var d time.Duration
	if now := s.now(); head > now {
		d = time.Duration(head - now)
		if d < 0 { // overflow: head and now are saturated extremes
			d = math.MaxInt64
		}
	}
	s.armedAt = head
	s.timer = s.clock.AfterFunc(d, func() { s.fire(gen) })
}

// fire is the timer callback. It runs every due entry, one at a time and
// without holding s.mu, then arms the timer for what is left.
func (s *Scheduler) fire(gen uint64) {
	s.mu.Lock()
	if gen != s.gen || s.timer == nil {
		// Replaced or stopped while firing: a newer timer (or none) is in
		// charge.
		s.mu.Unlock()
		return
	}
	s.timer = nil
	s.firing = true
	fn := s.next()
	s.mu.Unlock()
	if fn == nil {
		return
	}

	done := false
	defer func() {
		if !done { // fn panicked: do not leave the scheduler without a timer
			s.mu.Lock()
			s.endFiring()
			s.mu.Unlock()
		}
	}()
	for fn != nil {
		fn()
		s.mu.Lock()
		fn = s.next()
		s.mu.Unlock()
	}
	done = true
}

const (
	// maxRefresh bounds how many stale due slots next refreshes while
	// holding s.mu: a burst of them, as after a clock jump, keeps Schedule
	// and Cancel waiting no longer than as many pops would.
	maxRefresh = 16

	// refreshAhead is how many stale slots that are not due yet a firing
	// refreshes before it arms the timer, so that the timer is usually
	// armed for a real deadline rather than for a deadline an entry was
	// moved away from.
	refreshAhead = 8
)

// yield is what next returns to have fire release s.mu and call next again.
func yield() {}

// next pops the earliest entry if it is due and returns its fn. Popping one
// entry at a time, rather than every due entry at once, means Cancel and
// Stop keep working on entries due in the same batch until the moment they
// start. A stale slot at the root is refreshed instead of popped; after
// maxRefresh of them next returns yield, so that fire releases s.mu before
// going on. When nothing is due, next refreshes up to refreshAhead stale
// slots, ends the firing and returns nil. s.mu is held.
func (s *Scheduler) next() func() {
	if s.stopped {
		s.endFiring()
		return nil
	}
	now := s.now()
	for n := 0; s.count() > 0; n++ {
		top := s.head()
		if top.when > now {
			break
		}
		if stale(top) {
			if n == maxRefresh {
				return yield
			}
			s.refresh()
			continue
		}
		fn := top.e.fn
		s.removeAt(heapRoot)
		return fn
	}
	for n := 0; n < refreshAhead && s.count() > 0 && stale(s.head()); n++ {
		// Not due: its deadline, and so every other slot's, is after now.
		s.refresh()
	}
	s.endFiring()
	return nil
}

// endFiring arms the timer for the earliest entry, if any. s.mu is held.
func (s *Scheduler) endFiring() {
	s.firing = false
	if !s.stopped && s.count() > 0 {
		s.arm()
	}
}

// noCopy makes go vet's copylocks check report copies of an Entry, whose
// address is in a Scheduler's heap.
type noCopy struct{}

func (*noCopy) Lock()   {}
func (*noCopy) Unlock() {}
