package memory

import (
	"math/rand/v2"
	"net/netip"

	"github.com/chihaya/chihaya/bittorrent"
)

// Flags of a peer record.
const (
	has4     uint8 = 1 << iota // the IPv4 endpoint is set
	has6                       // the IPv6 endpoint is set
	seeder                     // nothing left to download
	paused                     // partial seed (BEP 21): downloads no more
	snatched                   // its completion is already counted
)

// peer is one peer of a swarm. Records are kept by value in one slice per
// swarm: a swarm is a couple of allocations whatever its size, and the
// garbage collector has no pointer to follow into them.
type peer struct {
	uploaded   uint64
	downloaded uint64
	// seen4 and seen6 are the endpoints' last announces, in seconds since
	// the store's epoch: half the size of a time.Time's wall clock, and a
	// second is far below any peer lifetime.
	seen4 uint32
	seen6 uint32
	// key is who the peer is: its user (0 on an open tracker) and peer id.
	key   peerKey
	addr6 [16]byte
	addr4 [4]byte
	port4 uint16
	port6 uint16
	flags uint8
}

// peerKey identifies a peer within a swarm. The user is part of it so that
// on a private tracker one user can neither take over nor be credited with
// another user's peer by sending the same peer id.
type peerKey struct {
	user uint32
	id   bittorrent.PeerID
}

// downloads reports whether the peer still wants pieces, which is what
// decides who it is handed to and who it gets.
func (p *peer) downloads() bool { return p.flags&(seeder|paused) == 0 }

// indexAbove is the size from which a swarm keeps a map from peer id to
// slot. Most swarms are tiny, and scanning a few records is both faster
// than hashing and saves the map.
const indexAbove = 8

// swarm is the state of one torrent.
type swarm struct {
	// peers holds the downloaders in [0, downloaders) and everyone else
	// (seeders and partial seeds) after them, so that picking peers for a
	// seeder only ever looks at downloaders, however many seeders there
	// are.
	peers       []peer
	downloaders int
	// index maps a peer id to its slot in peers; nil while the swarm has
	// at most indexAbove peers.
	index    map[peerKey]uint32
	seeders  int
	snatches uint32
	// touched is the last announce, in store seconds; an empty swarm is
	// kept for a peer lifetime after it so its snatches survive a brief
	// gap.
	touched uint32
	// oldest is a lower bound of every endpoint's last-seen time. It only
	// goes stale downwards (endpoints are refreshed, never aged), so while
	// it is within the lifetime no endpoint can have expired and sweep
	// returns at once.
	oldest uint32
}

func newSwarm(now uint32) *swarm {
	return &swarm{touched: now, oldest: now}
}

// find returns the slot of the peer id, or -1.
func (s *swarm) find(key peerKey) int {
	if s.index != nil {
		if i, ok := s.index[key]; ok {
			return int(i)
		}
		return -1
	}
	for i := range s.peers {
		if s.peers[i].key == key {
			return i
		}
	}
	return -1
}

// add appends a downloader with no endpoint and returns its slot; the
// caller fills it in and calls setFlags.
func (s *swarm) add(key peerKey) int {
	s.peers = append(s.peers, peer{key: key})
	i := len(s.peers) - 1
	switch {
	case s.index != nil:
		s.index[key] = uint32(i)
	case len(s.peers) > indexAbove:
		s.reindex()
	}
	return s.place(i)
}

// reindex rebuilds the index from scratch, sized for the peers there are
// now: maps never shrink, so this is also how a shrunk swarm gives memory
// back.
func (s *swarm) reindex() {
	if len(s.peers) <= indexAbove {
		s.index = nil
		return
	}
	s.index = make(map[peerKey]uint32, len(s.peers))
	for i := range s.peers {
		s.index[s.peers[i].key] = uint32(i)
	}
}

// setFlags replaces the flags of the peer in slot i, keeping the seeder
// count and the partition right, and returns the peer's new slot.
func (s *swarm) setFlags(i int, f uint8) int {
	p := &s.peers[i]
	if (p.flags^f)&seeder != 0 {
		if f&seeder != 0 {
			s.seeders++
		} else {
			s.seeders--
		}
	}
	p.flags = f
	return s.place(i)
}

// place moves the peer in slot i to its side of the partition and returns
// its new slot. One swap suffices: the border slot is the one to trade
// with.
func (s *swarm) place(i int) int {
	down := s.peers[i].downloads()
	switch {
	case down && i >= s.downloaders:
		s.swap(i, s.downloaders)
		i = s.downloaders
		s.downloaders++
	case !down && i < s.downloaders:
		s.downloaders--
		s.swap(i, s.downloaders)
		i = s.downloaders
	}
	return i
}

// remove deletes the peer in slot i. It may move the peers in the last
// slot and the border slot, both at or after i.
func (s *swarm) remove(i int) {
	if s.peers[i].flags&seeder != 0 {
		s.seeders--
	}
	if i < s.downloaders {
		s.downloaders--
		s.swap(i, s.downloaders)
		i = s.downloaders
	}
	last := len(s.peers) - 1
	s.swap(i, last)
	if s.index != nil {
		delete(s.index, s.peers[last].key)
	}
	s.peers = s.peers[:last]
}

func (s *swarm) swap(i, j int) {
	if i == j {
		return
	}
	s.peers[i], s.peers[j] = s.peers[j], s.peers[i]
	if s.index != nil {
		s.index[s.peers[i].key] = uint32(i)
		s.index[s.peers[j].key] = uint32(j)
	}
}

// expired reports whether something last seen at seen is older than life
// at now, all in store seconds. A clock that went backwards expires
// nothing.
func expired(seen, now, life uint32) bool {
	return now > seen && now-seen > life
}

// sweep drops the endpoints not refreshed within life, and the peers left
// with none. It runs before a swarm is read, so counts and peer lists never
// include stale endpoints whenever the reaper last ran, and it costs
// nothing until the oldest endpoint can have expired.
func (s *swarm) sweep(now, life uint32) {
	if !expired(s.oldest, now, life) {
		return
	}
	oldest := now
	// Backwards, because remove only moves peers from slots at or after
	// the one removed, which have been visited already.
	for i := len(s.peers) - 1; i >= 0; i-- {
		p := &s.peers[i]
		if p.flags&has4 != 0 && expired(p.seen4, now, life) {
			p.flags &^= has4
		}
		if p.flags&has6 != 0 && expired(p.seen6, now, life) {
			p.flags &^= has6
		}
		if p.flags&(has4|has6) == 0 {
			s.remove(i)
			continue
		}
		if p.flags&has4 != 0 {
			oldest = min(oldest, p.seen4)
		}
		if p.flags&has6 != 0 {
			oldest = min(oldest, p.seen6)
		}
	}
	s.oldest = oldest
}

// compact gives back the memory of a swarm that has shrunk a lot since its
// peak, so that a torrent that was once popular does not keep its peak
// footprint for ever.
func (s *swarm) compact() {
	const minCap = 16
	if cap(s.peers) <= minCap || len(s.peers) >= cap(s.peers)/4 {
		return
	}
	s.peers = append(make([]peer, 0, max(minCap, 2*len(s.peers))), s.peers...)
	s.reindex()
}

// pick appends up to want4 peers with an IPv4 endpoint to dst4 and up to
// want6 with an IPv6 endpoint to dst6, leaving out the peer in slot self.
// A peer that does not download gets only downloaders, who are the slots
// before the border; anyone else may get any peer.
//
// It walks the candidates once from a random slot, wrapping around, so
// every peer is as likely to be handed out and the walk stops as soon as
// both lists are full.
func (s *swarm) pick(self, want4, want6 int, rng *rand.PCG, dst4, dst6 []bittorrent.Peer) ([]bittorrent.Peer, []bittorrent.Peer) {
	n := len(s.peers)
	if !s.peers[self].downloads() {
		n = s.downloaders
	}
	if n == 0 || (want4 <= 0 && want6 <= 0) {
		return dst4, dst6
	}
	// Lemire's multiply-shift maps 32 random bits onto [0, n) without a
	// division; the bias is far below anything a swarm could notice.
	i := int(uint64(n) * (rng.Uint64() >> 32) >> 32)
	for range n {
		if i != self {
			p := &s.peers[i]
			if want4 > 0 && p.flags&has4 != 0 {
				dst4 = append(dst4, bittorrent.Peer{ID: p.key.id, AddrPort: netip.AddrPortFrom(netip.AddrFrom4(p.addr4), p.port4)})
				want4--
			}
			if want6 > 0 && p.flags&has6 != 0 {
				dst6 = append(dst6, bittorrent.Peer{ID: p.key.id, AddrPort: netip.AddrPortFrom(netip.AddrFrom16(p.addr6), p.port6)})
				want6--
			}
			if want4 <= 0 && want6 <= 0 {
				break
			}
		}
		if i++; i == n {
			i = 0
		}
	}
	return dst4, dst6
}
