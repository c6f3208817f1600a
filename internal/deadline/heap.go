package deadline

// The scheduler's entries live in a 4-ary min-heap, as the Go runtime keeps
// its timers: half the depth of a binary heap, so a push or a decrease
// touches half as many slots, which matters once the heap no longer fits in
// cache. Each entry records its 1-based position so Cancel and a move
// earlier find it in O(1) and fix the heap in O(log n).
//
// A slot holds the entry's deadline next to its pointer, so sifting compares
// deadlines without dereferencing entries: at a million sessions every Entry
// lives in a different session struct, and each dereference was a cache
// miss. Only moved entries are touched, to update their position, and only
// equal deadlines read the entries' slotSeq. The root sits at index heapRoot
// so that the four children of a node share one 64-byte cache line (4 × 16
// bytes, given the page-aligned array of a large heap): a sift-down level
// costs one line, not two.
//
// A slot's deadline may be earlier than its entry's: moving an entry later
// only records the new deadline in the Entry (see Scheduler.Schedule), and
// the slot keeps the old one until it reaches the root, where refresh sifts
// it down to the real one. The heap is ordered by the slots' keys (deadline,
// slotSeq), each no later than its entry's real (when, seq), so a fresh root
// is the earliest entry by real deadline, and a stale root is refreshed
// before anything is compared with it.

const (
	heapArity = 4

	// heapRoot is the array index of the root; the slots before it are
	// padding that aligns every group of siblings to a cache line.
	heapRoot = heapArity - 1

	// shrinkMinCap is the capacity below which the heap's backing array is
	// never shrunk: small arrays are not worth the copy.
	shrinkMinCap = 1024

	// maxEntries keeps positions within Entry.pos (int32).
	maxEntries = 1<<31 - 1 - heapRoot
)

// slot is one heap element: an entry and a copy of its deadline.
type slot struct {
	when int64 // the entry's deadline, as in Scheduler.Schedule
	e    *Entry
}

// before reports whether slot a comes before slot b: earlier deadline first,
// then the earlier Schedule call. seq wraps; the serial-number comparison
// only misorders ties between entries scheduled 2^31 calls apart, and never
// touches deadline order.
func before(a, b slot) bool {
	if a.when != b.when {
		return a.when < b.when
	}
	return int32(a.e.slotSeq-b.e.slotSeq) < 0
}

// stale reports whether x's entry was moved later than x's deadline.
// Comparing the deadlines, not only the seqs, keeps a wrapped seq from ever
// passing a stale slot for a fresh one: that could run a callback early.
func stale(x slot) bool { return x.when != x.e.when || x.e.slotSeq != x.e.seq }

// parent returns the array index of the parent of the node at index i > heapRoot.
func parent(i int) int { return (i-heapRoot-1)/heapArity + heapRoot }

// firstChild returns the array index of the first child of the node at index i.
func firstChild(i int) int { return heapArity*(i-heapRoot) + 1 + heapRoot }

// index returns the array index of e, which is in the heap.
func index(e *Entry) int { return int(e.pos) - 1 + heapRoot }

// setIndex records that e is at array index i.
func setIndex(e *Entry, i int) { e.pos = int32(i + 1 - heapRoot) }

// count returns how many entries the heap holds.
func (s *Scheduler) count() int { return max(len(s.heap)-heapRoot, 0) }

// head returns the earliest slot; the heap is not empty.
func (s *Scheduler) head() slot { return s.heap[heapRoot] }

// push adds e, which is not in the heap and fresh, with deadline when.
func (s *Scheduler) push(e *Entry, when int64) {
	if s.count() >= maxEntries {
		panic("reauth: too many scheduled entries")
	}
	if s.heap == nil {
		s.heap = make([]slot, heapRoot, heapRoot+heapArity)
	}
	s.heap = append(s.heap, slot{when, e})
	s.up(len(s.heap)-1, slot{when, e})
}

// refresh gives the root slot, which is stale, its entry's real deadline and
// sifts it down to its place.
func (s *Scheduler) refresh() {
	e := s.heap[heapRoot].e
	e.slotSeq = e.seq
	s.down(heapRoot, slot{e.when, e})
}

// removeAt takes the entry at array index i out of the heap, clears its
// position, owner and func, so the heap keeps no reference to the func, and
// shrinks the backing array when it has become mostly empty.
func (s *Scheduler) removeAt(i int) *Entry {
	h := s.heap
	last := len(h) - 1
	e := h[i].e
	x := h[last]
	h[last] = slot{}
	s.heap = h[:last]
	if i != last {
		if i > heapRoot && before(x, h[parent(i)]) {
			s.up(i, x)
		} else {
			s.down(i, x)
		}
	}
	e.pos = 0
	e.owner = 0
	e.fn = nil
	if c := cap(s.heap); c > shrinkMinCap && len(s.heap) < c/4 {
		// Half, not a quarter: the new array is still at most half full,
		// so a workload hovering around the threshold does not copy on
		// every call.
		shrunk := make([]slot, len(s.heap), c/2)
		copy(shrunk, s.heap)
		s.heap = shrunk
	}
	return e
}

// up moves x, which belongs at array index i (whose old content is dead),
// towards the root until its parent is before it, and stores it there.
func (s *Scheduler) up(i int, x slot) {
	h := s.heap
	for i > heapRoot {
		p := parent(i)
		if !before(x, h[p]) {
			break
		}
		h[i] = h[p]
		setIndex(h[i].e, i)
		i = p
	}
	h[i] = x
	setIndex(x.e, i)
}

// down moves x, which belongs at array index i (whose old content is dead),
// towards the leaves until no child is before it, and stores it there.
func (s *Scheduler) down(i int, x slot) {
	h := s.heap
	n := len(h)
	for {
		first := firstChild(i)
		if first >= n {
			break
		}
		m := first
		if first+heapArity <= n {
			// All four children: the common case, unrolled.
			c := h[first : first+heapArity : first+heapArity]
			m1, m2 := 0, 2
			if before(c[1], c[0]) {
				m1 = 1
			}
			if before(c[3], c[2]) {
				m2 = 3
			}
			if before(c[m2], c[m1]) {
				m1 = m2
			}
			m += m1
		} else {
			for c := first + 1; c < n; c++ {
				if before(h[c], h[m]) {
					m = c
				}
			}
		}
		if !before(h[m], x) {
			break
		}
		h[i] = h[m]
		setIndex(h[i].e, i)
		i = m
	}
	h[i] = x
	setIndex(x.e, i)
}
