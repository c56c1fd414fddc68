// Package hashtab is a hash table whose entries' places are known before
// they are looked up, so that a batch of lookups can ask the CPU for all
// their memory first (package prefetch) and miss the cache together
// instead of one after another. A Go map offers no such address; it is
// otherwise the better table, and the tracker uses this one only where a
// batch hint looks entries up: the memory store's swarms and the private
// tracker's registry.
//
// Open addressing with linear probing: a lookup reads one slot and, about
// as often as not, the next, which usually share a cache line. The first
// slot is picked by a seeded hash (hash/maphash, the runtime's own map
// hash), because the keys are chosen by clients: unseeded, they could be
// picked to pile up in one probe run. A removed entry leaves a tombstone,
// so that iterating while removing sees every remaining entry once;
// tombstones go when the table is rebuilt.
//
// A Table is not safe for concurrent use; its users hold their own locks.
package hashtab

import (
	"hash/maphash"
	"iter"
	"math/bits"
	"unsafe"

	"github.com/chihaya/chihaya/internal/prefetch"
)

// Key is what a table is keyed by: strings, like passkeys, and 20-byte
// arrays, like info hashes.
type Key interface {
	string | ~[20]byte
}

// Table maps keys to non-nil pointers. Make one with New.
type Table[K Key, V any] struct {
	slots []slot[K, V]
	// live counts entries; used counts entries and tombstones, the slots
	// a probe cannot stop at.
	live, used int
	seed       maphash.Seed
}

// slot is one entry: empty when tag is 0, a tombstone when tag is set and
// val is nil. The tag is the key's hash with its low bit set, so that most
// slots a probe passes are told apart without comparing keys.
type slot[K Key, V any] struct {
	tag uint64
	val *V
	key K
}

// The table is rebuilt when used slots pass maxLoadNum/maxLoadDen of it,
// to twice the entries it holds: between 3/8 and 3/4 full, a lookup of a
// present key probes 1.5 to 2.5 slots on average.
const (
	maxLoadNum = 3
	maxLoadDen = 4
	minSlots   = 8
)

// New returns an empty table, with a hash seed of its own.
func New[K Key, V any]() Table[K, V] {
	return Table[K, V]{seed: maphash.MakeSeed()}
}

// Hash returns k's seeded hash, which the Hashed methods take so that a
// caller hashes a key once for several calls.
//
// Keys are passed by pointer and hashed in place, with no function value
// between: a first version that handed array keys by value to a hash
// function given to New took 15 % longer per announce (cache/memory's
// BenchmarkAnnounceBatch), and made the callers' keys escape to the heap.
func (t *Table[K, V]) Hash(k *K) uint64 {
	if s, ok := any(k).(*string); ok {
		return maphash.String(t.seed, *s)
	}
	// A byte array, read in place.
	return maphash.Bytes(t.seed, unsafe.Slice((*byte)(unsafe.Pointer(k)), unsafe.Sizeof(*k)))
}

// Prefetch asks the CPU for the slots where a lookup of the key with hash
// h starts: the first slot's cache line and the next.
func (t *Table[K, V]) Prefetch(h uint64) {
	if len(t.slots) == 0 {
		return
	}
	i := home(h, uint64(len(t.slots)-1))
	prefetch.Lines(unsafe.Pointer(&t.slots[i]), 2, prefetch.LineSize)
}

// Find returns the value of k, or nil.
func (t *Table[K, V]) Find(k *K) *V { return t.FindHashed(k, t.Hash(k)) }

// FindHashed is Find with k's hash h.
func (t *Table[K, V]) FindHashed(k *K, h uint64) *V {
	if len(t.slots) == 0 {
		return nil
	}
	mask := uint64(len(t.slots) - 1)
	tag := h | 1
	for i := home(h, mask); ; i = (i + 1) & mask {
		sl := &t.slots[i]
		if sl.tag == 0 {
			return nil
		}
		if sl.tag == tag && sl.val != nil && sl.key == *k {
			return sl.val
		}
	}
}

// Hinted returns the first entry whose key has hash h, without comparing
// keys: an entry of another key in the rare case that two keys share all
// 63 bits compared. It is for hints, which only cost time when wrong, and
// saves them the key comparison, which for a string reads its bytes from
// another place in memory.
func (t *Table[K, V]) Hinted(h uint64) (*K, *V) {
	if len(t.slots) == 0 {
		return nil, nil
	}
	mask := uint64(len(t.slots) - 1)
	tag := h | 1
	for i := home(h, mask); ; i = (i + 1) & mask {
		sl := &t.slots[i]
		if sl.tag == 0 {
			return nil, nil
		}
		if sl.tag == tag && sl.val != nil {
			return &sl.key, sl.val
		}
	}
}

// home is the first slot a probe for hash h looks at. It leaves out the
// low bit, which the tag sets, so that a rebuild finds the same slot from
// the tag as a lookup from the hash.
func home(h, mask uint64) uint64 { return h >> 1 & mask }

// Set makes v, which must not be nil, the value of k.
func (t *Table[K, V]) Set(k *K, v *V) { t.SetHashed(k, t.Hash(k), v) }

// SetHashed is Set with k's hash h.
func (t *Table[K, V]) SetHashed(k *K, h uint64, v *V) {
	if v == nil {
		panic("hashtab: nil value")
	}
	if (t.used+1)*maxLoadDen > len(t.slots)*maxLoadNum {
		t.rebuild(t.live + 1)
	}
	mask := uint64(len(t.slots) - 1)
	tag := h | 1
	free := -1
	i := home(h, mask)
	for ; t.slots[i].tag != 0; i = (i + 1) & mask {
		sl := &t.slots[i]
		switch {
		case sl.val == nil:
			if free < 0 {
				free = int(i)
			}
		case sl.tag == tag && sl.key == *k:
			sl.val = v
			return
		}
	}
	if free >= 0 {
		i = uint64(free)
	} else {
		t.used++
	}
	t.slots[i] = slot[K, V]{tag: tag, val: v, key: *k}
	t.live++
}

// Delete removes k's entry, if there is one.
func (t *Table[K, V]) Delete(k *K) {
	if len(t.slots) == 0 {
		return
	}
	h := t.Hash(k)
	mask := uint64(len(t.slots) - 1)
	tag := h | 1
	for i := home(h, mask); t.slots[i].tag != 0; i = (i + 1) & mask {
		if sl := &t.slots[i]; sl.tag == tag && sl.val != nil && sl.key == *k {
			// The tag stays, so that probes go past the slot.
			var zero K
			sl.val, sl.key = nil, zero
			t.live--
			return
		}
	}
}

// Len returns the number of entries.
func (t *Table[K, V]) Len() int { return t.live }

// All yields every entry once, in no particular order, with a pointer to
// its key in the table, which holds until the entry is deleted. The loop
// may delete entries, the one it was given or others, but must not set
// any.
func (t *Table[K, V]) All() iter.Seq2[*K, *V] {
	return func(yield func(*K, *V) bool) {
		for i := range t.slots {
			sl := &t.slots[i]
			if sl.val == nil {
				continue
			}
			if !yield(&sl.key, sl.val) {
				return
			}
		}
	}
}

// Shrink rebuilds a table that deletions have left mostly empty, and frees
// an empty one, so that its memory follows the entries down as well as up.
func (t *Table[K, V]) Shrink() {
	switch {
	case t.live == 0:
		t.slots, t.used = nil, 0
	case len(t.slots) > minSlots && t.live*8 < len(t.slots):
		t.rebuild(t.live)
	}
}

// rebuild moves the entries into a new table with room for n of them at
// half load, dropping the tombstones.
func (t *Table[K, V]) rebuild(n int) {
	size := minSlots
	if n > minSlots/2 {
		size = 1 << bits.Len(uint(2*n-1))
	}
	old := t.slots
	t.slots = make([]slot[K, V], size)
	t.live, t.used = 0, 0
	mask := uint64(size - 1)
	for k := range old {
		sl := &old[k]
		if sl.val == nil {
			continue
		}
		i := home(sl.tag, mask)
		for t.slots[i].tag != 0 {
			i = (i + 1) & mask
		}
		t.slots[i] = *sl
		t.live++
		t.used++
	}
}
