package main

import (
	"crypto/sha1"
	"encoding/binary"
	"errors"
	"fmt"
	"math"
	"math/rand/v2"
	"slices"
	"strconv"
	"strings"
)

// The swarm model: torrents × peers simulated peers, each with a stable
// identity (peer id, port, key, role) derived from its global index
// g = torrent*peers + slot, so that two runs with the same seed announce the
// same peers and nothing per peer has to be stored but two flags.

// event is a BEP 3 announce event.
type event uint8

const (
	evNone event = iota
	evStarted
	evStopped
	evCompleted
	numEvents
)

// String returns the event's name as HTTP announces spell it.
func (e event) String() string {
	return [...]string{"none", "started", "stopped", "completed"}[e]
}

// udpCode returns BEP 15's number for the event.
func (e event) udpCode() uint32 {
	return [...]uint32{evNone: 0, evStarted: 2, evStopped: 3, evCompleted: 1}[e]
}

// eventMix holds the share of each event, as cumulative thresholds out of
// mixScale, so that a draw is one random number and at most four compares.
type eventMix [numEvents]uint32

const mixScale = 1_000_000

// parseMix reads "none/started/stopped/completed" percentages, such as
// "90/5/3/2", which must add up to 100.
func parseMix(s string) (eventMix, error) {
	parts := strings.Split(s, "/")
	if len(parts) != int(numEvents) {
		return eventMix{}, errors.New("want four percentages none/started/stopped/completed, such as 90/5/3/2")
	}
	var m eventMix
	var sum float64
	for i, p := range parts {
		v, err := strconv.ParseFloat(strings.TrimSpace(p), 64)
		if err != nil || v < 0 || math.IsInf(v, 0) {
			return eventMix{}, fmt.Errorf("invalid percentage %q", p)
		}
		sum += v
		m[i] = uint32(math.Round(sum / 100 * mixScale))
	}
	if math.Abs(sum-100) > 1e-6 {
		return eventMix{}, fmt.Errorf("the percentages add up to %g, not 100", sum)
	}
	m[numEvents-1] = mixScale
	return m, nil
}

// draw picks an event.
func (m *eventMix) draw(r *rand.Rand) event {
	u := uint32(r.IntN(mixScale))
	for e := range numEvents {
		if u < m[e] {
			return e
		}
	}
	return evNone
}

// share returns the fraction of draws that give e.
func (m *eventMix) share(e event) float64 {
	lo := uint32(0)
	if e > 0 {
		lo = m[e-1]
	}
	return float64(m[e]-lo) / mixScale
}

// model is the simulated population. It is read-only once built and shared
// by every worker.
type model struct {
	torrents int
	peers    int // per torrent
	// seederPPM is the seeders' share in parts per million.
	seederPPM int64
	numWant   int
	mix       eventMix
	// hashes are the torrents' info hashes, SHA-1 digests like real
	// ones, because the tracker shards swarms by their leading bytes.
	hashes [][20]byte
	// cdf is the cumulative popularity of the torrents by rank for a
	// Zipf model, nil for uniform popularity.
	cdf []float64
}

// newModel builds the model. seed names the population: runs with the same
// seed announce the same torrents and peers.
func newModel(torrents, peers int, seeders float64, numWant int, mix eventMix, zipf float64, seed uint64) *model {
	m := &model{
		torrents:  torrents,
		peers:     peers,
		seederPPM: int64(math.Round(seeders * 1e6)),
		numWant:   numWant,
		mix:       mix,
		hashes:    make([][20]byte, torrents),
	}
	var in [16]byte
	binary.BigEndian.PutUint64(in[:8], seed)
	for t := range m.hashes {
		binary.BigEndian.PutUint64(in[8:], uint64(t))
		m.hashes[t] = sha1.Sum(in[:])
	}
	if zipf > 0 {
		m.cdf = make([]float64, torrents)
		var sum float64
		for t := range m.cdf {
			sum += math.Pow(float64(t+1), -zipf)
			m.cdf[t] = sum
		}
		for t := range m.cdf {
			m.cdf[t] /= sum
		}
	}
	return m
}

// total returns the number of simulated peers.
func (m *model) total() int { return m.torrents * m.peers }

// torrentOf returns the torrent peer g belongs to.
func (m *model) torrentOf(g int) int { return g / m.peers }

// isSeeder tells whether peer g seeds. Seeders are spread evenly over the
// global index, so every block of peers, and every torrent with enough
// peers, holds the configured share, not merely the population on average.
func (m *model) isSeeder(g int) bool {
	return (int64(g)+1)*m.seederPPM/1e6 > int64(g)*m.seederPPM/1e6
}

// peerIDPrefix follows the Azureus-style convention of real clients.
const peerIDPrefix = "-CB0100-"

// peerID returns peer g's id: the prefix and 12 decimal digits, so it
// needs no escaping in a query string.
func (m *model) peerID(g int) [20]byte {
	var id [20]byte
	copy(id[:], peerIDPrefix)
	v := uint64(g)
	for i := 19; i >= len(peerIDPrefix); i-- {
		id[i] = byte('0' + v%10)
		v /= 10
	}
	return id
}

// port returns the port peer g announces. Peers of one torrent always get
// distinct ports, so that even peers sharing a source address are distinct
// endpoints to the tracker.
func (m *model) port(g int) uint16 { return uint16(1024 + g%64000) }

// key returns peer g's BEP 7 key, a stable value per peer.
func (m *model) key(g int) uint32 {
	x := uint64(g)*0x9E3779B97F4A7C15 + 0x632BE59BD9B4E5
	x ^= x >> 31
	return uint32(x)
}

// left returns what peer g reports as left to download for event e: zero
// for seeders and for a completed announce, which is sent at the moment the
// download ends. Roles are fixed, so that the tracker's swarms keep the
// configured seeder share however long the run: a leecher that completed
// starts over as a leecher on its next announce.
func (m *model) left(g int, e event) uint64 {
	if e == evCompleted || m.isSeeder(g) {
		return 0
	}
	return 1 << 30
}

// pickTorrent draws a torrent by popularity.
func (m *model) pickTorrent(r *rand.Rand) int {
	if m.cdf == nil {
		return r.IntN(m.torrents)
	}
	u := r.Float64()
	t, _ := slices.BinarySearch(m.cdf, u)
	return min(t, m.torrents-1)
}

// Per-peer state flags.
const (
	// peerBusy marks a peer with an announce in flight: a real client
	// never has two, and the stopped/started sequence depends on order.
	peerBusy uint8 = 1 << iota
	// peerStopped marks a peer whose last announce was stopped; its
	// next one is started, as a client's would be.
	peerStopped
)

// peerSet is the share of the peers one worker (an HTTP connection or a UDP
// socket) announces for: the peers g with g % owners == owner. Owning its
// peers outright means the worker needs no locks, and each peer always
// announces from the same connection or socket, hence the same source
// address.
type peerSet struct {
	m             *model
	owner, owners int
	n             int // peers owned
	state         []uint8
	next          int // the next peer to prefill, by local index
	rng           *rand.Rand
}

func newPeerSet(m *model, owner, owners int, seed uint64) *peerSet {
	n := 0
	if owner < m.total() {
		n = (m.total()-owner-1)/owners + 1
	}
	return &peerSet{
		m: m, owner: owner, owners: owners, n: n,
		state: make([]uint8, n),
		rng:   rand.New(rand.NewPCG(seed, uint64(owner))),
	}
}

func (s *peerSet) global(k int) int { return k*s.owners + s.owner }
func (s *peerSet) local(g int) int  { return g / s.owners }

// nextPrefill returns the next peer to announce started during the prefill,
// or false once every owned peer has had its turn.
func (s *peerSet) nextPrefill() (int, bool) {
	if s.next >= s.n {
		return 0, false
	}
	k := s.next
	s.next++
	s.state[k] |= peerBusy
	s.state[k] &^= peerStopped
	return s.global(k), true
}

// nextAnnounce picks a peer that has no announce in flight and the event it
// sends, and marks the peer busy until release. It gives up, returning
// false, after a few picks that all hit busy peers, so that a worker with
// few peers waits for answers instead of spinning.
func (s *peerSet) nextAnnounce() (int, event, bool) {
	if s.n == 0 {
		return 0, evNone, false
	}
	for range 8 {
		k := s.pickLocal()
		st := s.state[k]
		if st&peerBusy != 0 {
			continue
		}
		e := s.m.mix.draw(s.rng)
		switch {
		case st&peerStopped != 0:
			e = evStarted
			st &^= peerStopped
		case e == evStopped:
			st |= peerStopped
		}
		s.state[k] = st | peerBusy
		return s.global(k), e, true
	}
	return 0, evNone, false
}

// release ends peer g's announce in flight.
func (s *peerSet) release(g int) {
	s.state[s.local(g)] &^= peerBusy
}

// pickLocal draws an owned peer: a torrent by popularity, then one of the
// owned peers in it. A torrent may have none of this worker's peers when
// there are more workers than peers per torrent; after a bounded number of
// such misses the draw falls back to a uniform one.
func (s *peerSet) pickLocal() int {
	m := s.m
	if m.cdf == nil {
		return s.rng.IntN(s.n)
	}
	for range 32 {
		t := m.pickTorrent(s.rng)
		// The slots p of torrent t owned here satisfy
		// (t*peers + p) % owners == owner.
		p := ((s.owner-t*m.peers)%s.owners + s.owners) % s.owners
		if p >= m.peers {
			continue
		}
		count := (m.peers-1-p)/s.owners + 1
		p += s.owners * s.rng.IntN(count)
		return s.local(t*m.peers + p)
	}
	return s.rng.IntN(s.n)
}
