// Package session holds the building blocks of a wsauth session that do no
// I/O: the session State, the bounded Outbox that queues (and, while a
// session's token is expired, buffers) outbound frames, and the Registry that
// finds sessions by id and by subject.
//
// # Goroutines
//
// Registry is safe for concurrent use. Outbox is not: its owner (a wsauth
// session) guards it with the session's own mutex, because every change to the
// outbox goes together with a change of the session's state.
//
// # Example
//
//	ob := session.NewOutbox(256, 1<<20)
//	if err := ob.Push(frame, data); errors.Is(err, session.ErrOverflow) {
//		// close the session with protocol.CloseBufferOverflow
//	}
//	item, ok := ob.Pop()
package session
