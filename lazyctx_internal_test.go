package wsauth

import (
	"context"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

type lazyKey struct{}

// TestLazyDeadlineIsWithDeadline takes the same steps with a lazyDeadline
// and with context.WithDeadline, on the same parent and deadline, and
// compares every answer.
func TestLazyDeadlineIsWithDeadline(t *testing.T) {
	t.Parallel()
	type answers struct {
		deadline time.Time
		ok       bool
		done     bool
		err      error
		value    any
	}
	read := func(ctx context.Context) answers {
		a := answers{value: ctx.Value(lazyKey{}), err: ctx.Err()}
		a.deadline, a.ok = ctx.Deadline()
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
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			now := time.Now()
			var got [2]answers
			for i, with := range []func(context.Context, time.Time) (context.Context, context.CancelFunc){
				context.WithDeadline, withLazyDeadline,
			} {
				base := context.WithValue(context.Background(), lazyKey{}, "v")
				var parent context.Context
				var cancelParent context.CancelFunc
				if tc.parentDeadline != 0 {
					parent, cancelParent = context.WithDeadline(base, now.Add(tc.parentDeadline))
				} else {
					parent, cancelParent = context.WithCancel(base)
				}
				ctx, cancel := with(parent, now.Add(tc.timeout))
				if tc.step != nil {
					tc.step(ctx, cancelParent, cancel)
				}
				got[i] = read(ctx)
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
