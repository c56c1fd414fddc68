package hashtab

import (
	"encoding/binary"
	"fmt"
	"math/rand/v2"
	"testing"
	"unsafe"
)

type key [20]byte

func keyOf(n int) key {
	var k key
	binary.BigEndian.PutUint64(k[:], uint64(n)*0x9E3779B97F4A7C15)
	binary.BigEndian.PutUint32(k[16:], uint32(n))
	return k
}

// The table answers as a Go map would through any mix of sets, deletions,
// growth, tombstones reused and shrinks: the life of a registry or of a
// shard's swarms over hours. Few keys keep the table small, where probe
// runs wrap around its end and rebuilds are frequent.
func TestTableMatchesAMap(t *testing.T) {
	for _, pool := range []int{3000, 12} {
		t.Run(fmt.Sprint(pool, " keys"), func(t *testing.T) {
			matchMap(t, New[key, int](), 100_000, pool)
		})
	}
}

func matchMap(t *testing.T, x Table[key, int], ops, pool int) {
	want := map[key]*int{}
	rng := rand.New(rand.NewPCG(1, 2))
	for op := range ops {
		k := keyOf(rng.IntN(pool))
		h := x.Hash(&k)
		got := x.FindHashed(&k, h)
		if got != want[k] {
			t.Fatalf("op %d: find(%x) = %p, want %p", op, k[16:], got, want[k])
		}
		switch r := rng.IntN(4); {
		case got == nil || r == 0:
			// New keys, and replaced values.
			v := new(int)
			x.SetHashed(&k, h, v)
			want[k] = v
		case op/(ops/4)%2 == 1:
			// Quarters that delete alternate with quarters that
			// only add, so the table grows, empties and grows again.
			x.Delete(&k)
			delete(want, k)
		}
		if x.Len() != len(want) {
			t.Fatalf("op %d: len %d, want %d", op, x.Len(), len(want))
		}
		if op%(ops/20) == 0 {
			x.Shrink()
		}
	}
	seen := map[key]bool{}
	for k, v := range x.All() {
		if seen[*k] || want[*k] != v {
			t.Fatalf("All yields %x (again: %v) with %p, want it once with %p", k[16:], seen[*k], v, want[*k])
		}
		seen[*k] = true
	}
	if len(seen) != len(want) {
		t.Fatalf("All yields %d entries, want %d", len(seen), len(want))
	}
}

// Hinted finds an entry by its hash alone, and nothing where there is none.
func TestHinted(t *testing.T) {
	x := New[string, int]()
	vals := map[string]*int{}
	for i := range 100 {
		k := fmt.Sprintf("passkey%032d", i)
		vals[k] = new(int)
		x.Set(&k, vals[k])
	}
	for k, v := range vals {
		gk, gv := x.Hinted(x.Hash(&k))
		if gv != v || *gk != k {
			t.Fatalf("Hinted(%q) = %q, %p; want %p", k, *gk, gv, v)
		}
	}
	gone := fmt.Sprintf("passkey%032d", 7)
	x.Delete(&gone)
	if k, v := x.Hinted(x.Hash(&gone)); v != nil {
		t.Fatalf("a deleted key is hinted: %q", *k)
	}
	nobody := "nobody"
	if _, v := x.Hinted(x.Hash(&nobody)); v != nil {
		t.Fatal("an absent key is hinted")
	}
}

// The memory store's reaper and Walk delete entries while they iterate:
// every entry is seen once unless it was deleted before its turn, and
// none twice.
func TestIterationSurvivesDeletions(t *testing.T) {
	x := New[key, int]()
	keys := make([]key, 1000)
	for i := range keys {
		keys[i] = keyOf(i)
		x.Set(&keys[i], new(int))
	}
	rng := rand.New(rand.NewPCG(3, 4))
	seen := map[key]int{}
	deletedUnseen := map[key]bool{}
	for kp := range x.All() {
		k := *kp
		seen[k]++
		if deletedUnseen[k] {
			t.Fatalf("%x seen after its deletion", k[16:])
		}
		x.Delete(&k)
		// And another one, which may lie ahead.
		other := keys[rng.IntN(len(keys))]
		if x.Find(&other) != nil {
			x.Delete(&other)
			if seen[other] == 0 {
				deletedUnseen[other] = true
			}
		}
	}
	for k, n := range seen {
		if n != 1 {
			t.Fatalf("%x seen %d times", k[16:], n)
		}
	}
	if len(seen)+len(deletedUnseen) != len(keys) {
		t.Fatalf("%d seen and %d deleted before their turn, of %d", len(seen), len(deletedUnseen), len(keys))
	}
	if x.Len() != 0 {
		t.Fatalf("%d entries left after deleting all", x.Len())
	}
}

// A table whose entries have mostly gone gets a smaller one; an empty one
// gives its memory back.
func TestShrink(t *testing.T) {
	x := New[key, int]()
	for i := range 4096 {
		k := keyOf(i)
		x.Set(&k, new(int))
	}
	big := len(x.slots)
	for i := 10; i < 4096; i++ {
		k := keyOf(i)
		x.Delete(&k)
	}
	x.Shrink()
	if len(x.slots) > 32 {
		t.Fatalf("10 entries left in %d slots (%d before)", len(x.slots), big)
	}
	for i := range 10 {
		if k := keyOf(i); x.Find(&k) == nil {
			t.Fatalf("entry %d lost by the shrink", i)
		}
	}
	for i := range 10 {
		k := keyOf(i)
		x.Delete(&k)
	}
	x.Shrink()
	if x.slots != nil {
		t.Fatalf("an empty table keeps %d slots", len(x.slots))
	}
}

// BenchmarkGather looks up 32 random keys of a table of 1M per round,
// as a batch hint does: "lookups" finds them in turn, "prefetched" first
// asks for every key's slot. Each lookup waits for the one before, as an
// announce's work does (the CPU would otherwise overlap independent
// lookups by itself). The difference is what Prefetch buys; ns/op is per
// lookup.
func BenchmarkGather(b *testing.B) {
	x := New[key, int]()
	const n = 1 << 20
	for i := range n {
		k := keyOf(i)
		x.Set(&k, new(int))
	}
	rng := rand.New(rand.NewPCG(5, 6))
	keys := make([]key, 1<<16)
	for i := range keys {
		keys[i] = keyOf(rng.IntN(n))
	}
	for _, prefetched := range []bool{false, true} {
		name := "lookups"
		if prefetched {
			name = "prefetched"
		}
		b.Run(name, func(b *testing.B) {
			var hs [32]uint64
			found, next, dep := 0, 0, 0
			for b.Loop() {
				if next%len(hs) == 0 {
					next %= len(keys)
					batch := keys[next : next+len(hs)]
					for i := range batch {
						hs[i] = x.Hash(&batch[i])
						if prefetched {
							x.Prefetch(hs[i])
						}
					}
				}
				v := x.FindHashed(&keys[next+dep], hs[next%len(hs)+dep])
				if v != nil {
					found++
				}
				// Always 0, but only known once v is.
				dep = int(uintptr(unsafe.Pointer(v)) >> 63)
				next++
			}
			if found != b.N {
				b.Fatalf("found %d of %d", found, b.N)
			}
		})
	}
}
