package client

import (
	"context"
	"encoding/json"
	"sync"

	"github.com/wsauth/wsauth/protocol"
)

// The bounds of the messages waiting for Receive. Past them the read
// goroutine waits, so the client reads no more from the socket and the
// server, not the client, holds what the application has not taken.
const (
	receiveMessages = 64
	receiveBytes    = 1 << 20
)

// inbox holds the messages received and not yet taken by Receive: at most
// receiveMessages of them and receiveBytes of data in all, except that an
// empty inbox takes any one message whatever its size (Options.ReadLimit
// bounds it), as the server's outbound buffer does.
//
// One goroutine puts (the read goroutine of the current connection; the
// next connection's starts after it returned); any number take. Taking a
// message moves handed, the client's position as the application sees it,
// under the inbox's lock, so that it moves in the order of the messages.
type inbox struct {
	mu     sync.Mutex
	items  []entry
	bytes  int
	handed *streamPos

	ready chan struct{} // capacity 1: a message may be waiting
	room  chan struct{} // capacity 1: a message was taken
	ended chan struct{} // closed by end: no message will be put any more
}

// entry is one received message.
type entry struct {
	data json.RawMessage
	// at is the stream position the application has got once it took this
	// message, if moves: the message's own, or the start of the session of
	// an auth_ok that came after it.
	at    protocol.Position
	moves bool
}

func newInbox(handed *streamPos) *inbox {
	return &inbox{
		handed: handed,
		ready:  make(chan struct{}, 1),
		room:   make(chan struct{}, 1),
		ended:  make(chan struct{}),
	}
}

func signal(ch chan struct{}) {
	select {
	case ch <- struct{}{}:
	default:
	}
}

// put adds e, waiting while the inbox is full. If lost ends first (the
// connection died, or the client is closing), it adds e all the same:
// the message was read, and the inbox exceeds its bounds by that one
// message at most, since the connection's reader puts nothing after it.
func (in *inbox) put(e entry, lost <-chan struct{}) {
	for {
		in.mu.Lock()
		if n := len(in.items); n == 0 || (n < receiveMessages && in.bytes+len(e.data) <= receiveBytes) {
			in.addLocked(e)
			in.mu.Unlock()
			return
		}
		in.mu.Unlock()
		select {
		case <-in.room:
		case <-lost:
			in.mu.Lock()
			in.addLocked(e)
			in.mu.Unlock()
			return
		}
	}
}

func (in *inbox) addLocked(e entry) {
	in.items = append(in.items, e)
	in.bytes += len(e.data)
	signal(in.ready)
}

// mark records that the messages received from now on follow stream
// position at (an auth_ok's start): the application has got at once it has
// taken every message received so far.
func (in *inbox) mark(at protocol.Position) {
	in.mu.Lock()
	defer in.mu.Unlock()
	if n := len(in.items); n > 0 {
		in.items[n-1].at, in.items[n-1].moves = at, true
		return
	}
	in.handed.set(at)
}

// drain waits until every message put so far has been taken; false if
// stop ended first. Only the putting goroutine may call it: it shares the
// room signal with put.
func (in *inbox) drain(stop <-chan struct{}) bool {
	for {
		in.mu.Lock()
		empty := len(in.items) == 0
		in.mu.Unlock()
		if empty {
			return true
		}
		select {
		case <-in.room:
		case <-stop:
			return false
		}
	}
}

// take returns the oldest message, waiting until one arrives, the inbox is
// ended and empty (ok false), or ctx ends.
func (in *inbox) take(ctx context.Context) (data json.RawMessage, ok bool, err error) {
	for {
		in.mu.Lock()
		if len(in.items) > 0 {
			e := in.items[0]
			in.items[0] = entry{}
			in.items = in.items[1:]
			in.bytes -= len(e.data)
			if e.moves {
				in.handed.set(e.at)
			}
			data = e.data
			more := len(in.items) > 0
			in.mu.Unlock()
			signal(in.room)
			if more { // another taker may be waiting
				signal(in.ready)
			}
			return data, true, nil
		}
		in.mu.Unlock()
		select {
		case <-in.ended:
			in.mu.Lock()
			empty := len(in.items) == 0
			in.mu.Unlock()
			if empty {
				return nil, false, nil
			}
		case <-in.ready:
		case <-ctx.Done():
			return nil, false, ctx.Err()
		}
	}
}

// end marks the inbox as complete: takers get what is left, then ok false.
func (in *inbox) end() { close(in.ended) }

// size returns how many messages, and bytes of data, wait for Receive.
func (in *inbox) size() (n, bytes int) {
	in.mu.Lock()
	defer in.mu.Unlock()
	return len(in.items), in.bytes
}
