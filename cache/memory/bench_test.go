package memory

import (
	"context"
	"net/netip"
	"runtime"
	"testing"
	"time"

	"github.com/chihaya/chihaya/cache"
	"github.com/chihaya/chihaya/cache/cachetest"
)

// openBench opens a memory store for a benchmark.
func openBench(b *testing.B) cache.Store {
	b.Helper()
	s, err := driver{}.Open(nil, cache.Options{PeerLifetime: 45 * time.Minute})
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { s.Close() })
	return s
}

// BenchmarkAnnounce: an existing peer of 1,000 swarms × 50 re-announcing,
// numwant 50 (see cachetest.BenchmarkAnnounce).
func BenchmarkAnnounce(b *testing.B) {
	s := openBench(b)
	cachetest.BenchmarkAnnounce(b, s, cachetest.Populate(b, s, 1000, 50, 1))
}

// BenchmarkAnnounceParallel is BenchmarkAnnounce from every core at once,
// which shows the cost of the shard locks.
func BenchmarkAnnounceParallel(b *testing.B) {
	s := openBench(b)
	cachetest.BenchmarkAnnounceParallel(b, s, cachetest.Populate(b, s, 1000, 50, 1), 1)
}

// BenchmarkScrape measures a scrape of ten known swarms.
func BenchmarkScrape(b *testing.B) {
	s := openBench(b)
	cachetest.BenchmarkScrape(b, s, cachetest.Populate(b, s, 1000, 50, 1))
}

// BenchmarkMemoryPerPeer reports the heap a peer costs, everything
// included (records, index maps, swarms, slice slack), with 10,000 swarms
// of 100 IPv4 peers. Each iteration builds a whole store; -benchtime=1x
// measures it once.
func BenchmarkMemoryPerPeer(b *testing.B) {
	const swarms, perSwarm = 10_000, 100
	var perPeer float64
	for b.Loop() {
		before := heapAlloc()
		s, err := driver{}.Open(nil, cache.Options{PeerLifetime: 45 * time.Minute})
		if err != nil {
			b.Fatal(err)
		}
		var r cache.Result
		for i := range swarms {
			h := hash(i)
			for n := range perSwarm {
				a := cache.Announce{
					InfoHash: h,
					PeerID:   peerID(n),
					IPv4:     netip.AddrFrom4([4]byte{10, 0, byte(n >> 8), byte(n)}),
					Port:     6881,
				}
				if err := s.Announce(context.Background(), &a, &r); err != nil {
					b.Fatal(err)
				}
			}
		}
		perPeer = float64(heapAlloc()-before) / (swarms * perSwarm)
		runtime.KeepAlive(s)
		s.Close()
	}
	b.ReportMetric(perPeer, "B/peer")
}

func heapAlloc() uint64 {
	runtime.GC()
	var m runtime.MemStats
	runtime.ReadMemStats(&m)
	return m.HeapAlloc
}
