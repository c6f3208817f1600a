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
}

// withLazyDeadline returns the context and its CancelFunc, as
// context.WithDeadline does.
func withLazyDeadline(parent context.Context, deadline time.Time) (context.Context, context.CancelFunc) {
	c := &lazyDeadline{parent: parent, deadline: deadline}
	return c, c.release
}

// made returns the context.WithDeadline, making it on first use. Made
// after release, it is canceled at once.
func (c *lazyDeadline) made() context.Context {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.ctx == nil {
		c.ctx, c.cancel = context.WithDeadline(c.parent, c.deadline)
		if c.released {
			c.cancel()
		}
	}
	return c.ctx
}

// release is the CancelFunc: it cancels the context if it was made, and
// marks it to be canceled if it is made later.
func (c *lazyDeadline) release() {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.released = true
	if c.cancel != nil {
		c.cancel()
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
