package main

import (
	"math"
	"math/rand/v2"
	"testing"
	"time"
)

func TestBucketsCoverValuesWithinPrecision(t *testing.T) {
	r := rand.New(rand.NewPCG(1, 2))
	check := func(v uint64) {
		t.Helper()
		i := bucketOf(v)
		if i < 0 || i >= numBuckets {
			t.Fatalf("bucketOf(%d) = %d, out of range", v, i)
		}
		lower, width := bucketBounds(i)
		if v < lower || v >= lower+width {
			t.Fatalf("%d is in bucket %d = [%d, %d)", v, i, lower, lower+width)
		}
		// Below subBuckets every value has its own bucket.
		if lower >= subBuckets && float64(width)/float64(lower) > 1.0/subBuckets {
			t.Fatalf("bucket %d = [%d, %d) is wider than 1/%d of its values", i, lower, lower+width, subBuckets)
		}
	}
	for v := range uint64(4096) {
		check(v)
	}
	for range 100000 {
		check(r.Uint64N(maxValue + 1))
		check(uint64(math.Exp(r.Float64() * math.Log(maxValue))))
	}
	check(maxValue)
	// Buckets follow each other without gaps.
	for i := 1; i < numBuckets; i++ {
		pl, pw := bucketBounds(i - 1)
		if l, _ := bucketBounds(i); l != pl+pw {
			t.Fatalf("bucket %d starts at %d, the one before ends at %d", i, l, pl+pw)
		}
	}
}

func TestQuantilesOfUniformLatencies(t *testing.T) {
	var h histogram
	// 1 µs to 100 ms, every microsecond.
	const n = 100000
	for i := 1; i <= n; i++ {
		h.record(time.Duration(i) * time.Microsecond)
	}
	for _, c := range []struct {
		q    float64
		want time.Duration
	}{
		{0.50, 50 * time.Millisecond},
		{0.99, 99 * time.Millisecond},
		{0.999, 99900 * time.Microsecond},
		{1, 100 * time.Millisecond},
	} {
		got := h.quantile(c.q)
		if rel := math.Abs(float64(got-c.want)) / float64(c.want); rel > 0.005 {
			t.Errorf("quantile(%v) = %v, want %v within 0.5%%", c.q, got, c.want)
		}
	}
	if h.min != uint64(time.Microsecond) || h.max != uint64(100*time.Millisecond) {
		t.Errorf("min, max = %d, %d", h.min, h.max)
	}
	if want := (n + 1) * time.Microsecond / 2; h.mean() != want {
		t.Errorf("mean = %v, want %v", h.mean(), want)
	}
}

func TestQuantilesOfSkewedLatencies(t *testing.T) {
	// 990 fast answers and 10 slow ones: p50 is fast, p99.9 slow.
	var h histogram
	for range 990 {
		h.record(200 * time.Microsecond)
	}
	for range 10 {
		h.record(time.Second)
	}
	near := func(got, want time.Duration) bool {
		return math.Abs(float64(got-want)) <= float64(want)/subBuckets
	}
	if p := h.quantile(0.5); !near(p, 200*time.Microsecond) {
		t.Errorf("p50 = %v", p)
	}
	if p := h.quantile(0.99); !near(p, 200*time.Microsecond) {
		t.Errorf("p99 = %v, want the 990th value, 200µs", p)
	}
	if p := h.quantile(0.999); p != time.Second {
		t.Errorf("p99.9 = %v, want 1s (clamped to the exact max)", p)
	}
}

func TestHistogramMergeAndEdges(t *testing.T) {
	var a, b, all histogram
	r := rand.New(rand.NewPCG(3, 4))
	for i := range 20000 {
		d := time.Duration(r.Int64N(int64(50 * time.Millisecond)))
		all.record(d)
		if i%3 == 0 {
			a.record(d)
		} else {
			b.record(d)
		}
	}
	a.merge(&b)
	a.merge(&histogram{})
	if a != all {
		t.Fatal("merging two halves differs from recording everything in one")
	}

	var empty histogram
	if empty.quantile(0.99) != 0 || empty.mean() != 0 {
		t.Error("an empty histogram must report zeros")
	}
	var h histogram
	h.record(-time.Second)
	h.record(time.Duration(math.MaxInt64))
	if h.min != 0 || h.max != maxValue {
		t.Errorf("negative and huge values must be clamped: min %d max %d", h.min, h.max)
	}
}

func BenchmarkHistogramRecord(b *testing.B) {
	var h histogram
	for i := range b.N {
		h.record(time.Duration(i&0xFFFFF) * 100)
	}
}
