package wsauthtest_test

import (
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/wsauth/wsauth/wsauthtest"
)

var clockStart = time.Date(2030, 1, 2, 3, 4, 5, 0, time.UTC)

// clockLog records which callbacks ran and the clock's time when they did.
type clockLog struct {
	c   *wsauthtest.Clock
	mu  sync.Mutex
	got []string
	at  []time.Duration
}

func (l *clockLog) fn(name string) func() {
	return func() {
		at := l.c.Now().Sub(clockStart)
		l.mu.Lock()
		defer l.mu.Unlock()
		l.got = append(l.got, name)
		l.at = append(l.at, at)
	}
}

func (l *clockLog) names() []string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return append([]string(nil), l.got...)
}

func TestClockNow(t *testing.T) {
	t.Parallel()
	c := wsauthtest.NewClock(time.Now())
	start := c.Now()
	assert.Equal(t, start, start.Round(0), "monotonic reading must be dropped")
	c.Advance(time.Minute)
	assert.Equal(t, start.Add(time.Minute), c.Now())
	c.Set(start.Add(time.Hour))
	assert.Equal(t, start.Add(time.Hour), c.Now())
	c.Advance(0)
	assert.Equal(t, start.Add(time.Hour), c.Now())
}

func TestClockAdvanceOrder(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name    string
		advance []time.Duration
		want    []string
		wantAt  []time.Duration
		pending int
	}{
		{"only the due one", []time.Duration{time.Second}, []string{"now"}, []time.Duration{0}, 3},
		{"one step", []time.Duration{time.Hour},
			[]string{"now", "1m-a", "1m-b", "2m"},
			[]time.Duration{0, time.Minute, time.Minute, 2 * time.Minute}, 0},
		{"exact deadline", []time.Duration{time.Minute},
			[]string{"now", "1m-a", "1m-b"},
			[]time.Duration{0, time.Minute, time.Minute}, 1},
		{"small steps", []time.Duration{0, 30 * time.Second, 30 * time.Second, 59 * time.Second, time.Second},
			[]string{"now", "1m-a", "1m-b", "2m"},
			[]time.Duration{0, time.Minute, time.Minute, 2 * time.Minute}, 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			c := wsauthtest.NewClock(clockStart)
			log := &clockLog{c: c}
			c.AfterFunc(2*time.Minute, log.fn("2m"))
			c.AfterFunc(time.Minute, log.fn("1m-a"))
			c.AfterFunc(time.Minute, log.fn("1m-b")) // tie: creation order
			c.AfterFunc(-time.Second, log.fn("now"))
			assert.Empty(t, log.names(), "AfterFunc must not run f itself")
			for _, d := range tt.advance {
				c.Advance(d)
			}
			assert.Equal(t, tt.want, log.names())
			assert.Equal(t, tt.wantAt, log.at, "Now inside each callback is its deadline")
			assert.Equal(t, tt.pending, c.Pending())
		})
	}
}

func TestClockSet(t *testing.T) {
	t.Parallel()
	c := wsauthtest.NewClock(clockStart)
	log := &clockLog{c: c}
	c.AfterFunc(time.Second, log.fn("a"))
	c.Set(clockStart.Add(time.Hour))
	assert.Equal(t, []string{"a"}, log.names())
	assert.Equal(t, clockStart.Add(time.Hour), c.Now())
	c.Set(c.Now()) // same time is fine
}

func TestClockStop(t *testing.T) {
	t.Parallel()
	c := wsauthtest.NewClock(clockStart)
	log := &clockLog{c: c}
	a := c.AfterFunc(time.Second, log.fn("a"))
	b := c.AfterFunc(2*time.Second, log.fn("b"))
	assert.Equal(t, 2, c.Pending())
	assert.True(t, a.Stop())
	assert.False(t, a.Stop(), "second Stop")
	assert.Equal(t, 1, c.Pending())
	c.Advance(time.Hour)
	assert.Equal(t, []string{"b"}, log.names())
	assert.False(t, b.Stop(), "Stop after running")
}

func TestClockCallbacks(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name string
		in   time.Duration // the nested AfterFunc's d, from the outer's deadline
		want []string      // after Advance(10s); the outer runs at 1s
		at   []time.Duration
	}{
		{"due now", 0, []string{"outer", "nested"}, []time.Duration{time.Second, time.Second}},
		{"within the Advance", 9 * time.Second, []string{"outer", "nested"}, []time.Duration{time.Second, 10 * time.Second}},
		{"after the Advance", 9*time.Second + 1, []string{"outer"}, []time.Duration{time.Second}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			c := wsauthtest.NewClock(clockStart)
			log := &clockLog{c: c}
			c.AfterFunc(time.Second, func() {
				log.fn("outer")()
				c.AfterFunc(tt.in, log.fn("nested"))
			})
			c.Advance(10 * time.Second)
			assert.Equal(t, tt.want, log.names())
			assert.Equal(t, tt.at, log.at)
			assert.Equal(t, clockStart.Add(10*time.Second), c.Now())
		})
	}
}

func TestClockStopFromCallback(t *testing.T) {
	t.Parallel()
	c := wsauthtest.NewClock(clockStart)
	log := &clockLog{c: c}
	var later interface{ Stop() bool }
	var stopped bool
	c.AfterFunc(time.Second, func() { stopped = later.Stop() })
	later = c.AfterFunc(2*time.Second, log.fn("later"))
	c.Advance(time.Hour)
	assert.True(t, stopped)
	assert.Empty(t, log.names())
}

func TestClockMisuse(t *testing.T) {
	t.Parallel()
	c := wsauthtest.NewClock(clockStart)
	assert.Panics(t, func() { c.Advance(-time.Second) })
	assert.Panics(t, func() { c.Set(clockStart.Add(-time.Second)) })
	assert.Panics(t, func() { c.AfterFunc(time.Second, nil) })
	assert.Equal(t, clockStart, c.Now())
}

// A callback that panics leaves the clock at its deadline, and the clock
// usable.
func TestClockCallbackPanic(t *testing.T) {
	t.Parallel()
	c := wsauthtest.NewClock(clockStart)
	log := &clockLog{c: c}
	c.AfterFunc(time.Second, func() { panic("boom") })
	c.AfterFunc(2*time.Second, log.fn("after"))
	assert.PanicsWithValue(t, "boom", func() { c.Advance(time.Hour) })
	assert.Equal(t, clockStart.Add(time.Second), c.Now())
	c.Advance(time.Hour)
	assert.Equal(t, []string{"after"}, log.names())
}

// TestClockConcurrent exercises every method from several goroutines; run
// it with -race. Time never goes backwards and every callback runs once.
func TestClockConcurrent(t *testing.T) {
	t.Parallel()
	c := wsauthtest.NewClock(clockStart)
	var mu sync.Mutex
	ran, stopped := 0, 0
	var wg sync.WaitGroup
	for w := range 4 {
		wg.Go(func() {
			last := c.Now()
			for i := range 500 {
				tm := c.AfterFunc(time.Duration(i%7)*time.Millisecond, func() {
					mu.Lock()
					ran++
					mu.Unlock()
				})
				if i%5 == w {
					if tm.Stop() {
						mu.Lock()
						stopped++
						mu.Unlock()
					}
				}
				if i%3 == 0 {
					c.Advance(time.Millisecond)
				}
				now := c.Now()
				if now.Before(last) {
					t.Errorf("time went back from %v to %v", last, now)
				}
				last = now
				_ = c.Pending()
			}
		})
	}
	wg.Wait()
	c.Advance(time.Second)
	require.Zero(t, c.Pending())
	assert.Equal(t, 4*500, ran+stopped)
}
