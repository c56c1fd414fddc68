package redis

import (
	"context"
	"fmt"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/chihaya/chihaya/cache"
	"github.com/chihaya/chihaya/cache/cachetest"
)

// The benchmarks are cachetest's, which cache/memory runs too (1,000
// swarms of 50 peers, one in five a seeder, re-announces asking for 50), so
// their figures compare.

func benchStore(b *testing.B) cache.Store {
	b.Helper()
	addrs := []string{sharedRedis(b)}
	s := openStore(b, addrs, false, testPrefix(b, addrs, false), cache.Options{PeerLifetime: 45 * time.Minute}, "")
	b.Cleanup(func() { s.Close() })
	return s
}

// populate fills a fresh store from 32 goroutines, which the client
// pipelines, so filling takes seconds rather than minutes.
func populate(b *testing.B, s cache.Store, swarms, perSwarm int) []cache.Announce {
	return cachetest.Populate(b, s, swarms, perSwarm, 32)
}

// BenchmarkAnnounce measures the common case, one at a time. It is one
// round trip to Redis, so its time is mostly the round trip and the script.
func BenchmarkAnnounce(b *testing.B) {
	s := benchStore(b)
	cachetest.BenchmarkAnnounce(b, s, populate(b, s, 1000, 50))
}

// BenchmarkAnnounceParallel is BenchmarkAnnounce from many goroutines at
// once, as a busy tracker calls it: the client pipelines the concurrent
// scripts over a few connections, so this is the throughput figure.
func BenchmarkAnnounceParallel(b *testing.B) {
	s := benchStore(b)
	cachetest.BenchmarkAnnounceParallel(b, s, populate(b, s, 1000, 50), 16)
}

// BenchmarkScrape measures a scrape of ten known swarms: one pipeline of
// ten scripts.
func BenchmarkScrape(b *testing.B) {
	s := benchStore(b)
	cachetest.BenchmarkScrape(b, s, populate(b, s, 1000, 50))
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
