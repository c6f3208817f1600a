package loadgen

import (
	"math/rand/v2"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func TestHistogramBuckets(t *testing.T) {
	t.Parallel()
	for _, v := range []uint64{0, 1, 63, 64, 65, 127, 128, 1000, 1 << 20, 123456789, 1 << 44, 1<<45 - 1} {
		i := bucketOf(v)
		lo, hi := bucketBounds(i)
		assert.LessOrEqual(t, lo, v, "v=%d", v)
		assert.GreaterOrEqual(t, hi, v, "v=%d", v)
		assert.LessOrEqual(t, float64(hi-lo), float64(v)/subBuckets+1, "bucket of %d too wide", v)
	}
	assert.Equal(t, numBuckets-1, bucketOf(1<<62), "overflow goes in the last bucket")
	for i := 1; i < numBuckets; i++ {
		_, prevHi := bucketBounds(i - 1)
		lo, _ := bucketBounds(i)
		require.Equal(t, prevHi+1, lo, "buckets %d and %d are not contiguous", i-1, i)
	}
}

func TestHistogramQuantiles(t *testing.T) {
	t.Parallel()
	cases := []struct {
		name   string
		values []time.Duration
	}{
		{"uniform µs", func() []time.Duration {
			var v []time.Duration
			for i := 1; i <= 10000; i++ {
				v = append(v, time.Duration(i)*time.Microsecond)
			}
			return v
		}()},
		{"exponential", func() []time.Duration {
			r := rand.New(rand.NewPCG(1, 2))
			var v []time.Duration
			for range 20000 {
				v = append(v, time.Duration(r.ExpFloat64()*float64(200*time.Microsecond)))
			}
			return v
		}()},
		{"small exact", []time.Duration{3, 1, 2, 5, 4}},
		{"one", []time.Duration{42 * time.Millisecond}},
		{"long tail", append(slices.Repeat([]time.Duration{100 * time.Microsecond}, 990),
			slices.Repeat([]time.Duration{50 * time.Millisecond}, 10)...)},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			var h Histogram
			for _, v := range tc.values {
				h.Record(v)
			}
			sorted := slices.Clone(tc.values)
			slices.Sort(sorted)
			for _, q := range []float64{0, 0.5, 0.9, 0.99, 0.999, 1} {
				rank := max(int(float64(len(sorted))*q+0.999999), 1)
				want := sorted[rank-1]
				got := h.Quantile(q)
				assert.InDelta(t, float64(want), float64(got), float64(want)/subBuckets+1, "q=%v", q)
			}
			assert.Equal(t, uint64(len(tc.values)), h.Count())
			assert.Equal(t, sorted[len(sorted)-1], h.Max())
		})
	}
}

func TestHistogramEmptyAndNegative(t *testing.T) {
	t.Parallel()
	var h Histogram
	assert.Zero(t, h.Quantile(0.99))
	assert.Zero(t, h.Mean())
	h.Record(-time.Second)
	assert.Equal(t, time.Duration(0), h.Quantile(0.5))
}

func TestHistogramMergeAndConcurrentRecord(t *testing.T) {
	t.Parallel()
	var a, b Histogram
	var wg sync.WaitGroup
	for g := range 4 {
		wg.Go(func() {
			for i := range 1000 {
				if g%2 == 0 {
					a.Record(time.Duration(i) * time.Microsecond)
				} else {
					b.Record(time.Duration(i+1000) * time.Microsecond)
				}
			}
		})
	}
	wg.Wait()
	a.Merge(&b)
	assert.Equal(t, uint64(4000), a.Count())
	assert.Equal(t, 1999*time.Microsecond, a.Max())
	assert.InDelta(t, float64(time.Millisecond), float64(a.Quantile(0.5)), float64(time.Millisecond)/subBuckets)
	assert.InDelta(t, float64(1000*time.Microsecond), float64(a.Mean()), float64(time.Microsecond))
}
