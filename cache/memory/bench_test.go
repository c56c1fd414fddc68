package memory

import (
	"context"
	"encoding/json"
	"net/netip"
	"os"
	"runtime"
	"runtime/debug"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/chihaya/chihaya/bittorrent"
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

// BenchmarkAnnounceBatch is BenchmarkAnnounce on the UDP benchmark's
// model (10,000 swarms of 20) in batches of 32, as the UDP frontend
// answers a full read: "warmed" hands each batch's hashes to Warm first,
// as the frontend does, "cold" does not. ns/op is per announce, Warm
// included.
func BenchmarkAnnounceBatch(b *testing.B) {
	for _, warm := range []bool{true, false} {
		name := "cold"
		if warm {
			name = "warmed"
		}
		b.Run(name, func(b *testing.B) {
			s := openBench(b)
			announces := cachetest.Populate(b, s, 10000, 20, 1)
			const batch = 32
			hashes := make([]bittorrent.InfoHash, batch)
			var r cache.Result
			r.Peers4.Compact = make([]byte, 0, 50*r.Peers4.Size())
			ctx := context.Background()
			b.ReportAllocs()
			b.ResetTimer()
			i := 0
			for b.Loop() {
				if i%batch == 0 {
					if i+batch > len(announces) {
						i = 0
					}
					if warm {
						for j := range hashes {
							hashes[j] = announces[i+j].InfoHash
						}
						s.(cache.Warmer).Warm(hashes)
					}
				}
				r.Peers4.Reset()
				if err := s.Announce(ctx, &announces[i], &r); err != nil {
					b.Fatal(err)
				}
				i++
			}
		})
	}
}

// BenchmarkScrape measures a scrape of ten known swarms.
func BenchmarkScrape(b *testing.B) {
	s := openBench(b)
	cachetest.BenchmarkScrape(b, s, cachetest.Populate(b, s, 1000, 50, 1))
}

// BenchmarkMemoryPerPeer reports what a stored peer costs, everything
// included (records, indexes, swarms, slice slack), for the model
// (100,000 swarms of 20) and for bigger swarms (10,000 of 100), IPv4 peers,
// three in ten seeders:
//
//   - open: an open tracker's announces, no totals, no peer ids kept;
//   - open,peer_ids: the same with peer_ids on;
//   - private: every peer a user of its own reporting nonzero totals.
//
// B/peer is the Go heap after a collection; RSS-B/peer is the process's
// resident memory growth, freed memory returned to the system before the
// store is built, which adds the garbage the filling left behind. Each
// iteration builds a whole store; -benchtime=1x measures it once.
func BenchmarkMemoryPerPeer(b *testing.B) {
	for _, shape := range []struct {
		name             string
		swarms, perSwarm int
	}{{"100000x20", 100_000, 20}, {"10000x100", 10_000, 100}} {
		for _, mode := range []string{"open", "open,peer_ids", "private"} {
			b.Run(shape.name+"/"+mode, func(b *testing.B) {
				memoryPerPeer(b, shape.swarms, shape.perSwarm, mode)
			})
		}
	}
}

func memoryPerPeer(b *testing.B, swarms, perSwarm int, mode string) {
	raw := `{}`
	if mode == "open,peer_ids" {
		raw = `{"peer_ids": true}`
	}
	var perPeer, rssPerPeer float64
	for b.Loop() {
		debug.FreeOSMemory()
		before, rss := heapAlloc(), residentBytes()
		s, err := driver{}.Open(json.RawMessage(raw), cache.Options{PeerLifetime: 45 * time.Minute})
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
					IPv4:     netip.AddrFrom4([4]byte{10, byte(i >> 8), byte(i), byte(n)}),
					Port:     6881,
					Seeder:   n%10 < 3,
				}
				if mode == "private" {
					a.UserID = uint32(i*perSwarm + n + 1)
					a.Uploaded, a.Downloaded = uint64(n+1)<<20, uint64(i+1)<<10
				}
				if err := s.Announce(context.Background(), &a, &r); err != nil {
					b.Fatal(err)
				}
			}
		}
		rssPerPeer = float64(residentBytes()-rss) / float64(swarms*perSwarm)
		perPeer = float64(heapAlloc()-before) / float64(swarms*perSwarm)
		runtime.KeepAlive(s)
		s.Close()
	}
	b.ReportMetric(perPeer, "B/peer")
	if rssPerPeer > 0 {
		b.ReportMetric(rssPerPeer, "RSS-B/peer")
	}
}

func heapAlloc() uint64 {
	runtime.GC()
	var m runtime.MemStats
	runtime.ReadMemStats(&m)
	return m.HeapAlloc
}

// residentBytes is the process's resident memory, 0 where /proc is not.
func residentBytes() uint64 {
	b, err := os.ReadFile("/proc/self/statm")
	if err != nil {
		return 0
	}
	f := strings.Fields(string(b))
	if len(f) < 2 {
		return 0
	}
	pages, _ := strconv.ParseUint(f[1], 10, 64)
	return pages * uint64(os.Getpagesize())
}
