package prefetch

import (
	"math/rand/v2"
	"testing"
	"unsafe"
)

// A hint never faults and never runs away: callers pass pointers that may
// be nil or stale, and counts that may be zero.
func TestHintsAreSafe(t *testing.T) {
	Line(nil)
	Lines(nil, 4, LineSize)
	// Past the end of an object and into a page that may be unmapped.
	b := make([]byte, LineSize)
	Lines(unsafe.Pointer(&b[0]), 64, 4096)
	LinesFrom(unsafe.Pointer(&b[0]), 1<<40, 2, LineSize)
	// No count, or a negative one, asks for nothing (a loop that took
	// -1 for a huge count would not return).
	Lines(unsafe.Pointer(&b[0]), 0, LineSize)
	Lines(unsafe.Pointer(&b[0]), -1, LineSize)
}

// BenchmarkGather reads one word of each of 32 random cache lines of a
// 256 MiB table per round, as a batch of announces reads its swarms:
// "loads" reads them in turn; "hinted" first asks for all 32 lines, so the
// misses overlap. The difference is what the hint buys on this machine;
// on an architecture without prefetch both are the same.
func BenchmarkGather(b *testing.B) {
	const lines = 256 << 20 / LineSize
	table := make([]uint64, lines*LineSize/8)
	for i := range table {
		table[i] = uint64(i)
	}
	r := rand.New(rand.NewPCG(1, 2))
	idx := make([]int, 1<<20)
	for i := range idx {
		idx[i] = r.IntN(lines) * (LineSize / 8)
	}
	for _, hinted := range []bool{false, true} {
		name := "loads"
		if hinted {
			name = "hinted"
		}
		b.Run(name, func(b *testing.B) {
			var sum uint64
			i := 0
			for b.Loop() {
				batch := idx[i : i+32]
				if i += 32; i == len(idx) {
					i = 0
				}
				if hinted {
					for _, j := range batch {
						Line(unsafe.Pointer(&table[j]))
					}
				}
				for _, j := range batch {
					// Each read waits for the one before, as
					// an announce's work does.
					sum += table[j+int(sum&1)]
				}
			}
			b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*32), "ns/line")
			if sum == 1 {
				b.Log(sum)
			}
		})
	}
}
