package memory

import (
	"hash/maphash"
	"iter"
	"math/bits"
	"unsafe"

	"github.com/chihaya/chihaya/bittorrent"
	"github.com/chihaya/chihaya/internal/prefetch"
)

// index is a shard's table from info hashes to swarms. It is a hash table
// of its own rather than a Go map for one reason: Warm can compute where a
// hash's slot lies and ask the CPU for it before looking the hash up, so
// the lookups of a batch miss the cache together instead of one after
// another; a Go map offers no such address. Open addressing with linear
// probing, so a lookup reads one or two adjacent cache lines.
//
// The slot is chosen by a seeded hash (hash/maphash, the runtime's own map
// hash), because info hashes are chosen by clients: unseeded, their bytes
// could be picked to pile swarms into one probe sequence.
//
// A removed entry leaves a tombstone, so that iterating the table while
// removing from it (reap and Walk drop expired swarms as they go) sees
// every entry once; tombstones are cleared when the table is rebuilt.
type index struct {
	slots []slot
	// live counts entries; used counts entries and tombstones, the slots
	// a probe cannot stop at.
	live, used int
	seed       maphash.Seed
}

// slot is one entry. Two fit a cache line.
type slot struct {
	h bittorrent.InfoHash
	// s is the swarm; nil marks a slot never used since the table was
	// built, tombstone one whose entry was removed.
	s *swarm
}

// tombstone is the marker of a removed entry; it is never a real swarm.
var tombstone = new(swarm)

// The table is rebuilt when used slots pass maxLoadNum/maxLoadDen of it,
// to twice the entries it holds: between 3/8 and 3/4 full, a lookup of a
// present hash probes 1.5 to 2.5 slots on average.
const (
	maxLoadNum = 3
	maxLoadDen = 4
	minSlots   = 8
)

func newIndex(seed maphash.Seed) index { return index{seed: seed} }

// hash returns the seeded hash of h, which picks its first slot.
func (x *index) hash(h *bittorrent.InfoHash) uint64 { return maphash.Bytes(x.seed, h[:]) }

// warm asks the CPU for the slots where a lookup of the hash with seeded
// hash hv starts: the first slot's line and the next, which a probe most
// often reaches.
func (x *index) warm(hv uint64) {
	if len(x.slots) == 0 {
		return
	}
	i := hv & uint64(len(x.slots)-1)
	prefetch.Lines(unsafe.Pointer(&x.slots[i]), 2, prefetch.LineSize)
}

// find returns the swarm of h, whose seeded hash is hv, or nil.
func (x *index) find(h *bittorrent.InfoHash, hv uint64) *swarm {
	if len(x.slots) == 0 {
		return nil
	}
	mask := uint64(len(x.slots) - 1)
	for i := hv & mask; ; i = (i + 1) & mask {
		sl := &x.slots[i]
		if sl.s == nil {
			return nil
		}
		if sl.h == *h && sl.s != tombstone {
			return sl.s
		}
	}
}

// insert adds s as the swarm of h, whose seeded hash is hv; h must not be
// in the table.
func (x *index) insert(h *bittorrent.InfoHash, hv uint64, s *swarm) {
	if (x.used+1)*maxLoadDen > len(x.slots)*maxLoadNum {
		x.rebuild(x.live + 1)
	}
	mask := uint64(len(x.slots) - 1)
	i := hv & mask
	for x.slots[i].s != nil && x.slots[i].s != tombstone {
		i = (i + 1) & mask
	}
	if x.slots[i].s == nil {
		x.used++
	}
	x.slots[i] = slot{h: *h, s: s}
	x.live++
}

// remove drops the entry of h, whose seeded hash is hv, if there is one.
func (x *index) remove(h *bittorrent.InfoHash, hv uint64) {
	if len(x.slots) == 0 {
		return
	}
	mask := uint64(len(x.slots) - 1)
	for i := hv & mask; x.slots[i].s != nil; i = (i + 1) & mask {
		if sl := &x.slots[i]; sl.h == *h && sl.s != tombstone {
			// The hash stays, so the slot matches no lookup but a
			// rebuild still knows nothing about it.
			sl.s = tombstone
			x.live--
			return
		}
	}
}

// len returns the number of entries.
func (x *index) len() int { return x.live }

// all yields every entry once. The body may remove entries, the one it
// was given or others, but must not insert any.
func (x *index) all() iter.Seq2[*bittorrent.InfoHash, *swarm] {
	return func(yield func(*bittorrent.InfoHash, *swarm) bool) {
		for i := range x.slots {
			sl := &x.slots[i]
			if sl.s == nil || sl.s == tombstone {
				continue
			}
			if !yield(&sl.h, sl.s) {
				return
			}
		}
	}
}

// shrink rebuilds a table that removals have left mostly empty, so that a
// shard's memory follows its swarms down as well as up. The reaper calls
// it after a pass.
func (x *index) shrink() {
	switch {
	case x.live == 0:
		x.slots, x.used = nil, 0
	case len(x.slots) > minSlots && x.live*8 < len(x.slots):
		x.rebuild(x.live)
	}
}

// rebuild moves the entries into a new table with room for n of them at
// half load, dropping the tombstones.
func (x *index) rebuild(n int) {
	size := minSlots
	if n > minSlots/2 {
		size = 1 << bits.Len(uint(2*n-1))
	}
	old := x.slots
	x.slots = make([]slot, size)
	x.live, x.used = 0, 0
	mask := uint64(size - 1)
	for k := range old {
		sl := &old[k]
		if sl.s == nil || sl.s == tombstone {
			continue
		}
		i := x.hash(&sl.h) & mask
		for x.slots[i].s != nil {
			i = (i + 1) & mask
		}
		x.slots[i] = *sl
		x.live++
		x.used++
	}
}
