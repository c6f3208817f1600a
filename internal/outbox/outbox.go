// Package outbox is a session's bounded queue of outbound application
// messages.
package outbox

import (
	"encoding/json"
	"errors"
)

// ErrOverflow is returned by Queue.Push when the message would take a
// non-empty outbox past its message or byte bound. The outbox is left
// unchanged.
var ErrOverflow = errors.New("outbox: full")

// Item is one queued outbound application message: the encoded frame as it
// goes on the wire, and the application data inside it (a sub-slice of Frame
// or a separate slice), which is what Undelivered hands back.
type Item struct {
	Frame []byte
	Data  json.RawMessage
	// Epoch and Seq are the message's place in its user's stream; Seq is
	// 0 for a message outside any stream.
	Epoch string
	Seq   uint64
}

// Queue is a bounded FIFO of outbound application messages. It counts
// messages and frame bytes and refuses a Push past either bound, so a client
// that stops reading, or a session waiting for a fresh token, cannot grow the
// server's memory without limit. The zero Queue is not usable: use New.
//
// Queue is not safe for concurrent use: its owner serialises access.
type Queue struct {
	items    []Item // ring buffer, len(items) is the capacity in use
	head     int
	n        int
	bytes    int
	maxMsgs  int
	maxBytes int
}

// New returns an empty outbox holding at most maxMsgs messages and
// maxBytes bytes of frames. Both bounds must be positive.
func New(maxMsgs, maxBytes int) *Queue {
	if maxMsgs <= 0 || maxBytes <= 0 {
		panic("outbox: New bounds must be positive")
	}
	return &Queue{maxMsgs: maxMsgs, maxBytes: maxBytes}
}

// Push appends an item. It returns ErrOverflow, and keeps nothing, when the
// item would take the outbox past its message or byte bound. An empty
// outbox takes any one item, whatever its size: a message larger than the
// byte bound can still be delivered to a client that keeps up.
func (o *Queue) Push(it Item) error {
	if o.n > 0 && !o.fits(1, len(it.Frame)) {
		return ErrOverflow
	}
	o.push(it)
	return nil
}

// Full reports whether the outbox is at or past one of its bounds.
func (o *Queue) Full() bool { return o.n >= o.maxMsgs || o.bytes >= o.maxBytes }

func (o *Queue) fits(msgs, bytes int) bool {
	return o.n+msgs <= o.maxMsgs && o.bytes+bytes <= o.maxBytes
}

// PushFrontAll puts items before everything already queued, in their
// order, whatever the bounds: it is how a resumed session's backlog goes
// ahead of newer traffic (the broker's bounds per user bound it). Until the
// queue is back within its bounds, Push refuses.
func (o *Queue) PushFrontAll(items []Item) {
	rest := o.Drain()
	for _, it := range items {
		o.push(it)
	}
	for _, it := range rest {
		o.push(it)
	}
}

// push appends an item the caller checked fits.
func (o *Queue) push(it Item) {
	if o.n == len(o.items) {
		o.grow()
	}
	o.items[(o.head+o.n)%len(o.items)] = it
	o.n++
	o.bytes += len(it.Frame)
}

func (o *Queue) grow() {
	size := 2 * len(o.items)
	if size == 0 {
		size = 4
	}
	if size > o.maxMsgs && o.n < o.maxMsgs {
		size = o.maxMsgs
	}
	items := make([]Item, size)
	for i := 0; i < o.n; i++ {
		items[i] = o.items[(o.head+i)%len(o.items)]
	}
	o.items, o.head = items, 0
}

// Pop removes and returns the oldest item.
func (o *Queue) Pop() (Item, bool) {
	if o.n == 0 {
		return Item{}, false
	}
	it := o.items[o.head]
	o.items[o.head] = Item{} // drop the reference for the GC
	o.head = (o.head + 1) % len(o.items)
	o.n--
	o.bytes -= len(it.Frame)
	if o.n == 0 {
		o.head = 0
	}
	return it, true
}

// Peek copies the oldest items, up to len(dst) of them, into dst without
// removing them, and returns how many it copied. A writer that peeks, writes
// and then Discards keeps what it is writing counted against the bounds.
func (o *Queue) Peek(dst []Item) int {
	n := min(len(dst), o.n)
	for i := range n {
		dst[i] = o.items[(o.head+i)%len(o.items)]
	}
	return n
}

// Discard removes the n oldest items; n must not exceed Len.
func (o *Queue) Discard(n int) {
	if n > o.n {
		panic("outbox: Discard past the end of the outbox")
	}
	for range n {
		o.Pop()
	}
}

// Drain removes and returns every item, oldest first.
func (o *Queue) Drain() []Item {
	if o.n == 0 {
		return nil
	}
	out := make([]Item, 0, o.n)
	for {
		it, ok := o.Pop()
		if !ok {
			return out
		}
		out = append(out, it)
	}
}

// Len returns the number of queued items.
func (o *Queue) Len() int { return o.n }

// Bytes returns the total size of the queued frames.
func (o *Queue) Bytes() int { return o.bytes }
