package client

import (
	"context"
	"encoding/json"
	"sync"
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
// next connection's starts after it returned); any number take.
type inbox struct {
	mu    sync.Mutex
	items []json.RawMessage
	bytes int

	ready chan struct{} // capacity 1: a message may be waiting
	room  chan struct{} // capacity 1: a message was taken
	ended chan struct{} // closed by end: no message will be put any more
}

func newInbox() *inbox {
	return &inbox{
		ready: make(chan struct{}, 1),
		room:  make(chan struct{}, 1),
		ended: make(chan struct{}),
	}
}

func signal(ch chan struct{}) {
	select {
	case ch <- struct{}{}:
	default:
	}
}

// put adds data, waiting while the inbox is full. If lost ends first (the
// connection died, or the client is closing), it adds data all the same:
// the message was read, and the inbox exceeds its bounds by that one
// message at most, since the connection's reader puts nothing after it.
func (in *inbox) put(data json.RawMessage, lost <-chan struct{}) {
	for {
		in.mu.Lock()
		if n := len(in.items); n == 0 || (n < receiveMessages && in.bytes+len(data) <= receiveBytes) {
			in.addLocked(data)
			in.mu.Unlock()
			return
		}
		in.mu.Unlock()
		select {
		case <-in.room:
		case <-lost:
			in.mu.Lock()
			in.addLocked(data)
			in.mu.Unlock()
			return
		}
	}
}

func (in *inbox) addLocked(data json.RawMessage) {
	in.items = append(in.items, data)
	in.bytes += len(data)
	signal(in.ready)
}

// take returns the oldest message, waiting until one arrives, the inbox is
// ended and empty (ok false), or ctx ends.
func (in *inbox) take(ctx context.Context) (data json.RawMessage, ok bool, err error) {
	for {
		in.mu.Lock()
		if len(in.items) > 0 {
			data = in.items[0]
			in.items[0] = nil
			in.items = in.items[1:]
			in.bytes -= len(data)
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
