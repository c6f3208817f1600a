package loadgen

import (
	"context"
	"io"
	"strconv"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/wsauth/wsauth"
	"github.com/wsauth/wsauth/wsauthtest"
)

// TestStormChecksTicks runs a small storm with the child in-process, over
// pipes: one reauth round, then ticks sent in order, reordered, twice and
// with a gap, which the child must tell apart.
func TestStormChecksTicks(t *testing.T) {
	t.Parallel()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	epoch := time.Date(2026, 11, 23, 12, 0, 0, 0, time.UTC)
	clock := wsauthtest.NewClock(epoch)
	// 30s, Options.ReauthLead's default, set explicitly: the clock jumps
	// to it below.
	const lead = 30 * time.Second
	srv, err := StartWsauth(ServerOptions{
		Clock:     clock,
		Configure: func(o *wsauth.Options) { o.ReauthLead = lead },
	})
	require.NoError(t, err)
	defer func() { assert.NoError(t, srv.Close()) }()
	mint := func(exp time.Time) map[string]string {
		m := map[string]string{}
		for _, sub := range []string{"bench-0", "bench-1"} {
			m[sub] = srv.IdP.Sign(map[string]any{"iss": srv.IdP.Issuer(), "aud": Audience, "sub": sub,
				"iat": epoch.Unix(), "nbf": epoch.Unix(), "exp": exp.Unix()})
		}
		return m
	}
	exp0 := epoch.Add(time.Hour)

	const n = 4
	stdinR, stdinW := io.Pipe()
	stdoutR, stdoutW := io.Pipe()
	childErr := make(chan error, 1)
	go func() {
		err := runStormChild(ctx, srv.URL, n, 2, stdinR, stdoutW)
		stdoutW.Close()
		childErr <- err
	}()
	s := newStorm(stdinW, stdoutR, &tailWriter{})
	defer func() {
		assert.NoError(t, s.Close())
		assert.NoError(t, <-childErr)
	}()
	require.NoError(t, s.start(ctx, n, mint(exp0)))
	require.Len(t, s.Sessions, n)

	require.NoError(t, s.Tokens(ctx, 1, mint(exp0.Add(time.Hour))))
	_, err = s.Reauth(ctx, 1)
	require.NoError(t, err)
	t0 := StormNow()
	clock.Set(exp0.Add(-lead))
	r, err := s.WaitReauth(ctx, 1)
	require.NoError(t, err)
	require.NoError(t, r.Check())
	assert.Equal(t, n, r.Reauthed)
	d, err := r.Since(t0)
	require.NoError(t, err)
	assert.Positive(t, d)

	ticks := [n][]int64{
		{1, 2, 3, 4},    // in order
		{1, 3, 2, 4},    // 2 reordered
		{1, 1, 2, 3, 4}, // 1 twice
		{1, 3, 4},       // 2 lost
	}
	for i, seq := range ticks {
		for _, k := range seq {
			require.NoError(t, srv.Wsauth.Send(context.Background(), s.Sessions[i], []byte(`{"tick":`+strconv.FormatInt(k, 10)+`}`)))
		}
	}
	r, err = s.Drain(ctx, 1, []int64{4, 4, 4, 4})
	require.NoError(t, err)
	assert.Equal(t, int64(16), r.Ticks)
	assert.Equal(t, int64(1), r.Reordered)
	assert.Equal(t, int64(1), r.Dup)
	assert.Equal(t, int64(1), r.Lost)
	assert.Zero(t, r.Unexpected)
	assert.Zero(t, r.Closes)
	err = r.Check()
	require.Error(t, err)
	assert.Contains(t, err.Error(), "1 ticks lost, 1 ticks duplicated, 1 ticks reordered")
	t.Log(err)
}
