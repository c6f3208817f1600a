package wsauth

import (
	"slices"
	"sync"
	"time"

	"github.com/wsauth/wsauth/internal/deadline"
	"github.com/wsauth/wsauth/internal/outbox"
)

// resumeStore keeps, per principal, the messages its closed sessions did
// not deliver, for Options.ResumeFor, and gives them to the principal's
// next session after its auth_ok.
//
// Bounds: per principal like one session's outbox (BufferMessages,
// BufferBytes), and in all ResumeMaxPrincipals principals and
// ResumeMaxBytes bytes; past the total bounds the principal kept longest
// is handed to OnUndelivered first. Each message is kept for ResumeFor from
// the moment it was first kept, whatever else is kept after it.
//
// Copies: a message sent to several sessions of one principal (two tabs) is
// one item with one Seq in each of their outboxes. When both tabs close
// with it undelivered, the store keeps it once.
type resumeStore struct {
	srv *Server
	mu  sync.Mutex
	m   map[Principal]*resumed
	// The principals in the order they were first kept: head is the one
	// kept longest, evicted first.
	head, tail *resumed
	bytes      int // frame bytes kept, over all principals
	// flushed: Shutdown handed everything over. Nothing is kept after
	// that: nobody would flush it again, and the stopped scheduler would
	// never expire it.
	flushed bool
}

type resumed struct {
	p          Principal
	items      []keptItem // in Seq order
	bytes      int
	entry      deadline.Entry
	prev, next *resumed
}

type keptItem struct {
	outbox.Item
	until time.Time // when its ResumeFor ends
}

// handoff is what the store gives up, to be handed to OnUndelivered once
// its lock is released.
type handoff struct {
	p     Principal
	items []outbox.Item
}

func newResumeStore(srv *Server) *resumeStore {
	return &resumeStore{srv: srv, m: make(map[Principal]*resumed)}
}

// put keeps items for p. What does not fit, and principals evicted to make
// room, go to OnUndelivered.
func (rs *resumeStore) put(p Principal, items []outbox.Item) {
	now := rs.srv.opts.Clock.Now()
	rs.mu.Lock()
	if rs.flushed {
		rs.mu.Unlock()
		rs.srv.handOver(p, items)
		return
	}
	r := rs.m[p]
	if r == nil {
		r = &resumed{p: p}
		rs.m[p] = r
		rs.link(r)
	}
	kept := len(r.items) // sorted: the items of earlier puts
	added := false
	for _, it := range items {
		if has(r.items[:kept], it.Seq) {
			continue // a copy another session of p left already
		}
		r.items = append(r.items, keptItem{Item: it, until: now.Add(rs.srv.opts.ResumeFor)})
		r.bytes += len(it.Frame)
		rs.bytes += len(it.Frame)
		added = true
	}
	if added {
		slices.SortStableFunc(r.items, func(a, b keptItem) int { return compareSeq(a.Seq, b.Seq) })
	}
	var out []handoff
	// Per principal: the newest do not fit.
	var rejected []outbox.Item
	for len(r.items) > rs.srv.opts.BufferMessages || r.bytes > rs.srv.opts.BufferBytes && len(r.items) > 1 {
		last := r.items[len(r.items)-1]
		r.items = r.items[:len(r.items)-1]
		r.bytes -= len(last.Frame)
		rs.bytes -= len(last.Frame)
		rejected = append(rejected, last.Item)
	}
	if len(rejected) > 0 {
		slices.Reverse(rejected)
		out = append(out, handoff{p, rejected})
	}
	// In all: the principals kept longest go first.
	for len(rs.m) > rs.srv.opts.ResumeMaxPrincipals || rs.bytes > rs.srv.opts.ResumeMaxBytes {
		out = append(out, rs.removeLocked(rs.head))
	}
	switch {
	case rs.m[p] != r:
	case len(r.items) == 0:
		rs.removeLocked(r)
	default:
		rs.scheduleLocked(r)
	}
	rs.mu.Unlock()
	rs.handOver(out)
}

// has reports whether items, in Seq order, hold the message seq.
func has(items []keptItem, seq uint64) bool {
	_, found := slices.BinarySearchFunc(items, seq, func(k keptItem, seq uint64) int { return compareSeq(k.Seq, seq) })
	return found
}

func compareSeq(a, b uint64) int {
	switch {
	case a < b:
		return -1
	case a > b:
		return 1
	}
	return 0
}

// scheduleLocked arms r's entry for the first of its items to expire.
func (rs *resumeStore) scheduleLocked(r *resumed) {
	first := r.items[0].until
	for _, k := range r.items[1:] {
		if k.until.Before(first) {
			first = k.until
		}
	}
	rs.srv.sched.Schedule(&r.entry, first, func() { rs.expire(r) })
}

// take removes and returns what is kept for p.
func (rs *resumeStore) take(p Principal) []outbox.Item {
	rs.mu.Lock()
	defer rs.mu.Unlock()
	r := rs.m[p]
	if r == nil {
		return nil
	}
	return rs.removeLocked(r).items
}

// removeLocked forgets r and returns its items.
func (rs *resumeStore) removeLocked(r *resumed) handoff {
	delete(rs.m, r.p)
	rs.unlink(r)
	rs.srv.sched.Cancel(&r.entry)
	rs.bytes -= r.bytes
	items := make([]outbox.Item, len(r.items))
	for i, k := range r.items {
		items[i] = k.Item
	}
	return handoff{r.p, items}
}

// expire runs on the scheduler goroutine when the first of r's items
// reaches the end of its window: those whose window ended go to
// OnUndelivered, the others stay.
func (rs *resumeStore) expire(r *resumed) {
	now := rs.srv.opts.Clock.Now()
	rs.mu.Lock()
	if rs.m[r.p] != r {
		rs.mu.Unlock()
		return
	}
	var gone []outbox.Item
	kept := r.items[:0]
	for _, k := range r.items {
		if k.until.After(now) {
			kept = append(kept, k)
			continue
		}
		gone = append(gone, k.Item)
		r.bytes -= len(k.Frame)
		rs.bytes -= len(k.Frame)
	}
	clear(r.items[len(kept):])
	r.items = kept
	var out []handoff
	if len(r.items) == 0 {
		out = append(out, rs.removeLocked(r))
	} else {
		rs.scheduleLocked(r)
	}
	if len(gone) > 0 {
		out = append(out, handoff{r.p, gone})
	}
	rs.mu.Unlock()
	rs.handOver(out)
}

// flush hands everything still kept to OnUndelivered (on Shutdown), and
// everything put after it too.
func (rs *resumeStore) flush() {
	rs.mu.Lock()
	rs.flushed = true
	var out []handoff
	for rs.head != nil {
		out = append(out, rs.removeLocked(rs.head))
	}
	rs.mu.Unlock()
	rs.handOver(out)
}

func (rs *resumeStore) handOver(out []handoff) {
	for _, h := range out {
		rs.srv.handOver(h.p, h.items)
	}
}

func (rs *resumeStore) link(r *resumed) {
	r.prev = rs.tail
	if rs.tail != nil {
		rs.tail.next = r
	} else {
		rs.head = r
	}
	rs.tail = r
}

func (rs *resumeStore) unlink(r *resumed) {
	if r.prev != nil {
		r.prev.next = r.next
	} else {
		rs.head = r.next
	}
	if r.next != nil {
		r.next.prev = r.prev
	} else {
		rs.tail = r.prev
	}
	r.prev, r.next = nil, nil
}
