// Package deadline schedules the deadlines of authenticated sessions: the auth
// timeout of a new connection, the moment to ask for a fresh token, the
// token's expiry and the grace period after it.
//
// A server may hold a million sessions, each with a deadline that moves on
// every reauthentication. A time.AfterFunc per session would cost a timer and
// a closure per session, and a goroutine for each one that fires. A Scheduler
// instead keeps all deadlines in one heap of Entry values, which callers
// embed in their own session structs, and arms a single Clock.AfterFunc
// timer for the earliest one. Schedule and Cancel are O(log n) and allocate
// nothing, re-arming that timer aside. Moving a deadline later, as every
// reauthentication does, is O(1): the heap catches up on the timer's
// goroutine when the old deadline comes, instead of running the callback.
//
// # Goroutines
//
// Callbacks run in the goroutine of the Scheduler's timer (with SystemClock,
// the goroutine time.AfterFunc starts; with a fake clock such as
// wsauthtest.Clock, the goroutine that advances it). They run one at a time
// and in deadline order, so a callback must not block: it should signal the
// session's own goroutine (cancel a context, close a channel), not close the
// connection or do other I/O that may wait.
// A callback may call Schedule, Cancel and Stop, including for its own Entry.
// Schedule never runs a callback itself, even for a past deadline, so callers
// may hold their own locks while calling it.
//
// A callback may still run just after a Cancel from another goroutine
// returned false: false means it was already running or about to. Callers
// whose callback must not act after a cancellation check their own state in
// the callback.
//
// # Example
//
// The session's goroutine owns the connection; the callback only tells it
// to end, through a context.CancelCauseFunc, which never blocks.
//
//	type session struct {
//		expiry deadline.Entry
//		cancel context.CancelCauseFunc
//	}
//
//	s := deadline.New(nil) // SystemClock
//	defer s.Stop()
//
//	expire := func() {
//		sess.cancel(&protocol.CloseError{Code: protocol.CloseSessionExpired, Reason: "token expired"})
//	}
//	s.Schedule(&sess.expiry, id.ExpiresAt, expire)
//	// On reauthentication, move the deadline:
//	s.Schedule(&sess.expiry, newID.ExpiresAt, expire)
//	// When the session ends first:
//	s.Cancel(&sess.expiry)
//
// See the package examples for a runnable version with a fake clock.
package deadline
