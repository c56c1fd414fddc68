package redis

import (
	"context"
	"encoding/binary"
	"fmt"
	"math/rand/v2"
	"net/netip"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/chihaya/chihaya/bittorrent"
	"github.com/chihaya/chihaya/cache"
)

// The benchmarks mirror cache/memory's (1,000 swarms of 50 peers, one in
// five a seeder, re-announces asking for 50), so their figures compare.

func benchHash(n int) bittorrent.InfoHash {
	var h bittorrent.InfoHash
	binary.BigEndian.PutUint64(h[:], rand.Uint64())
	binary.BigEndian.PutUint32(h[16:], uint32(n))
	return h
}

func benchPeerID(n int) bittorrent.PeerID {
	var p bittorrent.PeerID
	binary.BigEndian.PutUint32(p[16:], uint32(n))
	return p
}

// populate fills a fresh store with swarms × perSwarm IPv4 peers, one in
// five a seeder, and returns one announce per peer in random order. The
// announces are sent from several goroutines, which the client pipelines,
// so filling takes seconds rather than minutes.
func populate(b *testing.B, s cache.Store, swarms, perSwarm int) []cache.Announce {
	b.Helper()
	announces := make([]cache.Announce, 0, swarms*perSwarm)
	for i := range swarms {
		h := benchHash(i)
		for n := range perSwarm {
			announces = append(announces, cache.Announce{
				InfoHash: h,
				PeerID:   benchPeerID(n),
				IPv4:     netip.AddrFrom4([4]byte{10, byte(n >> 16), byte(n >> 8), byte(n)}),
				Port:     6881,
				Seeder:   n%5 == 0,
				NumWant:  50,
			})
		}
	}
	const workers = 32
	var wg sync.WaitGroup
	var failed sync.Once
	for w := range workers {
		wg.Go(func() {
			var r cache.Result
			for i := w; i < len(announces); i += workers {
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

func benchStore(b *testing.B) cache.Store {
	b.Helper()
	addrs := []string{sharedRedis(b)}
	s := openStore(b, addrs, false, testPrefix(b, addrs, false), cache.Options{PeerLifetime: 45 * time.Minute}, "")
	b.Cleanup(func() { s.Close() })
	return s
}

func newResult() cache.Result {
	return cache.Result{Peers4: make([]bittorrent.Peer, 0, 50), Peers6: make([]bittorrent.Peer, 0, 50)}
}

// BenchmarkAnnounce measures the common case, one at a time: a peer
// already in a swarm of 50 re-announcing and asking for 50 peers. It is
// one round trip to Redis, so its time is mostly the round trip and the
// script.
func BenchmarkAnnounce(b *testing.B) {
	s := benchStore(b)
	announces := populate(b, s, 1000, 50)
	r := newResult()
	ctx := context.Background()
	b.ReportAllocs()
	i := 0
	for b.Loop() {
		r.Peers4, r.Peers6 = r.Peers4[:0], r.Peers6[:0]
		if err := s.Announce(ctx, &announces[i], &r); err != nil {
			b.Fatal(err)
		}
		if i++; i == len(announces) {
			i = 0
		}
	}
}

// BenchmarkAnnounceParallel is BenchmarkAnnounce from many goroutines at
// once, as a busy tracker calls it: the client pipelines the concurrent
// scripts over a few connections, so this is the throughput figure.
func BenchmarkAnnounceParallel(b *testing.B) {
	s := benchStore(b)
	announces := populate(b, s, 1000, 50)
	ctx := context.Background()
	b.ReportAllocs()
	b.SetParallelism(16)
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		r := newResult()
		i := rand.IntN(len(announces))
		for pb.Next() {
			r.Peers4, r.Peers6 = r.Peers4[:0], r.Peers6[:0]
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

// BenchmarkScrape measures a scrape of ten known swarms: one pipeline of
// ten scripts.
func BenchmarkScrape(b *testing.B) {
	const perScrape = 10
	s := benchStore(b)
	announces := populate(b, s, 1000, 50)
	hashes := make([]bittorrent.InfoHash, 0, len(announces))
	for _, a := range announces {
		hashes = append(hashes, a.InfoHash)
	}
	dst := make([]bittorrent.Scrape, 0, perScrape)
	ctx := context.Background()
	b.ReportAllocs()
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

// BenchmarkMemoryPerPeer reports what a peer costs in Redis: used_memory
// from INFO before and after filling a fresh key prefix with IPv4 peers,
// one in five a seeder. 100 peers per swarm stay within Redis's compact
// encodings (listpacks, up to 128 entries); 1,000 per swarm show the cost
// of the hash tables and skip lists that large swarms switch to. Run it
// with -benchtime=1x.
func BenchmarkMemoryPerPeer(b *testing.B) {
	addrs := []string{sharedRedis(b)}
	c := rawClient(b, addrs, false)
	defer c.Close()
	usedMemory := func() int64 {
		info, err := c.Do(context.Background(), c.B().Info().Section("memory").Build()).ToString()
		if err != nil {
			b.Fatal(err)
		}
		for line := range strings.Lines(info) {
			if v, ok := strings.CutPrefix(strings.TrimSpace(line), "used_memory:"); ok {
				n, err := strconv.ParseInt(v, 10, 64)
				if err != nil {
					b.Fatal(err)
				}
				return n
			}
		}
		b.Fatal("no used_memory in INFO memory")
		return 0
	}
	for _, shape := range []struct{ swarms, perSwarm int }{{1000, 100}, {100, 1000}} {
		b.Run(fmt.Sprintf("%dx%d", shape.swarms, shape.perSwarm), func(b *testing.B) {
			var perPeer float64
			for b.Loop() {
				prefix := testPrefix(b, addrs, false)
				s := openStore(b, addrs, false, prefix, cache.Options{PeerLifetime: 45 * time.Minute}, "")
				before := usedMemory()
				populate(b, s, shape.swarms, shape.perSwarm)
				perPeer = float64(usedMemory()-before) / float64(shape.swarms*shape.perSwarm)
				s.Close()
				deleteKeys(b, addrs, false, prefix)
			}
			b.ReportMetric(perPeer, "B/peer")
		})
	}
}
