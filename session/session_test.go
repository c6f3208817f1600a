package session_test

import (
	"fmt"
	"sort"
	"sync"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/wsauth/wsauth/session"
)

func item(s string) session.Item { return session.Item{Frame: []byte(s), Data: []byte(s)} }

func frames(items []session.Item) []string {
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
			o := session.NewOutbox(tc.maxMsgs, tc.maxB)
			n := 0
			for _, s := range tc.push {
				if err := o.Push(item(s)); err == nil {
					n++
				} else {
					require.ErrorIs(t, err, session.ErrOverflow)
				}
			}
			assert.Equal(t, tc.accepted, n)
			assert.Equal(t, tc.accepted, o.Len())
			assert.Equal(t, tc.push[:tc.accepted], frames(o.Drain()))
			assert.Equal(t, 0, o.Bytes())
		})
	}
	assert.Panics(t, func() { session.NewOutbox(0, 1) })
}

func TestOutboxFIFOAcrossWraparound(t *testing.T) {
	t.Parallel()
	o := session.NewOutbox(5, 1000)
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
	o := session.NewOutbox(4, 100)
	for _, s := range []string{"a", "b", "c"} {
		require.NoError(t, o.Push(item(s)))
	}
	o.Discard(2) // the ring's head is now at index 2
	for _, s := range []string{"d", "e", "f"} {
		require.NoError(t, o.Push(item(s)))
	}
	buf := make([]session.Item, 3)
	require.Equal(t, 3, o.Peek(buf))
	assert.Equal(t, []string{"c", "d", "e"}, frames(buf))
	assert.Equal(t, 4, o.Len(), "peeked items stay queued")
	assert.ErrorIs(t, o.Push(item("g")), session.ErrOverflow, "and count against the bounds")
	o.Discard(3)
	assert.Equal(t, 1, o.Len())
	assert.Equal(t, 1, o.Bytes())
	assert.Equal(t, 1, o.Peek(buf))
	assert.Equal(t, "f", string(buf[0].Frame))
	assert.Equal(t, 0, o.Peek(nil))
	assert.Panics(t, func() { o.Discard(2) })
	assert.Equal(t, []string{"f"}, frames(o.Drain()))
}

func TestOutboxPushFront(t *testing.T) {
	t.Parallel()
	o := session.NewOutbox(4, 100)
	require.NoError(t, o.Push(item("new1")))
	require.NoError(t, o.Push(item("new2")))
	rejected := o.PushFront([]session.Item{item("old1"), item("old2"), item("old3")})
	assert.Equal(t, []string{"old3"}, frames(rejected), "the newest kept items that do not fit come back")
	assert.Equal(t, []string{"old1", "old2", "new1", "new2"}, frames(o.Drain()))
}

func TestStateTransitions(t *testing.T) {
	t.Parallel()
	all := []session.State{session.Pending, session.Active, session.Expired, session.Closed}
	allowed := map[[2]session.State]bool{
		{session.Pending, session.Active}: true, {session.Pending, session.Closed}: true,
		{session.Active, session.Active}: true, {session.Active, session.Expired}: true, {session.Active, session.Closed}: true,
		{session.Expired, session.Active}: true, {session.Expired, session.Closed}: true,
	}
	for _, from := range all {
		for _, to := range all {
			assert.Equal(t, allowed[[2]session.State{from, to}], from.CanTransition(to), "%s -> %s", from, to)
		}
	}
	assert.Equal(t, "expired", session.Expired.String())
	assert.Equal(t, "invalid", session.State(9).String())
}

func TestRegistry(t *testing.T) {
	t.Parallel()
	var r session.Registry[string]
	alice := session.Principal{Issuer: "https://a.example/", Subject: "alice"}
	// Another issuer's alice is another person.
	otherAlice := session.Principal{Issuer: "https://b.example/", Subject: "alice"}
	bob := session.Principal{Issuer: "https://a.example/", Subject: "bob"}
	r.Add("1", alice, "s1")
	r.Add("2", alice, "s2")
	r.Add("3", bob, "s3")
	r.Add("4", otherAlice, "s4")
	v, ok := r.Get("2")
	assert.True(t, ok)
	assert.Equal(t, "s2", v)
	got := r.ByPrincipal(alice, nil)
	sort.Strings(got)
	assert.Equal(t, []string{"s1", "s2"}, got)
	assert.Equal(t, []string{"s4"}, r.ByPrincipal(otherAlice, nil))
	assert.Empty(t, r.ByPrincipal(session.Principal{Subject: "alice"}, nil))
	assert.Equal(t, 4, r.Len())
	r.Remove("1", alice)
	r.Remove("1", alice) // idempotent
	assert.Equal(t, []string{"s2"}, r.ByPrincipal(alice, nil))
	r.Remove("2", alice)
	r.Remove("4", otherAlice)
	assert.Empty(t, r.ByPrincipal(alice, nil))
	all := r.All(nil)
	assert.Equal(t, []string{"s3"}, all)
	_, ok = r.Get("1")
	assert.False(t, ok)
}

func TestRegistryConcurrent(t *testing.T) {
	t.Parallel()
	var r session.Registry[int]
	var wg sync.WaitGroup
	for g := 0; g < 8; g++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; i < 500; i++ {
				id := fmt.Sprintf("%d-%d", g, i)
				p := session.Principal{Issuer: "iss", Subject: fmt.Sprint(i % 7)}
				r.Add(id, p, i)
				_ = r.ByPrincipal(p, nil)
				if i%2 == 0 {
					r.Remove(id, p)
				}
			}
		}()
	}
	wg.Wait()
	assert.Equal(t, 8*250, r.Len())
}
