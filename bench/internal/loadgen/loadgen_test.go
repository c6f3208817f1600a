package loadgen

import (
	"context"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.uber.org/goleak"

	"github.com/wsauth/wsauth"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// TestPhases runs every phase briefly against every in-process target
// (Centrifuge: echo and handshakes only).
func TestPhases(t *testing.T) {
	t.Parallel()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	ws, err := StartWsauth(ServerOptions{})
	require.NoError(t, err)
	defer func() { assert.NoError(t, ws.Close()) }()
	raw, err := StartGws(GwsOptions{})
	require.NoError(t, err)
	defer func() { assert.NoError(t, raw.Close()) }()
	cf, err := StartCentrifuge("")
	require.NoError(t, err)
	defer func() { assert.NoError(t, cf.Close()) }()

	for _, srv := range []*Server{ws, raw, cf} {
		t.Run(srv.Kind, func(t *testing.T) {
			pool, err := Dial(ctx, srv.Target(), 5, DialOptions{Subjects: 2})
			require.NoError(t, err)
			defer pool.Close()
			require.Equal(t, 5, srv.Conns())
			for _, c := range pool.Conns {
				assert.NotEmpty(t, c.Session())
			}

			st, err := pool.Echo(ctx, 103, 64)
			require.NoError(t, err)
			assert.Equal(t, int64(103), st.Msgs)
			assert.Equal(t, uint64(103), st.Hist.Count())
			assert.Positive(t, st.Hist.Quantile(0.5))

			st, err = pool.EchoPipelined(ctx, 2003, 1024, 256)
			require.NoError(t, err)
			assert.Equal(t, int64(2003), st.Msgs)
			assert.Equal(t, uint64(2003), st.Hist.Count())

			st, err = Handshakes(ctx, srv.Target(), 20, 0, 3, DialOptions{}, nil)
			require.NoError(t, err)
			assert.Equal(t, int64(20), st.Msgs)

			st, err = pool.EchoFor(ctx, 200*time.Millisecond, 64, 8, nil)
			require.NoError(t, err)
			assert.Positive(t, st.Msgs)
			if srv.Kind == "centrifuge" {
				assert.Zero(t, pool.Closes())
				return // no push
			}

			st, err = pool.Push(ctx, 1001, 1024, 4, srv.Push())
			require.NoError(t, err)
			assert.Equal(t, int64(1001), st.Msgs)

			st, err = pool.EchoFor(ctx, 200*time.Millisecond, 64, 1, nil)
			require.NoError(t, err)
			assert.Positive(t, st.Msgs)
			st, err = pool.EchoPaced(ctx, 300*time.Millisecond, 20*time.Millisecond, 64)
			require.NoError(t, err)
			// 5 connections, one round-trip each per 20 ms, for 300 ms.
			assert.InDelta(t, 5*300/20, st.Msgs, 5*300/20/2)
			st, err = pool.PushFor(ctx, 200*time.Millisecond, 64, 8, srv.Push(), nil)
			require.NoError(t, err)
			assert.Positive(t, st.Msgs)
			assert.Zero(t, pool.Closes())
		})
	}
}

// TestTokenPerMessage echoes through a server that requires a token in
// every message: every message is answered, none refused.
func TestTokenPerMessage(t *testing.T) {
	t.Parallel()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	srv, err := StartWsauth(ServerOptions{Configure: func(o *wsauth.Options) { o.TokenPerMessage = true }})
	require.NoError(t, err)
	defer func() { assert.NoError(t, srv.Close()) }()
	pool, err := Dial(ctx, srv.Target(), 3, DialOptions{TokenPerMessage: true})
	require.NoError(t, err)
	defer pool.Close()
	st, err := pool.Echo(ctx, 31, 64)
	require.NoError(t, err)
	assert.Equal(t, int64(31), st.Msgs)
	for _, c := range pool.Conns {
		assert.Zero(t, c.ErrorFrames.Load())
	}

	raw, err := StartGws(GwsOptions{})
	require.NoError(t, err)
	defer func() { assert.NoError(t, raw.Close()) }()
	_, err = Dial(ctx, raw.Target(), 1, DialOptions{TokenPerMessage: true})
	assert.Error(t, err, "gws speaks no wsauth")
}

func TestFloodIsRefusedByTheGate(t *testing.T) {
	t.Parallel()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	srv, err := StartWsauth(ServerOptions{})
	require.NoError(t, err)
	defer func() { assert.NoError(t, srv.Close()) }()
	f := StartFlood(ctx, srv.URL, FloodOptions{Sockets: 40, Interval: time.Millisecond})
	time.Sleep(500 * time.Millisecond)
	st := f.Stop()
	assert.Positive(t, st.Connects)
	assert.Positive(t, st.Frames)
	assert.Positive(t, st.Closes, "junk and ping budgets close sockets")
	assert.Zero(t, srv.Conns(), "no attacker authenticated")
}
