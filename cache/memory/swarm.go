package memory

import (
	"encoding/binary"
	"math/bits"
	"math/rand/v2"
	"net/netip"

	"github.com/chihaya/chihaya/bittorrent"
)

// Flags of an endpoint record. The first three are the peer's and are kept
// equal in both records of a dual-stack peer.
const (
	seeder   uint8 = 1 << iota // nothing left to download
	paused                     // partial seed (BEP 21): downloads no more
	snatched                   // its completion is already counted
	dual                       // the peer has a record in the other family too
)

// Options of a list's record layout: the parts a record carries only when
// something needs them.
const (
	withTotals uint8 = 1 << iota // the last reported uploaded and downloaded totals
	withID                       // the peer id, for answers that list it
)

// A record is one endpoint of one peer, packed into its list's byte slice:
//
//	hash   uint64  keyed hash of (user, peer id); see peerKey
//	seen   uint32  last announce over this family, in store seconds
//	flags  uint8
//	addr   [4] or [16]
//	port   uint16 (big-endian)
//	then, by the list's layout:
//	totals uint64 uploaded, uint64 downloaded
//	id     [20]
//
// An IPv4 record is 19 bytes, an IPv6 one 31: peer ids and totals, which
// an open tracker's compact answers never need, cost nothing unless kept.
const (
	offHash   = 0
	offSeen   = 8
	offFlags  = 12
	offAddr   = 13
	totalsLen = 16
	maxStride = offAddr + 16 + 2 + totalsLen + len(bittorrent.PeerID{})
)

// indexAbove is the size from which a list keeps a hash table of its
// slots. Below it, comparing the hashes of every record is faster than
// probing a table, and the table's memory is saved.
const indexAbove = 32

// list holds the records of one address family of a swarm, downloaders in
// [0, down) and everyone else (seeders and partial seeds) after them, so
// that a seeder's peers are drawn from the downloaders only, however many
// seeders there are. The garbage collector sees a byte slice and a table of
// integers: nothing to follow.
type list struct {
	b []byte
	// index maps hashes to slots once the list has more than indexAbove
	// records; nil before.
	index *table
	n     uint32
	down  uint32
	// alen is the address length, 4 or 16; stride the record size.
	alen   uint8
	stride uint8
	layout uint8
}

func newList(alen uint8) list {
	return list{alen: alen, stride: offAddr + alen + 2}
}

func (l *list) rec(i int) []byte {
	s := int(l.stride)
	return l.b[i*s : i*s+s]
}

func (l *list) hash(i int) uint64 { return binary.LittleEndian.Uint64(l.b[i*int(l.stride):]) }
func (l *list) flags(i int) uint8 { return l.b[i*int(l.stride)+offFlags] }
func (l *list) seen(i int) uint32 {
	return binary.LittleEndian.Uint32(l.b[i*int(l.stride)+offSeen:])
}

func (l *list) downloads(i int) bool { return l.flags(i)&(seeder|paused) == 0 }

// totalsAt and idAt are the offsets of the optional parts, valid only when
// the layout has them.
func (l *list) totalsAt() int { return offAddr + int(l.alen) + 2 }
func (l *list) idAt() int {
	if l.layout&withTotals != 0 {
		return l.totalsAt() + totalsLen
	}
	return l.totalsAt()
}

// totals returns the peer's last reported totals, zero when the list keeps
// none (no peer in it ever reported any).
func (l *list) totals(i int) (up, down uint64) {
	if l.layout&withTotals == 0 {
		return 0, 0
	}
	r := l.rec(i)[l.totalsAt():]
	return binary.LittleEndian.Uint64(r), binary.LittleEndian.Uint64(r[8:])
}

// setTotals records the totals, widening the records the first time a
// peer of the list reports any.
func (l *list) setTotals(i int, up, down uint64) {
	if l.layout&withTotals == 0 {
		if up|down == 0 {
			return
		}
		l.relayout(l.layout | withTotals)
	}
	r := l.rec(i)[l.totalsAt():]
	binary.LittleEndian.PutUint64(r, up)
	binary.LittleEndian.PutUint64(r[8:], down)
}

// id returns the peer id, zero when the list keeps none.
func (l *list) id(i int) bittorrent.PeerID {
	if l.layout&withID == 0 {
		return bittorrent.PeerID{}
	}
	return bittorrent.PeerID(l.rec(i)[l.idAt():])
}

func (l *list) setID(i int, id *bittorrent.PeerID) {
	if l.layout&withID != 0 {
		copy(l.rec(i)[l.idAt():], id[:])
	}
}

// relayout rewrites every record for a new layout; parts the new layout
// adds start zero.
func (l *list) relayout(layout uint8) {
	old := *l
	l.layout = layout
	l.stride = offAddr + l.alen + 2
	if layout&withTotals != 0 {
		l.stride += totalsLen
	}
	if layout&withID != 0 {
		l.stride += uint8(len(bittorrent.PeerID{}))
	}
	if old.n == 0 {
		l.b = nil
		return
	}
	l.b = make([]byte, int(l.n)*int(l.stride))
	base := offAddr + int(l.alen) + 2
	for i := range int(l.n) {
		o, r := old.rec(i), l.rec(i)
		copy(r, o[:base])
		if up, down := old.totals(i); layout&withTotals != 0 {
			binary.LittleEndian.PutUint64(r[l.totalsAt():], up)
			binary.LittleEndian.PutUint64(r[l.totalsAt()+8:], down)
		}
		if layout&withID != 0 && old.layout&withID != 0 {
			copy(r[l.idAt():], o[old.idAt():old.idAt()+len(bittorrent.PeerID{})])
		}
	}
}

// find returns the slot of the record with hash h, or -1.
func (l *list) find(h uint64) int {
	if l.index != nil {
		return l.index.find(l, h)
	}
	s := int(l.stride)
	for o := 0; o < len(l.b); o += s {
		if binary.LittleEndian.Uint64(l.b[o:]) == h {
			return o / s
		}
	}
	return -1
}

// add appends a record with hash h, no flags and zero elsewhere, and
// returns its slot. The caller fills it in and calls setFlags, which puts
// it on its side of the partition.
func (l *list) add(h uint64) int {
	s := int(l.stride)
	if len(l.b)+s > cap(l.b) {
		l.b = grow(l.b, s)
	}
	l.b = l.b[:len(l.b)+s]
	r := l.b[len(l.b)-s:]
	clear(r)
	binary.LittleEndian.PutUint64(r, h)
	i := int(l.n)
	l.n++
	switch {
	case l.index != nil:
		l.index.insert(l, h, i)
	case l.n > indexAbove:
		l.reindex()
	}
	return i
}

// grow returns b with room for at least one more record of size s. Small
// lists grow by half their size, big ones by an eighth, so that the spare
// capacity a swarm carries stays small; the runtime rounds up to its size
// class, and the extra is used too.
func grow(b []byte, s int) []byte {
	n := len(b) / s
	more := max(2, n/2)
	if n > 256 {
		more = n / 8
	}
	// Appending to nil rounds the capacity up to the size class.
	nb := append([]byte(nil), make([]byte, len(b)+more*s)...)
	copy(nb, b)
	return nb[: len(b) : cap(nb)/s*s]
}

// setEndpoint sets the record's address, port and last-seen time.
func (l *list) setEndpoint(i int, a netip.Addr, port uint16, now uint32) {
	r := l.rec(i)
	binary.LittleEndian.PutUint32(r[offSeen:], now)
	if l.alen == 4 {
		b := a.As4()
		copy(r[offAddr:], b[:])
	} else {
		b := a.As16()
		copy(r[offAddr:], b[:])
	}
	binary.BigEndian.PutUint16(r[offAddr+int(l.alen):], port)
}

// endpoint returns the record's address and port.
func (l *list) endpoint(i int) netip.AddrPort {
	r := l.rec(i)
	port := binary.BigEndian.Uint16(r[offAddr+int(l.alen):])
	if l.alen == 4 {
		return netip.AddrPortFrom(netip.AddrFrom4([4]byte(r[offAddr:])), port)
	}
	return netip.AddrPortFrom(netip.AddrFrom16([16]byte(r[offAddr:])), port)
}

// setFlags replaces the flags of the record in slot i and returns its
// slot, which changes when the peer starts or stops downloading.
func (l *list) setFlags(i int, f uint8) int {
	l.b[i*int(l.stride)+offFlags] = f
	return l.place(i)
}

// place moves the record in slot i to its side of the partition and
// returns its new slot. One swap suffices: the border slot is the one to
// trade with.
func (l *list) place(i int) int {
	down := l.downloads(i)
	d := int(l.down)
	switch {
	case down && i >= d:
		l.swap(i, d)
		i = d
		l.down++
	case !down && i < d:
		l.down--
		l.swap(i, d-1)
		i = d - 1
	}
	return i
}

// remove deletes the record in slot i. It may move the records in the last
// slot and the border slot, both at or after i.
func (l *list) remove(i int) {
	if i < int(l.down) {
		l.down--
		l.swap(i, int(l.down))
		i = int(l.down)
	}
	last := int(l.n) - 1
	l.swap(i, last)
	if l.index != nil {
		l.index.remove(l, last)
	}
	l.n--
	l.b = l.b[:int(l.n)*int(l.stride)]
}

func (l *list) swap(i, j int) {
	if i == j {
		return
	}
	if l.index != nil {
		l.index.swap(l, i, j)
	}
	var tmp [maxStride]byte
	a, b := l.rec(i), l.rec(j)
	t := tmp[:len(a)]
	copy(t, a)
	copy(a, b)
	copy(b, t)
}

// reindex rebuilds the index for the records there are now, or drops it
// when there are too few to need one.
func (l *list) reindex() {
	if l.n <= indexAbove {
		l.index = nil
		return
	}
	l.index = newTable(int(l.n))
	for i := range int(l.n) {
		l.index.insert(l, l.hash(i), i)
	}
}

// compact gives back the memory of a list that has shrunk a lot since its
// peak, so that a torrent that was once popular does not keep its peak
// footprint for ever.
func (l *list) compact() {
	const minRecords = 16
	s := int(l.stride)
	if cap(l.b) <= minRecords*s || len(l.b) >= cap(l.b)/4 {
		return
	}
	l.b = append(make([]byte, 0, max(minRecords, 2*int(l.n))*s), l.b...)
	l.reindex()
}

// pick appends up to want peers of the list to dst in compact form (the
// address and port, which a record holds back to back in wire order),
// leaving out slot self (-1: none). With downOnly it draws from the
// downloaders only. ids, when not nil and the list keeps peer ids, gets
// the peers' ids in the same order.
//
// It walks the candidates once from a random slot, wrapping around, so
// every peer is as likely to be handed out and the walk stops as soon as
// the list is full.
func (l *list) pick(self int, downOnly bool, want int, rng *rand.PCG, dst []byte, ids *[]bittorrent.PeerID) []byte {
	n := int(l.n)
	if downOnly {
		n = int(l.down)
	}
	if n == 0 || want <= 0 {
		return dst
	}
	// Lemire's multiply-shift maps 32 random bits onto [0, n) without a
	// division; the bias is far below anything a swarm could notice.
	i := int(uint64(n) * (rng.Uint64() >> 32) >> 32)
	stride, size := int(l.stride), int(l.alen)+2
	idAt := -1
	if ids != nil && l.layout&withID != 0 {
		idAt = l.idAt()
	}
	for range n {
		if i != self {
			e := l.b[i*stride+offAddr : i*stride+offAddr+size]
			if size == 6 {
				// Two fixed-size copies: append of a 6-byte slice
				// would call memmove for every peer.
				dst = binary.LittleEndian.AppendUint32(dst, binary.LittleEndian.Uint32(e))
				dst = binary.LittleEndian.AppendUint16(dst, binary.LittleEndian.Uint16(e[4:]))
			} else {
				dst = append(dst, e...)
			}
			if idAt >= 0 {
				*ids = append(*ids, bittorrent.PeerID(l.b[i*stride+idAt:]))
			}
			if want--; want == 0 {
				break
			}
		}
		if i++; i == n {
			i = 0
		}
	}
	return dst
}

// table is an open-addressing hash table of slot numbers (plus one; zero
// is an empty cell) with linear probing. It stores no keys: a cell's hash
// is its record's, read from the list. At most three quarters full, it
// costs 5 to 11 bytes a record, against 30 and more for a Go map entry.
type table struct {
	cells []uint32
	used  int
}

// newTable returns a table for n records, at most three quarters full.
func newTable(n int) *table {
	return &table{cells: make([]uint32, max(1<<bits.Len(uint(n*4/3)), 64))}
}

func (t *table) mask() uint64 { return uint64(len(t.cells) - 1) }

func (t *table) find(l *list, h uint64) int {
	m := t.mask()
	for c := h & m; ; c = (c + 1) & m {
		v := t.cells[c]
		if v == 0 {
			return -1
		}
		if l.hash(int(v-1)) == h {
			return int(v - 1)
		}
	}
}

// cell returns the cell that holds slot i, whose record hashes to h.
func (t *table) cell(h uint64, i int) uint64 {
	m := t.mask()
	c := h & m
	for t.cells[c] != uint32(i+1) {
		c = (c + 1) & m
	}
	return c
}

func (t *table) insert(l *list, h uint64, i int) {
	if (t.used+1)*4 > len(t.cells)*3 {
		// Rebuilt from the list, which already holds the new record.
		*t = table{cells: make([]uint32, 2*len(t.cells))}
		for j := range int(l.n) {
			t.put(l.hash(j), j)
		}
		return
	}
	t.put(h, i)
}

func (t *table) put(h uint64, i int) {
	m := t.mask()
	c := h & m
	for t.cells[c] != 0 {
		c = (c + 1) & m
	}
	t.cells[c] = uint32(i + 1)
	t.used++
}

// swap exchanges the cells of slots i and j, before their records trade
// places. Both cells are found first, while each slot number is still in
// one cell only.
func (t *table) swap(l *list, i, j int) {
	ci, cj := t.cell(l.hash(i), i), t.cell(l.hash(j), j)
	t.cells[ci], t.cells[cj] = uint32(j+1), uint32(i+1)
}

// remove empties the cell of slot i and shifts the cells after it back,
// as linear probing needs, so no tombstones pile up.
func (t *table) remove(l *list, i int) {
	m := t.mask()
	hole := t.cell(l.hash(i), i)
	for c := (hole + 1) & m; t.cells[c] != 0; c = (c + 1) & m {
		home := l.hash(int(t.cells[c]-1)) & m
		// The cell at c may move back to the hole unless its home lies
		// cyclically in (hole, c].
		if (c-home)&m >= (c-hole)&m {
			t.cells[hole] = t.cells[c]
			hole = c
		}
	}
	t.cells[hole] = 0
	t.used--
}

// swarm is the state of one torrent: a list of records per address
// family. A dual-stack peer has a record in each, both flagged dual, and
// counts once.
type swarm struct {
	v4, v6 list
	// peers and seeders count peers, not records.
	peers    uint32
	seeders  uint32
	snatches uint32
	// touched is the last announce, in store seconds; an empty swarm is
	// kept for a peer lifetime after it so its snatches survive a brief
	// gap.
	touched uint32
	// oldest is a lower bound of every record's last-seen time. It only
	// goes stale downwards (records are refreshed, never aged), so while
	// it is within the lifetime no record can have expired and sweep
	// returns at once.
	oldest uint32
}

func newSwarm(now uint32, layout uint8) *swarm {
	s := &swarm{v4: newList(4), v6: newList(16), touched: now, oldest: now}
	if layout != 0 {
		s.v4.relayout(layout)
		s.v6.relayout(layout)
	}
	return s
}

// locate returns the peer's slots in the IPv4 and IPv6 lists (-1: none),
// looking first in the family the request came over and in the other one
// only when the peer is dual-stack or not found.
func (s *swarm) locate(h uint64, v6First bool) (i4, i6 int) {
	first, second := &s.v4, &s.v6
	if v6First {
		first, second = second, first
	}
	i := first.find(h)
	j := -1
	if i < 0 || first.flags(i)&dual != 0 {
		j = second.find(h)
	}
	if v6First {
		return j, i
	}
	return i, j
}

// expired reports whether something last seen at seen is older than life
// at now, all in store seconds. A clock that went backwards expires
// nothing.
func expired(seen, now, life uint32) bool {
	return now > seen && now-seen > life
}

// sweep drops the records not refreshed within life, and the peers left
// with none. It runs before a swarm is read, so counts and peer lists never
// include stale endpoints whenever the reaper last ran, and it costs
// nothing until the oldest record can have expired.
func (s *swarm) sweep(now, life uint32) {
	if !expired(s.oldest, now, life) {
		return
	}
	oldest := s.sweepList(&s.v4, &s.v6, now, life, now)
	s.oldest = s.sweepList(&s.v6, &s.v4, now, life, oldest)
}

func (s *swarm) sweepList(l, other *list, now, life, oldest uint32) uint32 {
	// Backwards, because remove only moves records from slots at or after
	// the one removed, which have been visited already.
	for i := int(l.n) - 1; i >= 0; i-- {
		seen := l.seen(i)
		if !expired(seen, now, life) {
			oldest = min(oldest, seen)
			continue
		}
		f, h := l.flags(i), l.hash(i)
		l.remove(i)
		s.dropped(other, h, f)
	}
	return oldest
}

// dropped accounts for a record with hash h and flags f that left its
// list: a dual-stack peer lives on in other, anyone else is gone.
func (s *swarm) dropped(other *list, h uint64, f uint8) {
	if f&dual != 0 {
		if j := other.find(h); j >= 0 {
			other.b[j*int(other.stride)+offFlags] &^= dual
		}
		return
	}
	s.peers--
	if f&seeder != 0 {
		s.seeders--
	}
}

// compact trims both lists; see list.compact.
func (s *swarm) compact() {
	s.v4.compact()
	s.v6.compact()
}
