package cachetest

import (
	"context"
	"encoding/binary"
	"math/rand/v2"
	"net/netip"
	"sync"
	"testing"

	"github.com/chihaya/chihaya/bittorrent"
	"github.com/chihaya/chihaya/cache"
)

// The benchmarks every driver runs, so their figures compare: the same
// swarms, the same requests, the same measurement.

// Populate fills s with swarms × perSwarm IPv4 peers, one in five a seeder,
// announcing from workers goroutines (a remote store needs several to fill
// in reasonable time), and returns one re-announce per peer (numwant 50) in
// random order, so that consecutive iterations touch unrelated swarms as
// real traffic does. The info hashes are random, so stores that share a
// server do not collide.
func Populate(b *testing.B, s cache.Store, swarms, perSwarm, workers int) []cache.Announce {
	b.Helper()
	announces := make([]cache.Announce, 0, swarms*perSwarm)
	for i := range swarms {
		var h bittorrent.InfoHash
		binary.BigEndian.PutUint64(h[:], rand.Uint64())
		binary.BigEndian.PutUint32(h[16:], uint32(i))
		for n := range perSwarm {
			var id bittorrent.PeerID
			binary.BigEndian.PutUint32(id[16:], uint32(n))
			announces = append(announces, cache.Announce{
				InfoHash: h,
				PeerID:   id,
				IPv4:     netip.AddrFrom4([4]byte{10, byte(n >> 16), byte(n >> 8), byte(n)}),
				Port:     6881,
				Seeder:   n%5 == 0,
				NumWant:  50,
			})
		}
	}
	var wg sync.WaitGroup
	var failed sync.Once
	for w := range max(workers, 1) {
		wg.Go(func() {
			var r cache.Result
			for i := w; i < len(announces); i += max(workers, 1) {
				a := announces[i]
				a.NumWant = 0
				if err := s.Announce(context.Background(), &a, &r); err != nil {
					failed.Do(func() { b.Error(err) })
					return
				}
			}
		})
	}
	wg.Wait()
	if b.Failed() {
		b.FailNow()
	}
	rand.Shuffle(len(announces), func(i, j int) { announces[i], announces[j] = announces[j], announces[i] })
	return announces
}

func newResult() cache.Result {
	var r cache.Result
	r.Peers4.Compact = make([]byte, 0, 50*r.Peers4.Size())
	r.Peers6.Compact = make([]byte, 0, 50*r.Peers6.Size())
	return r
}

// BenchmarkAnnounce measures the common case: a peer already in its swarm
// re-announcing and asking for 50 peers, one request at a time.
func BenchmarkAnnounce(b *testing.B, s cache.Store, announces []cache.Announce) {
	r := newResult()
	ctx := context.Background()
	b.ReportAllocs()
	b.ResetTimer()
	i := 0
	for b.Loop() {
		r.Peers4.Reset()
		r.Peers6.Reset()
		if err := s.Announce(ctx, &announces[i], &r); err != nil {
			b.Fatal(err)
		}
		if i++; i == len(announces) {
			i = 0
		}
	}
}

// BenchmarkAnnounceParallel is BenchmarkAnnounce from parallelism
// goroutines per CPU at once: the cost of locks for an in-process store,
// of round trips shared over connections for a remote one.
func BenchmarkAnnounceParallel(b *testing.B, s cache.Store, announces []cache.Announce, parallelism int) {
	ctx := context.Background()
	b.ReportAllocs()
	b.SetParallelism(parallelism)
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		r := newResult()
		// Announce only reads its request, so the goroutines share them;
		// random starting points keep them on different swarms.
		i := rand.IntN(len(announces))
		for pb.Next() {
			r.Peers4.Reset()
			r.Peers6.Reset()
			if err := s.Announce(ctx, &announces[i], &r); err != nil {
				b.Error(err)
				return
			}
			if i++; i == len(announces) {
				i = 0
			}
		}
	})
}

// BenchmarkScrape measures a scrape of ten known swarms.
func BenchmarkScrape(b *testing.B, s cache.Store, announces []cache.Announce) {
	const perScrape = 10
	hashes := make([]bittorrent.InfoHash, 0, len(announces))
	for _, a := range announces {
		hashes = append(hashes, a.InfoHash)
	}
	dst := make([]bittorrent.Scrape, 0, perScrape)
	ctx := context.Background()
	b.ReportAllocs()
	b.ResetTimer()
	i := 0
	for b.Loop() {
		if i+perScrape > len(hashes) {
			i = 0
		}
		var err error
		if dst, err = s.Scrape(ctx, hashes[i:i+perScrape], dst[:0]); err != nil {
			b.Fatal(err)
		}
		i += perScrape
	}
}
