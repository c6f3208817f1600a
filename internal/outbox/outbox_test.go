package outbox_test

import (
	"fmt"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/wsauth/wsauth/internal/outbox"
)

func item(s string) outbox.Item { return outbox.Item{Frame: []byte(s), Data: []byte(s)} }

func frames(items []outbox.Item) []string {
	out := make([]string, len(items))
	for i, it := range items {
		out[i] = string(it.Frame)
	}
	return out
}

func TestOutboxBounds(t *testing.T) {
	t.Parallel()
	cases := []struct {
		name          string
		maxMsgs, maxB int
		push          []string
		accepted      int
	}{
		{"message bound", 3, 100, []string{"a", "b", "c", "d"}, 3},
		{"byte bound", 10, 5, []string{"aa", "bb", "c", "d"}, 3},
		{"exact fit", 2, 4, []string{"aa", "bb"}, 2},
		{"one too big, into an empty outbox", 5, 3, []string{"abcd"}, 1},
		{"one too big, behind another", 5, 3, []string{"a", "abcd"}, 1},
		{"nothing after one too big", 5, 3, []string{"abcd", "a"}, 1},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			o := outbox.New(tc.maxMsgs, tc.maxB)
			n := 0
			for _, s := range tc.push {
				if err := o.Push(item(s)); err == nil {
					n++
				} else {
					require.ErrorIs(t, err, outbox.ErrOverflow)
				}
			}
			assert.Equal(t, tc.accepted, n)
			assert.Equal(t, tc.accepted, o.Len())
			assert.Equal(t, tc.push[:tc.accepted], frames(o.Drain()))
			assert.Equal(t, 0, o.Bytes())
		})
	}
	assert.Panics(t, func() { outbox.New(0, 1) })
}

func TestOutboxFIFOAcrossWraparound(t *testing.T) {
	t.Parallel()
	o := outbox.New(5, 1000)
	var want, got []string
	next := 0
	for round := 0; round < 50; round++ {
		for i := 0; i < round%5+1; i++ {
			s := fmt.Sprint(next)
			if o.Push(item(s)) == nil {
				want = append(want, s)
				next++
			}
		}
		for i := 0; i < round%3+1; i++ {
			if it, ok := o.Pop(); ok {
				got = append(got, string(it.Frame))
			}
		}
	}
	got = append(got, frames(o.Drain())...)
	assert.Equal(t, want, got)
	_, ok := o.Pop()
	assert.False(t, ok)
}

// Peek leaves items queued and counted until Discard removes them, across
// the ring's wraparound.
func TestOutboxPeekDiscard(t *testing.T) {
	t.Parallel()
	o := outbox.New(4, 100)
	for _, s := range []string{"a", "b", "c"} {
		require.NoError(t, o.Push(item(s)))
	}
	o.Discard(2) // the ring's head is now at index 2
	for _, s := range []string{"d", "e", "f"} {
		require.NoError(t, o.Push(item(s)))
	}
	buf := make([]outbox.Item, 3)
	require.Equal(t, 3, o.Peek(buf))
	assert.Equal(t, []string{"c", "d", "e"}, frames(buf))
	assert.Equal(t, 4, o.Len(), "peeked items stay queued")
	assert.ErrorIs(t, o.Push(item("g")), outbox.ErrOverflow, "and count against the bounds")
	o.Discard(3)
	assert.Equal(t, 1, o.Len())
	assert.Equal(t, 1, o.Bytes())
	assert.Equal(t, 1, o.Peek(buf))
	assert.Equal(t, "f", string(buf[0].Frame))
	assert.Equal(t, 0, o.Peek(nil))
	assert.Panics(t, func() { o.Discard(2) })
	assert.Equal(t, []string{"f"}, frames(o.Drain()))
}

// TestOutboxPushFrontAll: a backlog goes in front, whole, past the bounds;
// until the queue is back within them, Push refuses, and then takes again.
func TestOutboxPushFrontAll(t *testing.T) {
	t.Parallel()
	o := outbox.New(4, 100)
	require.NoError(t, o.Push(item("new1")))
	require.NoError(t, o.Push(item("new2")))
	o.PushFrontAll([]outbox.Item{item("old1"), item("old2"), item("old3"), item("old4")})
	assert.Equal(t, 6, o.Len())
	assert.ErrorIs(t, o.Push(item("more")), outbox.ErrOverflow)
	peek := make([]outbox.Item, 6)
	require.Equal(t, 6, o.Peek(peek))
	assert.Equal(t, []string{"old1", "old2", "old3", "old4", "new1", "new2"}, frames(peek))
	o.Discard(3)
	require.NoError(t, o.Push(item("later")))
	assert.Equal(t, []string{"old4", "new1", "new2", "later"}, frames(o.Drain()))
}
