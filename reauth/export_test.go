package reauth

import "fmt"

// CheckInvariants reports the first broken internal invariant of s: heap
// order, positions, and the armed timer covering the earliest entry.
func CheckInvariants(s *Scheduler) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	for i, e := range s.heap {
		if int(e.pos) != i+1 {
			return fmt.Errorf("heap[%d].pos = %d", i, e.pos)
		}
		if e.fn == nil {
			return fmt.Errorf("heap[%d].fn is nil", i)
		}
		if i > 0 {
			if p := (i - 1) / heapArity; before(e, s.heap[p]) {
				return fmt.Errorf("heap[%d] before its parent heap[%d]", i, p)
			}
		}
	}
	if s.stopped {
		if len(s.heap) != 0 || s.timer != nil {
			return fmt.Errorf("stopped with %d entries, timer %v", len(s.heap), s.timer)
		}
		return nil
	}
	if !s.firing && len(s.heap) > 0 {
		if s.timer == nil {
			return fmt.Errorf("%d entries and no timer", len(s.heap))
		}
		if s.armedAt > s.heap[0].when {
			return fmt.Errorf("timer armed for %d, after the earliest entry %d", s.armedAt, s.heap[0].when)
		}
	}
	return nil
}

// HeapCap returns the capacity of s's heap array.
func HeapCap(s *Scheduler) int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return cap(s.heap)
}
