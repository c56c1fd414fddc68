package main

import (
	"math"
	"math/bits"
	"time"
)

// The latency histogram is log-linear, in the manner of HDR histograms: each
// power of two is split into subBuckets equal buckets, so a value is known to
// within 1/subBuckets of itself whatever its size, and recording costs a few
// instructions and no allocation however many samples a run takes.

const (
	// subBucketBits sets the precision: 128 buckets per power of two
	// put every value within 0.8% of its bucket's bounds.
	subBucketBits = 7
	subBuckets    = 1 << subBucketBits
	// maxBits bounds the values recorded: 2^40 ns is over 18 minutes,
	// far past any timeout; longer values are clamped.
	maxBits    = 40
	maxValue   = 1<<maxBits - 1
	numBuckets = (maxBits - subBucketBits + 1) * subBuckets
)

// histogram counts durations in nanoseconds. The zero value is ready; it is
// not safe for concurrent use, so each worker keeps its own and they are
// merged once the workers are done.
type histogram struct {
	counts   [numBuckets]uint64
	total    uint64
	sum      uint64
	min, max uint64
}

// bucketOf returns the bucket of v. Values below subBuckets have a bucket
// each; above, the top subBucketBits+1 bits of v pick the bucket.
func bucketOf(v uint64) int {
	if v < subBuckets {
		return int(v)
	}
	shift := bits.Len64(v) - subBucketBits - 1
	return (shift+1)*subBuckets + int(v>>uint(shift)) - subBuckets
}

// bucketBounds returns the smallest value of bucket i and the bucket's width.
func bucketBounds(i int) (lower, width uint64) {
	if i < subBuckets {
		return uint64(i), 1
	}
	shift := uint(i/subBuckets - 1)
	m := uint64(i%subBuckets + subBuckets)
	return m << shift, 1 << shift
}

// record adds one duration.
func (h *histogram) record(d time.Duration) {
	v := uint64(max(d, 0))
	if v > maxValue {
		v = maxValue
	}
	h.counts[bucketOf(v)]++
	if h.total == 0 || v < h.min {
		h.min = v
	}
	if v > h.max {
		h.max = v
	}
	h.total++
	h.sum += v
}

// merge adds o's samples to h.
func (h *histogram) merge(o *histogram) {
	if o.total == 0 {
		return
	}
	for i, c := range o.counts {
		h.counts[i] += c
	}
	if h.total == 0 || o.min < h.min {
		h.min = o.min
	}
	h.max = max(h.max, o.max)
	h.total += o.total
	h.sum += o.sum
}

// quantile returns the value below which a fraction q of the samples lie:
// the middle of the bucket that holds the sample of rank ceil(q*total),
// kept within the exact minimum and maximum. Zero without samples.
func (h *histogram) quantile(q float64) time.Duration {
	if h.total == 0 {
		return 0
	}
	rank := uint64(math.Ceil(q * float64(h.total)))
	rank = min(max(rank, 1), h.total)
	var seen uint64
	for i, c := range h.counts {
		seen += c
		if seen >= rank {
			lower, width := bucketBounds(i)
			v := lower + (width-1)/2
			return time.Duration(min(max(v, h.min), h.max))
		}
	}
	return time.Duration(h.max)
}

// mean returns the exact average.
func (h *histogram) mean() time.Duration {
	if h.total == 0 {
		return 0
	}
	return time.Duration(h.sum / h.total)
}
