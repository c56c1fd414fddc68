package memory

import (
	"hash/maphash"
	"math/rand/v2"
	"testing"

	"github.com/chihaya/chihaya/bittorrent"
)

// The index answers as a Go map would through any mix of inserts and
// removals, growth, tombstones reused and rebuilds: the operations of
// swarms that come and go for hours.
func TestIndexMatchesAMap(t *testing.T) {
	x := newIndex(maphash.MakeSeed())
	want := map[bittorrent.InfoHash]*swarm{}
	rng := rand.New(rand.NewPCG(1, 2))
	// Keys from a small pool, so that removed ones come back.
	pool := make([]bittorrent.InfoHash, 3000)
	for i := range pool {
		pool[i] = hash(i)
	}
	for op := range 200_000 {
		h := pool[rng.IntN(len(pool))]
		hv := x.hash(&h)
		got := x.find(&h, hv)
		if got != want[h] {
			t.Fatalf("op %d: find(%x) = %p, want %p", op, h[:4], got, want[h])
		}
		switch {
		case got == nil:
			s := new(swarm)
			x.insert(&h, hv, s)
			want[h] = s
		case rng.IntN(3) > 0:
			// Removals outnumber inserts for a while, then the other
			// way round, so the table grows, empties and grows again.
			if op/50_000%2 == 0 {
				continue
			}
			x.remove(&h, hv)
			delete(want, h)
		}
		if x.len() != len(want) {
			t.Fatalf("op %d: len %d, want %d", op, x.len(), len(want))
		}
		if op%10_000 == 0 {
			x.shrink()
		}
	}
	seen := map[bittorrent.InfoHash]bool{}
	for h, s := range x.all() {
		if seen[*h] || want[*h] != s {
			t.Fatalf("all yields %x (again: %v) with %p, want it once with %p", h[:4], seen[*h], s, want[*h])
		}
		seen[*h] = true
	}
	if len(seen) != len(want) {
		t.Fatalf("all yields %d entries, want %d", len(seen), len(want))
	}
}

// Walk, the reaper and the snapshot remove swarms while they iterate:
// every entry is seen once unless it was removed before its turn, and
// none is seen twice.
func TestIndexIterationSurvivesRemovals(t *testing.T) {
	x := newIndex(maphash.MakeSeed())
	keys := make([]bittorrent.InfoHash, 1000)
	for i := range keys {
		keys[i] = hash(i)
		x.insert(&keys[i], x.hash(&keys[i]), new(swarm))
	}
	rng := rand.New(rand.NewPCG(3, 4))
	seen := map[bittorrent.InfoHash]int{}
	removedUnseen := map[bittorrent.InfoHash]bool{}
	for h := range x.all() {
		seen[*h]++
		if removedUnseen[*h] {
			t.Fatalf("%x seen after its removal", h[:4])
		}
		x.remove(h, x.hash(h))
		// And another one, which may lie ahead.
		other := keys[rng.IntN(len(keys))]
		if x.find(&other, x.hash(&other)) != nil {
			x.remove(&other, x.hash(&other))
			if seen[other] == 0 {
				removedUnseen[other] = true
			}
		}
	}
	for h, n := range seen {
		if n != 1 {
			t.Fatalf("%x seen %d times", h[:4], n)
		}
	}
	if len(seen)+len(removedUnseen) != len(keys) {
		t.Fatalf("%d seen and %d removed before their turn, of %d", len(seen), len(removedUnseen), len(keys))
	}
	if x.len() != 0 {
		t.Fatalf("%d entries left after removing all", x.len())
	}
}

// A shard whose swarms have gone gives back its table; one that shrank a
// lot gets a smaller one.
func TestIndexShrinks(t *testing.T) {
	x := newIndex(maphash.MakeSeed())
	keys := make([]bittorrent.InfoHash, 4096)
	for i := range keys {
		keys[i] = hash(i)
		x.insert(&keys[i], x.hash(&keys[i]), new(swarm))
	}
	big := len(x.slots)
	for _, h := range keys[10:] {
		x.remove(&h, x.hash(&h))
	}
	x.shrink()
	if len(x.slots) > 32 {
		t.Fatalf("10 swarms left in %d slots (%d before)", len(x.slots), big)
	}
	for _, h := range keys[:10] {
		if x.find(&h, x.hash(&h)) == nil {
			t.Fatalf("%x lost by the shrink", h[:4])
		}
	}
	for _, h := range keys[:10] {
		x.remove(&h, x.hash(&h))
	}
	x.shrink()
	if x.slots != nil {
		t.Fatalf("an empty index keeps %d slots", len(x.slots))
	}
}
