package tracker

import (
	"encoding/binary"
	"hash/maphash"
	"net/netip"
	"sync"
	"sync/atomic"
	"time"
)

// RateLimiter is a per-address rate limiter in a table of fixed size: its
// memory is allocated once and never grows, however many addresses it
// sees. Each address has a token bucket of burst tokens that refills at
// the configured rate, kept as one number, its theoretical arrival time
// (the generic cell rate algorithm): the bucket is full when that time is
// not in the future.
//
// Addresses are hashed with a random seed into sets of a few entries; an
// address that finds its set full takes the place of the entry closest to
// a full bucket. An entry whose bucket is full carries no information, so
// only when every entry of a set belongs to an address still in debt is
// one forgotten (and that address starts again with a full bucket). A
// collision of the 64-bit hashes merges two addresses' buckets, which is
// vanishingly rare.
//
// IPv4 addresses are limited one by one; IPv6 addresses by their /64
// prefix, which is what one subscriber usually holds, since a client with a
// /64 can use any of its 2⁶⁴ addresses. The zero Addr is never limited.
//
// Its methods neither allocate nor block on more than one short lock.
type RateLimiter struct {
	// interval is the time one token takes to come back; tolerance is
	// how far the arrival time may run ahead of now: (burst-1) intervals.
	interval, tolerance int64
	// perMinute is the rate it was made with.
	perMinute int
	seed      maphash.Seed
	setMask   uint64
	entries   []limiterEntry
	locks     []paddedMutex
}

// limiterWays is the number of entries of one set.
const limiterWays = 4

// DefaultLimiterEntries is the table size of the tracker's limiters:
// 65,536 addresses in 1 MiB.
const DefaultLimiterEntries = 1 << 16

// limiterEntry is written under its set's lock and read by Blocked without
// it, hence the atomics. Blocked may read the arrival time of an address
// that has just taken the entry over from the one it looks for; that
// answers one request as if from the other address, which is harmless.
type limiterEntry struct {
	// tag is the address's hash; 0 is an empty entry.
	tag atomic.Uint64
	// tat is the theoretical arrival time, in the limiter's clock.
	tat atomic.Int64
}

type paddedMutex struct {
	sync.Mutex
	_ [64 - 8]byte
}

// NewRateLimiter returns a limiter that lets each address do perMinute
// things a minute, up to perMinute at once, in a table of at least entries
// addresses (rounded up to a power of two). perMinute must be positive.
func NewRateLimiter(perMinute, entries int) *RateLimiter {
	if perMinute < 1 {
		panic("tracker: NewRateLimiter needs a positive rate")
	}
	sets := 1
	for sets*limiterWays < entries {
		sets <<= 1
	}
	locks := min(sets, 256)
	interval := max(int64(time.Minute)/int64(perMinute), 1)
	return &RateLimiter{
		interval:  interval,
		perMinute: perMinute,
		tolerance: interval * int64(perMinute-1),
		seed:      maphash.MakeSeed(),
		setMask:   uint64(sets - 1),
		entries:   make([]limiterEntry, sets*limiterWays),
		locks:     make([]paddedMutex, locks),
	}
}

// Capacity is the number of addresses the table holds.
func (l *RateLimiter) Capacity() int { return len(l.entries) }

// Len counts the addresses the table holds now (a walk over the table).
func (l *RateLimiter) Len() int {
	n := 0
	for s := range len(l.entries) / limiterWays {
		mu := l.lock(uint64(s))
		mu.Lock()
		for i := range l.entries[s*limiterWays : (s+1)*limiterWays] {
			if l.entries[s*limiterWays+i].tag.Load() != 0 {
				n++
			}
		}
		mu.Unlock()
	}
	return n
}

// hash returns the address's tag, never 0; ok is false for the zero Addr.
func (l *RateLimiter) hash(a netip.Addr) (tag uint64, ok bool) {
	if !a.IsValid() {
		return 0, false
	}
	a = a.Unmap()
	var k [2]uint64
	if a.Is4() {
		b := a.As4()
		k[1] = 1<<63 | uint64(binary.BigEndian.Uint32(b[:]))
	} else {
		b := a.As16()
		k[0] = binary.BigEndian.Uint64(b[:8])
	}
	return maphash.Comparable(l.seed, k) | 1, true
}

func (l *RateLimiter) lock(set uint64) *paddedMutex {
	return &l.locks[set&uint64(len(l.locks)-1)]
}

// slot returns the address's set and the lock that guards it. The tag's
// lowest bit is always set, so the set comes from the bits above it.
func (l *RateLimiter) slot(tag uint64) ([]limiterEntry, *paddedMutex) {
	s := (tag >> 1) & l.setMask
	return l.entries[s*limiterWays : (s+1)*limiterWays : (s+1)*limiterWays], l.lock(s)
}

// Blocked reports whether the address has no token left at now: its next
// Allow would fail. It takes nothing.
func (l *RateLimiter) Blocked(a netip.Addr, now int64) bool {
	return l.blocked(a, func() int64 { return now })
}

// blocked is Blocked for the hot path: it takes no lock, and reads the
// clock only for an address the table knows.
func (l *RateLimiter) blocked(a netip.Addr, clock func() int64) bool {
	tag, ok := l.hash(a)
	if !ok {
		return false
	}
	set, _ := l.slot(tag)
	for i := range set {
		if set[i].tag.Load() == tag {
			return set[i].tat.Load()-clock() > l.tolerance
		}
	}
	return false
}

// Allow takes a token of the address's if it has one at now and reports
// whether it did.
func (l *RateLimiter) Allow(a netip.Addr, now int64) bool {
	return l.take(a, now, false)
}

// Charge takes a token of the address's even if it has none left; the
// debt is capped at one token, so an address that stops is unblocked
// after one interval however much it was charged.
func (l *RateLimiter) Charge(a netip.Addr, now int64) {
	l.take(a, now, true)
}

func (l *RateLimiter) take(a netip.Addr, now int64, force bool) bool {
	tag, ok := l.hash(a)
	if !ok {
		return true
	}
	set, mu := l.slot(tag)
	mu.Lock()
	defer mu.Unlock()
	i := -1
	for j := range set {
		if set[j].tag.Load() == tag {
			i = j
			break
		}
	}
	if i < 0 {
		// Take the place of an empty entry or of the one closest to
		// a full bucket: a full bucket costs nothing to forget.
		i = 0
		for j := range set {
			if set[j].tag.Load() == 0 {
				i = j
				break
			}
			if set[j].tat.Load() < set[i].tat.Load() {
				i = j
			}
		}
		set[i].tat.Store(now)
		set[i].tag.Store(tag)
	}
	e := &set[i]
	tat := max(e.tat.Load(), now)
	if tat-now > l.tolerance {
		if force {
			// Saturate: the debt stays at one token past the burst.
			e.tat.Store(now + l.tolerance + l.interval)
		}
		return false
	}
	e.tat.Store(tat + l.interval)
	return true
}
