package redis

import (
	"context"
	"crypto/sha1"
	"fmt"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/chihaya/chihaya/bittorrent"
	"github.com/chihaya/chihaya/cache"
	"github.com/chihaya/chihaya/cache/cachetest"
)

// startCluster starts a Redis Cluster of three masters without replicas on
// free loopback ports, and stops it when the test ends.
func startCluster(t *testing.T) []string {
	t.Helper()
	requireRedisServer(t)
	var addrs []string
	for _, port := range freePorts(t, 3) {
		dir := t.TempDir()
		s := startServer(t, dir, port,
			"--cluster-enabled", "yes", "--cluster-config-file", filepath.Join(dir, "nodes.conf"))
		addrs = append(addrs, s.addr())
	}
	args := append([]string{"--cluster", "create"}, addrs...)
	args = append(args, "--cluster-replicas", "0", "--cluster-yes")
	if out, err := exec.Command("redis-cli", args...).CombinedOutput(); err != nil {
		t.Fatalf("redis-cli %s: %v\n%s", strings.Join(args, " "), err, out)
	}
	// The nodes agree on the slot layout through gossip, which takes a
	// moment after the create.
	deadline := time.Now().Add(20 * time.Second)
	for _, a := range addrs {
		_, port, _ := strings.Cut(a, ":")
		for {
			out, err := exec.Command("redis-cli", "-p", port, "cluster", "info").Output()
			if err == nil && strings.Contains(string(out), "cluster_state:ok") {
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("cluster node %s not ok after 20s: %s %v", a, out, err)
			}
			time.Sleep(50 * time.Millisecond)
		}
	}
	return addrs
}

// TestCluster runs the suite against a three-master Redis Cluster, then
// checks a scrape whose hashes live on every node, and the reaper.
func TestCluster(t *testing.T) {
	addrs := startCluster(t)

	t.Run("Suite", func(t *testing.T) {
		cachetest.Run(t, func(t *testing.T, opts cache.Options) cache.Store {
			return openStore(t, addrs, true, testPrefix(t, addrs, true), opts, "")
		})
	})

	t.Run("ScrapeManySlots", func(t *testing.T) {
		prefix := testPrefix(t, addrs, true)
		var mu sync.Mutex
		now := time.Date(2024, 1, 1, 0, 0, 0, 0, time.UTC)
		clock := func() time.Time { mu.Lock(); defer mu.Unlock(); return now }
		const life = time.Minute
		s := openStore(t, addrs, true, prefix, cache.Options{PeerLifetime: life, Now: clock}, `"reap_interval": "100ms"`)
		defer s.Close()

		// Swarm i has i%3 seeders and i%5+1 downloaders; every third
		// hash asked for is unknown.
		const swarms = 300
		var hashes []bittorrent.InfoHash
		var want []bittorrent.Scrape
		for i := range swarms {
			h := bittorrent.InfoHash(sha1.Sum([]byte("swarm " + strconv.Itoa(i))))
			hashes = append(hashes, h)
			if i%3 == 2 {
				continue
			}
			seeders, leechers := i%3, i%5+1
			for n := range seeders + leechers {
				a := peer(h, n)
				a.Seeder = n < seeders
				var r cache.Result
				if err := s.Announce(context.Background(), &a, &r); err != nil {
					t.Fatal(err)
				}
			}
			want = append(want, bittorrent.Scrape{InfoHash: h, Complete: uint32(seeders), Incomplete: uint32(leechers)})
		}
		got, err := s.Scrape(context.Background(), hashes, nil)
		if err != nil {
			t.Fatal(err)
		}
		if fmt.Sprint(got) != fmt.Sprint(want) {
			t.Errorf("scrape of %d swarms over the cluster:\ngot  %v\nwant %v", swarms, got, want)
		}
		// The swarms are spread over the three masters.
		c := rawClient(t, addrs, true)
		defer c.Close()
		nodes := 0
		for _, node := range c.Nodes() {
			n, err := node.Do(context.Background(), node.B().Dbsize().Build()).AsInt64()
			if err != nil {
				t.Fatal(err)
			}
			if n > 0 {
				nodes++
			}
		}
		if nodes != 3 {
			t.Errorf("keys on %d nodes, want 3", nodes)
		}

		// A lifetime later the reaper, walking every node, leaves no
		// swarm key behind.
		mu.Lock()
		now = now.Add(life + 2*time.Second)
		mu.Unlock()
		deadline := time.Now().Add(15 * time.Second)
		for {
			left := 0
			for _, k := range countKeys(t, addrs, true, prefix) {
				if k != prefix+"reaper" {
					left++
				}
			}
			if left == 0 {
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("%d keys left on the cluster 15s after every swarm expired", left)
			}
			time.Sleep(100 * time.Millisecond)
		}
	})
}
