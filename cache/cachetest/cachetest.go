// Package cachetest is the behavioural test suite every cache driver must
// pass. It talks to the store only through cache.Store and controls time only
// through cache.Options.Now, so it runs unchanged against an in-process store
// and against a remote one whose expiry happens inside the store.
package cachetest

import (
	"context"
	"crypto/sha1"
	"encoding/binary"
	"fmt"
	"net/netip"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/chihaya/chihaya/bittorrent"
	"github.com/chihaya/chihaya/cache"
)

// Lifetime is the peer lifetime the suite opens stores with.
const Lifetime = 30 * time.Minute

// slack is how far past a lifetime the suite moves the clock before it
// expects a peer gone, and how far before one it expects a peer still
// there: stores may keep time in whole seconds.
const slack = 2 * time.Second

// Run runs the suite. open is called once per subtest and must return an
// empty store using opts; the suite closes it. Every subtest works on info
// hashes derived from its own name, so a remote store shared between
// subtests also works.
func Run(t *testing.T, open func(t *testing.T, opts cache.Options) cache.Store) {
	tests := []struct {
		name string
		fn   func(e *env)
	}{
		{"Counts", testCounts},
		{"StateMoves", testStateMoves},
		{"StoppedRemoves", testStoppedRemoves},
		{"StoppedUnknownPeer", testStoppedUnknownPeer},
		{"CompletedCountedOnce", testCompletedOnce},
		{"NeverSelf", testNeverSelf},
		{"SeedersGetDownloaders", testSeedersGetDownloaders},
		{"NumWant", testNumWant},
		{"Families", testFamilies},
		{"CompactWithoutIDs", testCompactWithoutIDs},
		{"DualStack", testDualStack},
		{"AddressUpdate", testAddressUpdate},
		{"KnownAndTotals", testKnownAndTotals},
		{"Scrape", testScrape},
		{"SwarmsIsolated", testSwarmsIsolated},
		{"RandomSpread", testRandomSpread},
		{"Paused", testPaused},
		{"Expiry", testExpiry},
		{"EndpointExpiry", testEndpointExpiry},
		{"EmptySwarm", testEmptySwarm},
		{"Concurrent", testConcurrent},
		{"UsersKeepPeersApart", testUsersKeepPeersApart},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			clk := &clock{now: time.Date(2024, 1, 1, 0, 0, 0, 0, time.UTC)}
			s := open(t, cache.Options{PeerLifetime: Lifetime, Now: clk.Now})
			t.Cleanup(func() {
				if err := s.Close(); err != nil {
					t.Errorf("Close: %v", err)
				}
			})
			tc.fn(&env{t: t, store: s, clock: clk, hash: hashOf(t.Name())})
		})
	}
}

// clock is the fake clock the suite hands to stores.
type clock struct {
	mu  sync.Mutex
	now time.Time
}

func (c *clock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

func (c *clock) Advance(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.now = c.now.Add(d)
}

// env is one subtest's store and swarm.
type env struct {
	t     *testing.T
	store cache.Store
	clock *clock
	// hash is the subtest's swarm; req values without a hash go there.
	hash bittorrent.InfoHash
}

func hashOf(name string) bittorrent.InfoHash {
	return sha1.Sum([]byte(name))
}

// Test peers are numbered; the number is in the peer id and the addresses,
// so failures read as peer numbers.

const idPrefix = "-CT0001-"

func id(n int) bittorrent.PeerID {
	var p bittorrent.PeerID
	copy(p[:], idPrefix)
	binary.BigEndian.PutUint32(p[16:], uint32(n))
	return p
}

// num returns the number of a test peer id, or -1.
func num(p bittorrent.PeerID) int {
	if string(p[:len(idPrefix)]) != idPrefix {
		return -1
	}
	return int(binary.BigEndian.Uint32(p[16:]))
}

func addr4(n int) netip.Addr {
	return netip.AddrFrom4([4]byte{10, byte(n >> 16), byte(n >> 8), byte(n)})
}

func addr6(n int) netip.Addr {
	a := [16]byte{0x20, 0x01, 0x0d, 0xb8}
	binary.BigEndian.PutUint32(a[12:], uint32(n))
	return netip.AddrFrom16(a)
}

func port(n int) uint16 { return uint16(10000 + n%50000) }

// req is an announce under construction: v4(3).seed().want(10).
type req cache.Announce

// v4 is a downloading peer with only an IPv4 address, asking for 50.
func v4(n int) req {
	return req{PeerID: id(n), IPv4: addr4(n), Port: port(n), NumWant: 50}
}

// v6 is a downloading peer with only an IPv6 address, asking for 50.
func v6(n int) req {
	return req{PeerID: id(n), IPv6: addr6(n), Port: port(n), NumWant: 50}
}

// dual is a downloading peer with both addresses, asking for 50.
func dual(n int) req {
	return req{PeerID: id(n), IPv4: addr4(n), IPv6: addr6(n), Port: port(n), NumWant: 50}
}

func (r req) seed() req                     { r.Seeder = true; return r }
func (r req) event(ev bittorrent.Event) req { r.Event = ev; return r }
func (r req) want(n int) req                { r.NumWant = n; return r }
func (r req) in(h bittorrent.InfoHash) req  { r.InfoHash = h; return r }
func (r req) totals(up, down uint64) req {
	r.Uploaded, r.Downloaded = up, down
	return r
}

// peer is one peer of an answer, decoded from its compact list.
type peer struct {
	ID       bittorrent.PeerID
	AddrPort netip.AddrPort
}

// answer is a store's result with its peer lists decoded, so that the
// subtests name peers by number.
type answer struct {
	cache.Result
	Peers4, Peers6 []peer
}

// answerOf decodes a store's result.
func answerOf(r cache.Result) answer {
	return answer{Result: r, Peers4: decode(&r.Peers4), Peers6: decode(&r.Peers6)}
}

// decode returns the peers of a compact list with their ids, or with zero
// ids when the list carries none.
func decode[A [4]byte | [16]byte](p *bittorrent.Peers[A]) []peer {
	out := make([]peer, p.Len())
	for i := range out {
		out[i].AddrPort = p.At(i)
		out[i].ID, _ = p.ID(i)
	}
	return out
}

// announce sends r, asking for peer ids so that the answer names its
// peers, and checks what holds for every answer: no self, no duplicates,
// no more than asked, each list of its own family.
func (e *env) announce(r req) answer {
	e.t.Helper()
	r.PeerIDs = true
	return e.announceAs(r)
}

// announceAs sends r as it is.
func (e *env) announceAs(r req) answer {
	e.t.Helper()
	a := cache.Announce(r)
	if a.InfoHash == (bittorrent.InfoHash{}) {
		a.InfoHash = e.hash
	}
	var res cache.Result
	if err := e.store.Announce(context.Background(), &a, &res); err != nil {
		e.t.Fatalf("Announce(peer %d): %v", num(a.PeerID), err)
	}
	e.checkIDs(&a, "Peers4", res.Peers4.Len(), len(res.Peers4.IDs))
	e.checkIDs(&a, "Peers6", res.Peers6.Len(), len(res.Peers6.IDs))
	ans := answerOf(res)
	e.checkList(&a, "Peers4", ans.Peers4, a.IPv4.IsValid(), netip.Addr.Is4)
	e.checkList(&a, "Peers6", ans.Peers6, a.IPv6.IsValid(), netip.Addr.Is6)
	return ans
}

// checkIDs checks that a list carries an id for every peer when ids were
// asked for, and none when they were not.
func (e *env) checkIDs(a *cache.Announce, name string, peers, ids int) {
	e.t.Helper()
	switch {
	case a.PeerIDs && ids != peers:
		e.t.Errorf("peer %d: %s has %d ids for %d peers", num(a.PeerID), name, ids, peers)
	case !a.PeerIDs && ids != 0:
		e.t.Errorf("peer %d: %s has %d ids, but none were asked for", num(a.PeerID), name, ids)
	}
}

func (e *env) checkList(a *cache.Announce, name string, list []peer, asked bool, family func(netip.Addr) bool) {
	e.t.Helper()
	if !asked && len(list) > 0 {
		e.t.Errorf("peer %d: %s has %d peers, but the request has no address of that family", num(a.PeerID), name, len(list))
	}
	if len(list) > max(a.NumWant, 0) {
		e.t.Errorf("peer %d: %s has %d peers, more than numwant %d", num(a.PeerID), name, len(list), a.NumWant)
	}
	if !a.PeerIDs {
		return
	}
	seen := map[bittorrent.PeerID]bool{}
	for _, p := range list {
		switch {
		case p.ID == a.PeerID:
			e.t.Errorf("peer %d: %s contains the requester itself", num(a.PeerID), name)
		case seen[p.ID]:
			e.t.Errorf("peer %d: %s contains peer %d twice", num(a.PeerID), name, num(p.ID))
		case !family(p.AddrPort.Addr()) || p.AddrPort.Addr().Is4In6():
			e.t.Errorf("peer %d: %s contains %v, of the wrong family", num(a.PeerID), name, p.AddrPort)
		}
		seen[p.ID] = true
	}
}

func (e *env) scrape(hashes ...bittorrent.InfoHash) []bittorrent.Scrape {
	e.t.Helper()
	got, err := e.store.Scrape(context.Background(), hashes, nil)
	if err != nil {
		e.t.Fatalf("Scrape: %v", err)
	}
	return got
}

// counts checks an answer's counts.
func (e *env) counts(what string, r answer, complete, incomplete, snatches uint32) {
	e.t.Helper()
	if r.Complete != complete || r.Incomplete != incomplete || r.Snatches != snatches {
		e.t.Errorf("%s: complete/incomplete/snatches = %d/%d/%d, want %d/%d/%d",
			what, r.Complete, r.Incomplete, r.Snatches, complete, incomplete, snatches)
	}
}

// scrapeCounts checks the counts a scrape reports for the subtest's swarm.
func (e *env) scrapeCounts(what string, complete, incomplete, snatches uint32) {
	e.t.Helper()
	got := e.scrape(e.hash)
	if len(got) != 1 {
		e.t.Errorf("%s: scrape returned %d entries, want 1", what, len(got))
		return
	}
	e.counts(what+" (scrape)", answer{Result: cache.Result{Complete: got[0].Complete, Incomplete: got[0].Incomplete, Snatches: got[0].Snatches}}, complete, incomplete, snatches)
}

// ids returns the peer numbers in a list, sorted.
func ids(list []peer) []int {
	out := make([]int, 0, len(list))
	for _, p := range list {
		out = append(out, num(p.ID))
	}
	slices.Sort(out)
	return out
}

func span(from, to int) []int {
	var out []int
	for n := from; n <= to; n++ {
		out = append(out, n)
	}
	return out
}

func (e *env) peers(what string, list []peer, want ...int) {
	e.t.Helper()
	if want == nil {
		want = []int{}
	}
	if got := ids(list); !slices.Equal(got, want) {
		e.t.Errorf("%s: got peers %v, want %v", what, got, want)
	}
}

func testCounts(e *env) {
	for n := 1; n <= 3; n++ {
		e.announce(v4(n))
	}
	e.announce(v4(4).seed())
	r := e.announce(v4(5).seed())
	e.counts("after 3 leechers and 2 seeders", r, 2, 3, 0)
	e.scrapeCounts("after 3 leechers and 2 seeders", 2, 3, 0)
	// Announcing again changes nothing.
	e.counts("re-announce", e.announce(v4(1)), 2, 3, 0)
}

func testStateMoves(e *env) {
	e.announce(v4(1))
	e.counts("two leechers", e.announce(v4(2)), 0, 2, 0)
	e.counts("one became a seeder", e.announce(v4(1).seed()), 1, 1, 0)
	e.counts("both seed", e.announce(v4(2).seed()), 2, 0, 0)
	e.counts("one leeches again", e.announce(v4(1)), 1, 1, 0)
	e.scrapeCounts("one leeches again", 1, 1, 0)
}

func testStoppedRemoves(e *env) {
	e.announce(v4(1))
	e.announce(v4(2).seed().totals(7, 9))
	e.announce(v4(3))
	r := e.announce(v4(2).seed().event(bittorrent.Stopped).totals(8, 10))
	e.counts("stopped", r, 0, 2, 0)
	if !r.Known || r.PrevUploaded != 7 || r.PrevDownloaded != 9 {
		e.t.Errorf("stopped: Known, PrevUploaded, PrevDownloaded = %v, %d, %d; want true, 7, 9", r.Known, r.PrevUploaded, r.PrevDownloaded)
	}
	e.peers("stopped peer's own answer", r.Peers4)
	e.peers("others after the stop", e.announce(v4(1)).Peers4, 3)
	e.scrapeCounts("after the stop", 0, 2, 0)
	if r := e.announce(v4(2)); r.Known {
		e.t.Error("a stopped peer that comes back is reported as known")
	}
}

func testStoppedUnknownPeer(e *env) {
	e.announce(v4(1))
	r := e.announce(v4(9).event(bittorrent.Stopped))
	e.counts("stopped unknown peer", r, 0, 1, 0)
	if r.Known {
		e.t.Error("an unknown peer's stop is reported as known")
	}
	e.peers("stopped unknown peer's answer", r.Peers4)
	e.peers("others after an unknown stop", e.announce(v4(1)).Peers4)

	// A stop must not create a swarm either.
	other := hashOf(e.t.Name() + "/other")
	e.counts("stop in an unknown swarm", e.announce(v4(1).in(other).event(bittorrent.Stopped)), 0, 0, 0)
	if got := e.scrape(other); len(got) != 0 {
		e.t.Errorf("a stop created a swarm: scrape returned %+v", got)
	}
}

func testCompletedOnce(e *env) {
	snatched := func(what string, r answer, want bool) answer {
		e.t.Helper()
		if r.Snatched != want {
			e.t.Errorf("%s: Snatched = %v, want %v", what, r.Snatched, want)
		}
		return r
	}
	snatched("started", e.announce(v4(1)), false)
	e.counts("first completed", snatched("first completed", e.announce(v4(1).seed().event(bittorrent.Completed)), true), 1, 0, 1)
	e.counts("completed again", snatched("completed again", e.announce(v4(1).seed().event(bittorrent.Completed)), false), 1, 0, 1)
	e.counts("a regular announce", snatched("a regular announce", e.announce(v4(1).seed()), false), 1, 0, 1)
	e.counts("completed on a first announce", snatched("completed on a first announce", e.announce(v4(2).seed().event(bittorrent.Completed)), true), 2, 0, 2)
	e.scrapeCounts("two snatches", 2, 0, 2)

	// A peer that left and came back has completed once more.
	e.announce(v4(1).seed().event(bittorrent.Stopped))
	e.counts("completed after rejoining", snatched("completed after rejoining", e.announce(v4(1).seed().event(bittorrent.Completed)), true), 2, 0, 3)
}

func testNeverSelf(e *env) {
	r := e.announce(dual(1))
	e.peers("lone peer, v4", r.Peers4)
	e.peers("lone peer, v6", r.Peers6)
	e.counts("lone peer", r, 0, 1, 0)
	r = e.announce(dual(1))
	e.peers("lone peer again, v4", r.Peers4)
	e.peers("lone peer again, v6", r.Peers6)

	e.announce(dual(2))
	for _, n := range []int{1, 2} {
		r := e.announce(dual(n))
		e.peers(fmt.Sprintf("peer %d of two, v4", n), r.Peers4, 3-n)
		e.peers(fmt.Sprintf("peer %d of two, v6", n), r.Peers6, 3-n)
	}
}

func testSeedersGetDownloaders(e *env) {
	for n := 1; n <= 5; n++ {
		e.announce(v4(n))
	}
	for n := 6; n <= 10; n++ {
		e.announce(v4(n).seed())
	}
	e.peers("seeder", e.announce(v4(6).seed()).Peers4, span(1, 5)...)
	e.peers("leecher", e.announce(v4(1)).Peers4, span(2, 10)...)

	// Seeders among seeders get nobody.
	other := hashOf(e.t.Name() + "/seeds")
	for n := 1; n <= 20; n++ {
		e.announce(v4(n).in(other).seed())
	}
	e.peers("seeder among seeders", e.announce(v4(1).in(other).seed()).Peers4)
}

func testNumWant(e *env) {
	for n := 1; n <= 30; n++ {
		e.announce(v4(n))
	}
	if got := len(e.announce(v4(1).want(10)).Peers4); got != 10 {
		e.t.Errorf("numwant 10: got %d peers", got)
	}
	if got := len(e.announce(v4(1).want(0)).Peers4); got != 0 {
		e.t.Errorf("numwant 0: got %d peers", got)
	}
	e.peers("numwant above the swarm size", e.announce(v4(1).want(100)).Peers4, span(2, 30)...)
	if got := len(e.announce(dual(1).want(3)).Peers4); got != 3 {
		e.t.Errorf("numwant 3 for a dual-stack peer: got %d IPv4 peers", got)
	}
}

func testFamilies(e *env) {
	for n := 1; n <= 3; n++ {
		e.announce(v4(n))
	}
	for n := 4; n <= 6; n++ {
		e.announce(v6(n))
	}
	e.announce(dual(7))

	r := e.announce(v4(10))
	e.peers("v4 requester, Peers4", r.Peers4, 1, 2, 3, 7)
	e.peers("v4 requester, Peers6", r.Peers6)
	r = e.announce(v6(11))
	e.peers("v6 requester, Peers4", r.Peers4)
	e.peers("v6 requester, Peers6", r.Peers6, 4, 5, 6, 7)
	r = e.announce(dual(12))
	e.peers("dual requester, Peers4", r.Peers4, 1, 2, 3, 7, 10)
	e.peers("dual requester, Peers6", r.Peers6, 4, 5, 6, 7, 11)
	e.counts("families", r, 0, 10, 0)

	for _, p := range r.Peers4 {
		if n := num(p.ID); p.AddrPort != netip.AddrPortFrom(addr4(n), port(n)) {
			e.t.Errorf("peer %d: IPv4 endpoint %v, want %v", n, p.AddrPort, netip.AddrPortFrom(addr4(n), port(n)))
		}
	}
	for _, p := range r.Peers6 {
		if n := num(p.ID); p.AddrPort != netip.AddrPortFrom(addr6(n), port(n)) {
			e.t.Errorf("peer %d: IPv6 endpoint %v, want %v", n, p.AddrPort, netip.AddrPortFrom(addr6(n), port(n)))
		}
	}
}

// testCompactWithoutIDs: an answer not asked for ids (every compact one)
// carries the same endpoints, and no ids.
func testCompactWithoutIDs(e *env) {
	for n := 1; n <= 3; n++ {
		e.announce(dual(n))
	}
	r := e.announceAs(dual(4))
	var got4, got6 []netip.AddrPort
	for _, p := range r.Peers4 {
		got4 = append(got4, p.AddrPort)
	}
	for _, p := range r.Peers6 {
		got6 = append(got6, p.AddrPort)
	}
	slices.SortFunc(got4, netip.AddrPort.Compare)
	slices.SortFunc(got6, netip.AddrPort.Compare)
	var want4, want6 []netip.AddrPort
	for n := 1; n <= 3; n++ {
		want4 = append(want4, netip.AddrPortFrom(addr4(n), port(n)))
		want6 = append(want6, netip.AddrPortFrom(addr6(n), port(n)))
	}
	if !slices.Equal(got4, want4) || !slices.Equal(got6, want6) {
		e.t.Errorf("answer without ids: endpoints %v and %v, want %v and %v", got4, got6, want4, want6)
	}
	e.counts("answer without ids", r, 0, 4, 0)
}

func testDualStack(e *env) {
	// One client announcing once per family is one peer.
	e.counts("first family", e.announce(v4(1)), 0, 1, 0)
	r := e.announce(v6(1))
	e.counts("second family", r, 0, 1, 0)
	if !r.Known {
		e.t.Error("second family's announce not reported as known")
	}
	r = e.announce(dual(2))
	e.counts("with a second peer", r, 0, 2, 0)
	e.peers("both lists hold it, v4", r.Peers4, 1)
	e.peers("both lists hold it, v6", r.Peers6, 1)
	if len(r.Peers4) == 1 && r.Peers4[0].AddrPort.Addr() != addr4(1) {
		e.t.Errorf("IPv4 endpoint %v, want %v", r.Peers4[0].AddrPort, addr4(1))
	}
	if len(r.Peers6) == 1 && r.Peers6[0].AddrPort.Addr() != addr6(1) {
		e.t.Errorf("IPv6 endpoint %v, want %v", r.Peers6[0].AddrPort, addr6(1))
	}
	// Completing through one family makes the whole peer a seeder.
	e.counts("seeding through one family", e.announce(v6(1).seed()), 1, 1, 0)
	e.scrapeCounts("seeding through one family", 1, 1, 0)
}

func testAddressUpdate(e *env) {
	e.announce(v4(1))
	moved := v4(1)
	moved.IPv4, moved.Port = addr4(101), 999
	e.counts("moved peer", e.announce(moved), 0, 1, 0)
	r := e.announce(v4(2))
	e.counts("after the move", r, 0, 2, 0)
	want := netip.AddrPortFrom(addr4(101), 999)
	if len(r.Peers4) != 1 || r.Peers4[0].AddrPort != want {
		e.t.Errorf("moved peer handed out as %v, want [%v]", r.Peers4, want)
	}
}

func testKnownAndTotals(e *env) {
	r := e.announce(v4(1).totals(10, 20))
	if r.Known || r.PrevUploaded != 0 || r.PrevDownloaded != 0 {
		e.t.Errorf("first announce: Known, Prev = %v, %d, %d; want false, 0, 0", r.Known, r.PrevUploaded, r.PrevDownloaded)
	}
	r = e.announce(v4(1).totals(100, 200))
	if !r.Known || r.PrevUploaded != 10 || r.PrevDownloaded != 20 {
		e.t.Errorf("second announce: Known, Prev = %v, %d, %d; want true, 10, 20", r.Known, r.PrevUploaded, r.PrevDownloaded)
	}
	r = e.announce(v6(1).totals(150, 260))
	if !r.Known || r.PrevUploaded != 100 || r.PrevDownloaded != 200 {
		e.t.Errorf("announce through the other family: Known, Prev = %v, %d, %d; want true, 100, 200", r.Known, r.PrevUploaded, r.PrevDownloaded)
	}
}

func testScrape(e *env) {
	a, b, unknown := e.hash, hashOf(e.t.Name()+"/b"), hashOf(e.t.Name()+"/unknown")
	e.announce(v4(1).seed())
	e.announce(v4(2))
	e.announce(v4(3))
	e.announce(v4(1).in(b).seed().event(bittorrent.Completed))

	sentinel := bittorrent.Scrape{Complete: 42}
	got, err := e.store.Scrape(context.Background(), []bittorrent.InfoHash{b, unknown, a}, []bittorrent.Scrape{sentinel})
	if err != nil {
		e.t.Fatalf("Scrape: %v", err)
	}
	want := []bittorrent.Scrape{
		sentinel,
		{InfoHash: b, Complete: 1, Incomplete: 0, Snatches: 1},
		{InfoHash: a, Complete: 1, Incomplete: 2, Snatches: 0},
	}
	if !slices.Equal(got, want) {
		e.t.Errorf("Scrape = %+v, want %+v", got, want)
	}
	if got := e.scrape(); len(got) != 0 {
		e.t.Errorf("Scrape of nothing = %+v", got)
	}
	if got := e.scrape(unknown); len(got) != 0 {
		e.t.Errorf("Scrape of an unknown swarm = %+v", got)
	}
}

func testSwarmsIsolated(e *env) {
	other := hashOf(e.t.Name() + "/other")
	e.announce(v4(1))
	r := e.announce(v4(2).in(other))
	e.counts("other swarm", r, 0, 1, 0)
	e.peers("other swarm", r.Peers4)
	e.counts("first swarm", e.announce(v4(1)), 0, 1, 0)
}

// testRandomSpread checks that peers are picked at random: asking often
// enough for a few must eventually hand out every one.
func testRandomSpread(e *env) {
	const peers, want, rounds = 100, 10, 400
	for n := 1; n <= peers; n++ {
		e.announce(v4(n))
	}
	seen := map[int]bool{}
	for range rounds {
		for _, p := range e.announce(v4(1).want(want)).Peers4 {
			seen[num(p.ID)] = true
		}
	}
	if len(seen) != peers-1 {
		e.t.Errorf("%d rounds of %d out of %d peers handed out only %d distinct peers", rounds, want, peers, len(seen))
	}

	// The same holds for a seeder, among the downloaders only.
	for n := peers + 1; n <= 2*peers; n++ {
		e.announce(v4(n).seed())
	}
	seen = map[int]bool{}
	for range rounds {
		for _, p := range e.announce(v4(peers + 1).seed().want(want)).Peers4 {
			seen[num(p.ID)] = true
		}
	}
	if len(seen) != peers {
		e.t.Errorf("a seeder got %d distinct downloaders out of %d", len(seen), peers)
	}
}

func testPaused(e *env) {
	e.announce(v4(1))
	e.announce(v4(2).seed())
	r := e.announce(v4(3).event(bittorrent.Paused))
	e.counts("a partial seed counts as incomplete", r, 1, 2, 0)
	e.peers("a partial seed gets only downloaders", r.Peers4, 1)
	e.peers("a seeder does not get the partial seed", e.announce(v4(2).seed()).Peers4, 1)
	e.peers("a downloader gets the partial seed", e.announce(v4(1)).Peers4, 2, 3)

	// Downloading again undoes the pause.
	r = e.announce(v4(3))
	e.counts("resumed", r, 1, 2, 0)
	e.peers("a resumed peer gets everyone", r.Peers4, 1, 2)
	e.peers("a seeder gets the resumed peer", e.announce(v4(2).seed()).Peers4, 1, 3)
}

func testExpiry(e *env) {
	e.announce(v4(1))
	e.announce(v4(2))
	e.announce(v4(3).seed())
	e.clock.Advance(Lifetime / 2)
	e.announce(v4(1))
	e.clock.Advance(Lifetime/2 + slack)

	// Peers 2 and 3 are past their lifetime, peer 1 is not.
	r := e.announce(v4(4))
	e.peers("after the lifetime", r.Peers4, 1)
	e.counts("after the lifetime", r, 0, 2, 0)
	e.scrapeCounts("after the lifetime", 0, 2, 0)
	if r := e.announce(v4(2)); r.Known {
		e.t.Error("an expired peer that comes back is reported as known")
	}

	// Nobody announces for a lifetime: the swarm is forgotten.
	e.clock.Advance(Lifetime + slack)
	if got := e.scrape(e.hash); len(got) != 0 {
		e.t.Errorf("a swarm nobody announced to for a lifetime scrapes as %+v", got)
	}
}

// testEmptySwarm checks that a swarm whose peers all left keeps its snatch
// count for a lifetime after its last announce, and is then forgotten.
func testEmptySwarm(e *env) {
	e.announce(v4(1).seed().event(bittorrent.Completed))
	e.announce(v4(1).seed().event(bittorrent.Stopped))
	e.scrapeCounts("all peers left", 0, 0, 1)
	e.clock.Advance(Lifetime - slack)
	e.scrapeCounts("all peers left, within a lifetime", 0, 0, 1)
	e.clock.Advance(2 * slack)
	if got := e.scrape(e.hash); len(got) != 0 {
		e.t.Errorf("an empty swarm a lifetime after its last announce scrapes as %+v", got)
	}
	e.counts("a new peer in a forgotten swarm", e.announce(v4(2)), 0, 1, 0)
}

func testEndpointExpiry(e *env) {
	e.announce(dual(1))
	e.clock.Advance(Lifetime / 2)
	// The client keeps announcing over IPv4 only: its IPv6 endpoint is
	// left to expire while the peer stays.
	e.announce(v4(1))
	e.clock.Advance(Lifetime/2 + slack)
	r := e.announce(dual(2))
	e.peers("stale IPv6 endpoint, v4", r.Peers4, 1)
	e.peers("stale IPv6 endpoint, v6", r.Peers6)
	e.counts("stale IPv6 endpoint", r, 0, 2, 0)
	if r := e.announce(v4(1)); !r.Known {
		e.t.Error("a peer that lost one endpoint is not known any more")
	}
}

// testConcurrent announces from several goroutines at once; run under the
// race detector it also checks the store's locking.
func testConcurrent(e *env) {
	const workers, each, rounds = 4, 25, 5
	var wg sync.WaitGroup
	for w := range workers {
		wg.Go(func() {
			for round := range rounds {
				for i := range each {
					n := w*each + i + 1
					a := cache.Announce(v4(n).want(10))
					a.InfoHash = e.hash
					a.Seeder = round == rounds-1 && n%2 == 0
					var r cache.Result
					if err := e.store.Announce(context.Background(), &a, &r); err != nil {
						e.t.Errorf("Announce: %v", err)
						return
					}
					if _, err := e.store.Scrape(context.Background(), []bittorrent.InfoHash{e.hash}, nil); err != nil {
						e.t.Errorf("Scrape: %v", err)
						return
					}
				}
			}
		})
	}
	wg.Wait()
	e.scrapeCounts("after concurrent announces", workers*each/2, workers*each/2, 0)
}

// testUsersKeepPeersApart: on a private tracker a peer is (user, peer id).
// A second user announcing the same peer id is another peer: it neither
// replaces the first user's endpoint nor sees its totals, and is handed the
// first user's peer like any other.
func testUsersKeepPeersApart(e *env) {
	ctx := context.Background()
	// The suite's own checks would take user 1's peer for the requester
	// itself: both have the same peer id.
	announce := func(a cache.Announce) answer {
		e.t.Helper()
		a.InfoHash = e.hash
		a.PeerIDs = true
		var r cache.Result
		if err := e.store.Announce(ctx, &a, &r); err != nil {
			e.t.Fatal(err)
		}
		return answerOf(r)
	}
	first := cache.Announce{UserID: 1, PeerID: id(1), IPv4: addr4(1), Port: port(1), Seeder: true, Uploaded: 100, NumWant: 50}
	second := cache.Announce{UserID: 2, PeerID: id(1), IPv4: addr4(2), Port: port(2), Uploaded: 5, NumWant: 50}
	announce(first)
	r := announce(second)
	if r.Known {
		e.t.Errorf("user 2's first announce is Known with totals %d/%d: it was matched to user 1's peer", r.PrevUploaded, r.PrevDownloaded)
	}
	e.counts("two users, one peer id", r, 1, 1, 0)
	if len(r.Peers4) != 1 || r.Peers4[0].AddrPort != netip.AddrPortFrom(addr4(1), port(1)) {
		e.t.Errorf("user 2 got %v, want user 1's peer at %v", r.Peers4, netip.AddrPortFrom(addr4(1), port(1)))
	}
	r = announce(first)
	if !r.Known || r.PrevUploaded != 100 {
		e.t.Errorf("user 1's re-announce: Known %v, PrevUploaded %d; want its own totals (100)", r.Known, r.PrevUploaded)
	}
	first.Event = bittorrent.Stopped
	r = announce(first)
	e.counts("after user 1 stopped", r, 0, 1, 0)
}
