package wsauth

import (
	"context"
	"errors"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

type lazyKey struct{}

// errParentGone is the cause with which the tests' parents are canceled.
var errParentGone = errors.New("parent gone")

// TestLazyDeadlineIsWithDeadline takes the same steps with a lazyDeadline
// and with context.WithDeadline, on the same parent and deadline, and
// compares every answer.
func TestLazyDeadlineIsWithDeadline(t *testing.T) {
	t.Parallel()
	type answers struct {
		deadline time.Duration // from the context's start
		ok       bool
		done     bool
		err      error
		cause    error
		value    any
	}
	read := func(ctx context.Context, start time.Time) answers {
		a := answers{value: ctx.Value(lazyKey{}), err: ctx.Err(), cause: context.Cause(ctx)}
		deadline, ok := ctx.Deadline()
		a.deadline, a.ok = deadline.Sub(start), ok
		select {
		case <-ctx.Done():
			a.done = true
		default:
		}
		return a
	}
	const short = 20 * time.Millisecond
	for _, tc := range []struct {
		name           string
		parentDeadline time.Duration // from now; 0: none
		timeout        time.Duration // from now
		// step runs before the answers are read.
		step func(ctx context.Context, cancelParent, cancel context.CancelFunc)
	}{
		{name: "running", timeout: time.Hour},
		{name: "expired, waited on", timeout: short,
			step: func(ctx context.Context, _, _ context.CancelFunc) { <-ctx.Done() }},
		{name: "expired, never asked", timeout: short,
			step: func(context.Context, context.CancelFunc, context.CancelFunc) { time.Sleep(3 * short) }},
		{name: "deadline already past", timeout: -time.Second},
		{name: "parent canceled", timeout: time.Hour,
			step: func(ctx context.Context, cancelParent, _ context.CancelFunc) { cancelParent(); <-ctx.Done() }},
		{name: "parent canceled, never asked", timeout: time.Hour,
			step: func(_ context.Context, cancelParent, _ context.CancelFunc) { cancelParent() }},
		{name: "parent's deadline earlier", parentDeadline: time.Minute, timeout: time.Hour},
		{name: "parent's deadline later", parentDeadline: time.Hour, timeout: time.Minute},
		{name: "canceled", timeout: time.Hour,
			step: func(ctx context.Context, _, cancel context.CancelFunc) { _ = ctx.Done(); cancel() }},
		{name: "canceled, never asked", timeout: time.Hour,
			step: func(_ context.Context, _, cancel context.CancelFunc) { cancel() }},
		// Canceled first, whatever happens next: first asked after its
		// deadline or its parent's end, it still says canceled.
		{name: "canceled, then expired, never asked", timeout: short,
			step: func(_ context.Context, _, cancel context.CancelFunc) { cancel(); time.Sleep(3 * short) }},
		{name: "canceled, then parent canceled, never asked", timeout: time.Hour,
			step: func(_ context.Context, cancelParent, cancel context.CancelFunc) { cancel(); cancelParent() }},
		{name: "expired, then canceled, never asked", timeout: short,
			step: func(_ context.Context, _, cancel context.CancelFunc) { time.Sleep(3 * short); cancel() }},
		{name: "parent canceled, then canceled, never asked", timeout: time.Hour,
			step: func(_ context.Context, cancelParent, cancel context.CancelFunc) { cancelParent(); cancel() }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			var got [2]answers
			for i, with := range []func(context.Context, time.Time) (context.Context, context.CancelFunc){
				context.WithDeadline, withLazyDeadline,
			} {
				// One after the other, each from its own start: the
				// steps wait for the short deadlines to pass.
				now := time.Now()
				base, cancelBase := context.WithCancelCause(context.WithValue(context.Background(), lazyKey{}, "v"))
				parent := context.Context(base)
				cancelParent := func() { cancelBase(errParentGone) }
				if tc.parentDeadline != 0 {
					var cancelDeadline context.CancelFunc
					parent, cancelDeadline = context.WithDeadline(base, now.Add(tc.parentDeadline))
					defer cancelDeadline()
				}
				ctx, cancel := with(parent, now.Add(tc.timeout))
				if tc.step != nil {
					tc.step(ctx, cancelParent, cancel)
				}
				got[i] = read(ctx, now)
				cancel()
				cancelParent()
				// Canceled, both are done, whatever they were.
				assert.NotNil(t, ctx.Err())
				<-ctx.Done()
			}
			assert.Equal(t, got[0], got[1], "context.WithDeadline, then lazyDeadline")
		})
	}
}

// TestLazyDeadlineIsMadeOnlyWhenUsed: Deadline and the CancelFunc leave
// the context unmade (no timer); Done makes it, once, from any number of
// goroutines.
func TestLazyDeadlineIsMadeOnlyWhenUsed(t *testing.T) {
	t.Parallel()
	parent, cancelParent := context.WithCancel(context.Background())
	defer cancelParent()
	ctx, cancel := withLazyDeadline(parent, time.Now().Add(time.Hour))
	c := ctx.(*lazyDeadline)
	_, ok := ctx.Deadline()
	require.True(t, ok)
	cancel()
	assert.Nil(t, c.ctx, "made by Deadline or cancel")

	ctx, cancel = withLazyDeadline(parent, time.Now().Add(time.Hour))
	c = ctx.(*lazyDeadline)
	dones := make([]<-chan struct{}, 8)
	var wg sync.WaitGroup
	for i := range dones {
		wg.Go(func() { dones[i] = ctx.Done() })
	}
	wg.Wait()
	require.NotNil(t, c.ctx)
	for _, d := range dones {
		assert.Equal(t, dones[0], d, "made more than once")
	}
	require.NoError(t, ctx.Err())
	cancel()
	<-dones[0]
	assert.ErrorIs(t, ctx.Err(), context.Canceled)
}
