package deadline

import "fmt"

// CheckInvariants reports the first broken internal invariant of s: heap
// order, positions and owners, slots no later than their entries, and the
// armed timer covering the earliest slot.
func CheckInvariants(s *Scheduler) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if len(s.heap) > 0 && len(s.heap) < heapRoot {
		return fmt.Errorf("heap of length %d, shorter than its padding", len(s.heap))
	}
	for i := heapRoot; i < len(s.heap); i++ {
		e := s.heap[i].e
		if e == nil {
			return fmt.Errorf("heap[%d] is empty", i)
		}
		if index(e) != i {
			return fmt.Errorf("heap[%d].pos = %d", i, e.pos)
		}
		if e.owner != s.id {
			return fmt.Errorf("heap[%d].owner = %d, want %d", i, e.owner, s.id)
		}
		if w := s.heap[i].when; w > e.when || w == e.when && int32(e.seq-e.slotSeq) < 0 {
			return fmt.Errorf("heap[%d] at (%d, %d), after its entry's deadline (%d, %d)", i, w, e.slotSeq, e.when, e.seq)
		}
		if e.fn == nil {
			return fmt.Errorf("heap[%d].fn is nil", i)
		}
		if i > heapRoot {
			if p := parent(i); before(s.heap[i], s.heap[p]) {
				return fmt.Errorf("heap[%d] before its parent heap[%d]", i, p)
			}
		}
	}
	if s.stopped {
		if s.count() != 0 || s.timer != nil {
			return fmt.Errorf("stopped with %d entries, timer %v", s.count(), s.timer)
		}
		return nil
	}
	if !s.firing && s.count() > 0 {
		if s.timer == nil {
			return fmt.Errorf("%d entries and no timer", s.count())
		}
		if s.armedAt > s.head().when {
			return fmt.Errorf("timer armed for %d, after the earliest entry %d", s.armedAt, s.head().when)
		}
	}
	return nil
}

// HeapCap returns how many entries s's heap array has room for.
func HeapCap(s *Scheduler) int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return max(cap(s.heap)-heapRoot, 0)
}

// Stale returns how many of s's heap slots hold a deadline earlier than
// their entry's: entries moved later and not yet refreshed.
func Stale(s *Scheduler) int {
	s.mu.Lock()
	defer s.mu.Unlock()
	n := 0
	for _, x := range s.heap[min(heapRoot, len(s.heap)):] {
		if stale(x) {
			n++
		}
	}
	return n
}

// SetSeq sets the seq the next Schedule call on s gets, as if s had seen
// that many calls.
func SetSeq(s *Scheduler, seq uint32) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.seq = seq
}
