package wsauth

import (
	"context"
	"sync"
	"time"
)

// lazyDeadline is context.WithDeadline(parent, deadline), made only when
// it is first used: until Done, Err or Value is called it is one
// allocation and no timer, and Deadline answers without making it.
//
// It bounds the verification of a per-message token
// (Options.TokenPerMessage), on the session's read goroutine, once per
// message. A context.WithTimeout there costs four allocations, a runtime
// timer and an entry in the session context's children, all undone by its
// cancel a few microseconds later, while a Verifier that answers from a
// cache (a jwks.Verifier with a token cache, seeing the token the
// session's messages repeat) never looks at its ctx.
//
// It is safe for concurrent use, as a Context must be.
type lazyDeadline struct {
	parent   context.Context
	deadline time.Time

	mu       sync.Mutex
	ctx      context.Context // the context.WithDeadline; nil until used
	cancel   context.CancelFunc
	released bool
	// ended is, if released before it was made, how a
	// context.WithDeadline would have ended by then: nil if by its
	// parent's end, otherwise context.Canceled or DeadlineExceeded.
	ended error
}

// withLazyDeadline returns the context and its CancelFunc, as
// context.WithDeadline does.
func withLazyDeadline(parent context.Context, deadline time.Time) (context.Context, context.CancelFunc) {
	c := &lazyDeadline{parent: parent, deadline: deadline}
	return c, c.release
}

// made returns the context.WithDeadline, making it on first use. Made
// after release, it is already done, with the error and cause that
// release settled: a Verifier's goroutine that first looks at it later,
// after its deadline or its parent's end, sees what it would have seen
// in a context.WithDeadline canceled by release.
func (c *lazyDeadline) made() context.Context {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.ctx != nil {
		return c.ctx
	}
	switch {
	case !c.released || c.ended == nil:
		// Running, or its parent ended first: the parent's error and
		// cause, as context.WithDeadline propagates them.
		c.ctx, c.cancel = context.WithDeadline(c.parent, c.deadline)
		if c.released {
			c.cancel()
		}
	case c.ended == context.DeadlineExceeded:
		// Detached from the parent, whose later end must not change it;
		// the parent's values still show through.
		c.ctx, c.cancel = context.WithDeadline(context.WithoutCancel(c.parent), c.deadline)
	default:
		c.ctx, c.cancel = context.WithCancel(context.WithoutCancel(c.parent))
		c.cancel()
	}
	return c.ctx
}

// release is the CancelFunc: it cancels the context if it was made;
// otherwise it settles what the context ended with, for made.
func (c *lazyDeadline) release() {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.released {
		return
	}
	c.released = true
	switch {
	case c.cancel != nil:
		c.cancel()
	case c.parent.Err() != nil:
		// ended stays nil: the parent's end.
	case !time.Now().Before(c.deadline):
		c.ended = context.DeadlineExceeded
	default:
		c.ended = context.Canceled
	}
}

// Deadline is that of context.WithDeadline: the parent's, if earlier.
func (c *lazyDeadline) Deadline() (time.Time, bool) {
	if d, ok := c.parent.Deadline(); ok && d.Before(c.deadline) {
		return d, true
	}
	return c.deadline, true
}

func (c *lazyDeadline) Done() <-chan struct{} { return c.made().Done() }

func (c *lazyDeadline) Err() error { return c.made().Err() }

func (c *lazyDeadline) Value(key any) any { return c.made().Value(key) }
