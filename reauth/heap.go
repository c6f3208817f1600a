package reauth

// The scheduler's entries live in a 4-ary min-heap, as the Go runtime keeps
// its timers: half the depth of a binary heap, so a push or a decrease
// touches half as many entries, which matters once the entries no longer
// fit in cache. Each entry records its 1-based position so Cancel and
// reschedule find it in O(1) and fix the heap in O(log n).

const (
	heapArity = 4

	// shrinkMinCap is the capacity below which the heap's backing array is
	// never shrunk: small arrays are not worth the copy.
	shrinkMinCap = 1024

	// maxEntries keeps positions within Entry.pos (int32).
	maxEntries = 1<<31 - 1
)

// before reports whether a fires before b: earlier deadline first, then the
// earlier Schedule call. seq wraps; the serial-number comparison only
// misorders ties between entries scheduled 2^31 calls apart, and never
// touches deadline order.
func before(a, b *Entry) bool {
	if a.when != b.when {
		return a.when < b.when
	}
	return int32(a.seq-b.seq) < 0
}

// push adds e, which is not in the heap.
func (s *Scheduler) push(e *Entry) {
	if len(s.heap) >= maxEntries {
		panic("reauth: too many scheduled entries")
	}
	s.heap = append(s.heap, e)
	s.up(len(s.heap) - 1)
}

// removeAt takes the entry at index i out of the heap, clears its position
// and func so the heap keeps no reference to either, and shrinks the
// backing array when it has become mostly empty.
func (s *Scheduler) removeAt(i int) *Entry {
	h := s.heap
	last := len(h) - 1
	e := h[i]
	if i != last {
		h[i] = h[last]
		h[i].pos = int32(i + 1)
	}
	h[last] = nil
	s.heap = h[:last]
	if i != last {
		s.fix(i)
	}
	e.pos = 0
	e.fn = nil
	if c := cap(s.heap); c > shrinkMinCap && len(s.heap) < c/4 {
		// Half, not a quarter: the new array is still at most half full,
		// so a workload hovering around the threshold does not copy on
		// every call.
		shrunk := make([]*Entry, len(s.heap), c/2)
		copy(shrunk, s.heap)
		s.heap = shrunk
	}
	return e
}

// fix restores the heap order after the entry at index i changed deadline.
func (s *Scheduler) fix(i int) {
	if i > 0 && before(s.heap[i], s.heap[(i-1)/heapArity]) {
		s.up(i)
	} else {
		s.down(i)
	}
}

func (s *Scheduler) up(i int) {
	h := s.heap
	e := h[i]
	for i > 0 {
		p := (i - 1) / heapArity
		if !before(e, h[p]) {
			break
		}
		h[i] = h[p]
		h[i].pos = int32(i + 1)
		i = p
	}
	h[i] = e
	e.pos = int32(i + 1)
}

func (s *Scheduler) down(i int) {
	h := s.heap
	n := len(h)
	e := h[i]
	for {
		first := heapArity*i + 1
		if first >= n {
			break
		}
		m := first
		for c := first + 1; c < min(first+heapArity, n); c++ {
			if before(h[c], h[m]) {
				m = c
			}
		}
		if !before(h[m], e) {
			break
		}
		h[i] = h[m]
		h[i].pos = int32(i + 1)
		i = m
	}
	h[i] = e
	e.pos = int32(i + 1)
}
