package client

import (
	"math/rand/v2"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func seeded(cfg Backoff) *backoff {
	b, err := cfg.withDefaults()
	if err != nil {
		panic(err)
	}
	return &backoff{cfg: b, rnd: rand.New(rand.NewPCG(1, 2))}
}

func TestBackoffDefaults(t *testing.T) {
	t.Parallel()
	b, err := Backoff{}.withDefaults()
	require.NoError(t, err)
	assert.Equal(t, Backoff{Initial: 250 * time.Millisecond, Max: 10 * time.Second, Multiplier: 2, Jitter: 0.2}, b)

	b, err = Backoff{Initial: time.Minute}.withDefaults()
	require.NoError(t, err)
	assert.Equal(t, time.Minute, b.Max, "the default Max never undercuts Initial")

	for _, bad := range []Backoff{
		{Initial: -1},
		{Max: -1},
		{Multiplier: 0.5},
		{Multiplier: -2},
		{Jitter: 1.5},
		{Initial: time.Second, Max: time.Millisecond},
	} {
		_, err := bad.withDefaults()
		assert.Error(t, err, "%+v", bad)
	}
}

func TestBackoffGrowsToMaxWithoutJitter(t *testing.T) {
	t.Parallel()
	b := seeded(Backoff{Initial: 100 * time.Millisecond, Max: time.Second, Multiplier: 3, Jitter: -1})
	var got []time.Duration
	for range 6 {
		got = append(got, b.next())
	}
	ms := time.Millisecond
	assert.Equal(t, []time.Duration{100 * ms, 300 * ms, 900 * ms, time.Second, time.Second, time.Second}, got)

	b.reset()
	assert.Equal(t, 100*ms, b.next(), "reset after a successful auth")
	assert.Equal(t, 300*ms, b.next())
}

func TestBackoffJitterStaysInRange(t *testing.T) {
	t.Parallel()
	cfg := Backoff{} // 250ms doubling to 10s, ±20%
	b := seeded(cfg)
	var below, above int
	for round := range 50 {
		b.reset()
		base := 250 * time.Millisecond
		for attempt := range 10 {
			d := b.next()
			lo, hi := time.Duration(float64(base)*0.8), time.Duration(float64(base)*1.2)
			require.GreaterOrEqual(t, d, lo, "round %d attempt %d", round, attempt)
			require.LessOrEqual(t, d, hi, "round %d attempt %d", round, attempt)
			if d < base {
				below++
			} else if d > base {
				above++
			}
			base = min(2*base, 10*time.Second)
		}
	}
	assert.Greater(t, below, 100, "jitter shortens some delays")
	assert.Greater(t, above, 100, "and lengthens others")

	// The same seed gives the same delays.
	x, y := seeded(cfg), seeded(cfg)
	for range 20 {
		assert.Equal(t, x.next(), y.next())
	}
}

func TestBackoffDoesNotOverflow(t *testing.T) {
	t.Parallel()
	b := seeded(Backoff{Initial: time.Second, Max: 1 << 62, Multiplier: 1000, Jitter: -1})
	for range 200 {
		d := b.next()
		require.Positive(t, d)
		require.LessOrEqual(t, d, time.Duration(1<<62))
	}
}

func TestRefreshDelay(t *testing.T) {
	t.Parallel()
	now := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	cases := []struct {
		name   string
		exp    time.Time
		before time.Duration
		want   time.Duration
		ok     bool
	}{
		{"long token: RefreshBefore ahead", now.Add(time.Hour), 30 * time.Second, time.Hour - 30*time.Second, true},
		{"short token: half its life", now.Add(20 * time.Second), 30 * time.Second, 10 * time.Second, true},
		{"no exp", time.Time{}, 30 * time.Second, 0, false},
		{"exp past by our clock", now.Add(-time.Second), 30 * time.Second, 0, false},
	}
	for _, tc := range cases {
		d, ok := refreshDelay(now, tc.exp, tc.before)
		assert.Equal(t, tc.ok, ok, tc.name)
		assert.Equal(t, tc.want, d, tc.name)
	}
}

func TestWindow(t *testing.T) {
	t.Parallel()
	w := window{items: make([]item, 3)}
	for _, id := range []string{"1", "2", "3", "4"} {
		w.push(item{id: id, data: []byte(id)})
	}
	assert.Nil(t, w.find("1"), "the oldest fell out")
	it, ok := w.take("3")
	require.True(t, ok)
	assert.Equal(t, "3", string(it.data))
	_, ok = w.take("3")
	assert.False(t, ok, "taken once")
	assert.Equal(t, "4", string(w.find("4")))
	w.dropNewest()
	assert.Nil(t, w.find("4"))
	w.reset()
	assert.Nil(t, w.find("2"))
}

func TestStateString(t *testing.T) {
	t.Parallel()
	names := map[State]string{Connecting: "connecting", Authenticating: "authenticating", Active: "active",
		Reauthenticating: "reauthenticating", Closed: "closed", State(9): "State(9)"}
	for s, n := range names {
		assert.Equal(t, n, s.String())
	}
}
