package memory

import (
	"bytes"
	"context"
	"encoding/binary"
	"encoding/json"
	"errors"
	"hash/crc32"
	"log/slog"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/chihaya/chihaya/bittorrent"
	"github.com/chihaya/chihaya/cache"
	configfile "github.com/chihaya/chihaya/config"
)

var t0 = time.Date(2024, 1, 1, 0, 0, 0, 0, time.UTC)

// openAt opens a store whose clock starts at now.
func openAt(t testing.TB, raw string, now time.Time) (*store, *fakeClock) {
	t.Helper()
	clk := &fakeClock{now: now}
	s, err := driver{}.Open(json.RawMessage(raw), cache.Options{PeerLifetime: lifetime, Now: clk.Now})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return s.(*store), clk
}

func do(t testing.TB, s *store, a cache.Announce) cache.Result {
	t.Helper()
	a.PeerIDs = true
	var r cache.Result
	if err := s.Announce(context.Background(), &a, &r); err != nil {
		t.Fatal(err)
	}
	return r
}

func v4(n int) netip.Addr { return netip.AddrFrom4([4]byte{10, 1, byte(n >> 8), byte(n)}) }
func v6(n int) netip.Addr {
	return netip.AddrFrom16([16]byte{0x20, 0x01, 0x0d, 0xb8, 15: byte(n), 14: byte(n >> 8)})
}

// variedStore fills a store with every kind of swarm and peer, over twenty
// minutes of its clock, and returns the announces it made, last ones last.
func variedStore(t testing.TB, raw string) (*store, *fakeClock, []cache.Announce) {
	t.Helper()
	s, clk := openAt(t, raw, t0)
	var all []cache.Announce
	ann := func(a cache.Announce) {
		a.NumWant = 200
		do(t, s, a)
		all = append(all, a)
	}
	h4, h6, hDual, hBig, hEmpty := hash(1), hash(2), hash(3), hash(4), hash(5)
	// IPv4 only: downloaders, seeders, one of them snatched, one paused.
	for n := 1; n <= 5; n++ {
		a := cache.Announce{InfoHash: h4, PeerID: peerID(n), IPv4: v4(n), Port: uint16(6880 + n), Uploaded: uint64(n) << 20, Downloaded: uint64(n) << 30}
		switch n {
		case 1:
			a.Seeder, a.Event = true, bittorrent.Completed
		case 2:
			a.Seeder = true
		case 3:
			a.Event = bittorrent.Paused
		}
		ann(a)
	}
	clk.Advance(3 * time.Minute)
	// IPv6 only.
	for n := 1; n <= 3; n++ {
		ann(cache.Announce{InfoHash: h6, PeerID: peerID(n), IPv6: v6(n), Port: 51413, Seeder: n == 3, Uploaded: 7, Downloaded: uint64(n)})
	}
	clk.Advance(4 * time.Minute)
	// Dual stack; peer 2's IPv4 endpoint is older than its IPv6 one, peer
	// 3 is a seeder that completed and paused.
	for n := 1; n <= 4; n++ {
		ann(cache.Announce{InfoHash: hDual, PeerID: peerID(n), IPv4: v4(n), IPv6: v6(n), Port: 7000, Seeder: n >= 3, Event: []bittorrent.Event{bittorrent.Started, bittorrent.None, bittorrent.Completed, bittorrent.None}[n-1]})
	}
	clk.Advance(2 * time.Minute)
	ann(cache.Announce{InfoHash: hDual, PeerID: peerID(2), IPv6: v6(2), Port: 7002, Uploaded: 99})
	ann(cache.Announce{InfoHash: hDual, PeerID: peerID(3), IPv4: v4(3), IPv6: v6(3), Port: 7000, Seeder: true, Event: bittorrent.Paused})
	clk.Advance(time.Minute)
	// A big, indexed swarm of several users who share peer ids.
	for n := range 40 {
		ann(cache.Announce{InfoHash: hBig, UserID: uint32(n/10 + 1), PeerID: peerID(n % 10), IPv4: v4(n), Port: uint16(10000 + n), Seeder: n%4 == 0, Uploaded: uint64(n * 1000), Downloaded: uint64(n * 3)})
		if n%8 == 0 {
			clk.Advance(time.Minute)
		}
	}
	ann(cache.Announce{InfoHash: hBig, UserID: 2, PeerID: peerID(5), IPv4: v4(15), Port: 10015, Event: bittorrent.Completed, Seeder: true})
	// A swarm whose only peer snatched and left: its snatch count stays.
	ann(cache.Announce{InfoHash: hEmpty, PeerID: peerID(1), IPv4: v4(1), Port: 1, Event: bittorrent.Completed, Seeder: true})
	ann(cache.Announce{InfoHash: hEmpty, PeerID: peerID(1), IPv4: v4(1), Port: 1, Event: bittorrent.Stopped})
	clk.Advance(5 * time.Minute)
	return s, clk, all
}

func snapshot(t testing.TB, s *store) []byte {
	t.Helper()
	var buf bytes.Buffer
	if err := s.WriteSnapshot(&buf); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

// peerState is a peer as the store holds it, with ages instead of times.
type peerState struct {
	flags              uint8
	has4, has6         bool
	addr4, addr6       netip.AddrPort
	age4, age6         uint32
	uploaded, download uint64
	id                 bittorrent.PeerID
}

type swarmState struct {
	snatches, touched uint32
	peers             map[uint64]peerState
}

// state returns every swarm with its peers' ages at the store's clock
// plus extra seconds, after checking each swarm's invariants.
func state(t testing.TB, s *store, extra uint32) map[bittorrent.InfoHash]swarmState {
	t.Helper()
	now := s.seconds(s.now())
	out := map[bittorrent.InfoHash]swarmState{}
	for i := range s.shards {
		sh := &s.shards[i]
		sh.mu.Lock()
		for h, sw := range sh.swarms.All() {
			if err := sw.check(); err != nil {
				t.Errorf("swarm %x: %v", h[:4], err)
			}
			ss := swarmState{snatches: sw.snatches, touched: now - sw.touched + extra, peers: map[uint64]peerState{}}
			for _, l := range []*list{&sw.v4, &sw.v6} {
				for i := range int(l.n) {
					ps := ss.peers[l.hash(i)]
					ps.flags = l.flags(i)
					ps.uploaded, ps.download = l.totals(i)
					ps.id = l.id(i)
					if l == &sw.v4 {
						ps.has4, ps.addr4, ps.age4 = true, l.endpoint(i), now-l.seen(i)+extra
					} else {
						ps.has6, ps.addr6, ps.age6 = true, l.endpoint(i), now-l.seen(i)+extra
					}
					ss.peers[l.hash(i)] = ps
				}
			}
			out[*h] = ss
		}
		sh.mu.Unlock()
	}
	return out
}

// sortedPeers lists a peer list's ids (when it has them) and endpoints.
func sortedPeers[A [4]byte | [16]byte](ps *bittorrent.Peers[A]) []string {
	out := make([]string, ps.Len())
	for i := range out {
		id, _ := ps.ID(i)
		out[i] = string(id[:]) + ps.At(i).String()
	}
	slices.Sort(out)
	return out
}

func sameResult(a, b cache.Result) bool {
	return a.Complete == b.Complete && a.Incomplete == b.Incomplete && a.Snatches == b.Snatches &&
		a.Snatched == b.Snatched && a.Known == b.Known && a.PrevUploaded == b.PrevUploaded &&
		a.PrevDownloaded == b.PrevDownloaded &&
		slices.Equal(sortedPeers(&a.Peers4), sortedPeers(&b.Peers4)) &&
		slices.Equal(sortedPeers(&a.Peers6), sortedPeers(&b.Peers6))
}

func TestSnapshotRoundTrip(t *testing.T) {
	a, clkA, all := variedStore(t, `{"shards": 4, "peer_ids": true}`)
	written := clkA.Now()
	data := snapshot(t, a)
	const down = 7 * time.Minute
	want := state(t, a, uint32(down/time.Second))
	if len(want) != 5 {
		t.Fatalf("the varied store has %d swarms, want 5", len(want))
	}

	// Another shard count, and a clock seven minutes on.
	b, clkB := openAt(t, `{"shards": 16, "peer_ids": true}`, written.Add(down))
	if err := b.ReadSnapshot(bytes.NewReader(data)); err != nil {
		t.Fatal(err)
	}
	got := state(t, b, 0)
	if len(got) != len(want) {
		t.Fatalf("loaded %d swarms, want %d", len(got), len(want))
	}
	for h, w := range want {
		g := got[h]
		if g.snatches != w.snatches || g.touched != w.touched || len(g.peers) != len(w.peers) {
			t.Errorf("swarm %x: snatches %d, touched %d s ago, %d peers; want %d, %d, %d", h[:4], g.snatches, g.touched, len(g.peers), w.snatches, w.touched, len(w.peers))
		}
		for k, wp := range w.peers {
			if gp, ok := g.peers[k]; !ok || gp != wp {
				t.Errorf("swarm %x peer %016x: %+v, want %+v", h[:4], k, gp, wp)
			}
		}
	}

	// Both stores now answer every announce and scrape alike.
	clkA.Advance(down)
	hashes := []bittorrent.InfoHash{hash(99)}
	for h := range want {
		hashes = append(hashes, h)
	}
	scA, _ := a.Scrape(context.Background(), hashes, nil)
	scB, _ := b.Scrape(context.Background(), hashes, nil)
	if !slices.Equal(scA, scB) || len(scB) != 5 {
		t.Fatalf("scrapes differ:\n%v\n%v", scA, scB)
	}
	for i, an := range all {
		if an.Event == bittorrent.Stopped {
			continue
		}
		an.Event = bittorrent.None
		if i%3 == 0 {
			an.Event = bittorrent.Completed
		}
		an.Uploaded += 5
		ra, rb := do(t, a, an), do(t, b, an)
		if !sameResult(ra, rb) {
			t.Fatalf("announce %d (%x peer %d/%x): original %+v, loaded %+v", i, an.InfoHash[:4], an.UserID, an.PeerID[16:], ra, rb)
		}
		// A newcomer, who is told of the others.
		nc := cache.Announce{InfoHash: an.InfoHash, PeerID: peerID(1000 + i), IPv4: v4(1000 + i), IPv6: v6(1000 + i), Port: 1, NumWant: 200}
		if ra, rb = do(t, a, nc), do(t, b, nc); !sameResult(ra, rb) || ra.Known {
			t.Fatalf("newcomer %d: original %+v, loaded %+v", i, ra, rb)
		}
		clkA.Advance(time.Second)
		clkB.Advance(time.Second)
	}
	state(t, b, 0)
}

func TestSnapshotExpiresTheDowntime(t *testing.T) {
	s, clk := openAt(t, `{"shards": 2}`, t0)
	h, gone, empty, emptyOld := hash(1), hash(2), hash(3), hash(4)
	an := func(h bittorrent.InfoHash, n int, v4ok, v6ok bool, ev bittorrent.Event) {
		a := cache.Announce{InfoHash: h, PeerID: peerID(n), Port: 1, Event: ev, Seeder: ev == bittorrent.Completed}
		if v4ok {
			a.IPv4 = v4(n)
		}
		if v6ok {
			a.IPv6 = v6(n)
		}
		do(t, s, a)
	}
	// Ages at the snapshot: peer 1 25m, peer 2 15m, peer 3 25m over IPv4
	// and 5m over IPv6, peer 4 5m; swarm gone's only peer 25m; swarm
	// emptyOld lost its last peer 25m ago, swarm empty 5m ago.
	an(h, 1, true, false, bittorrent.None)
	an(h, 3, true, true, bittorrent.None)
	an(gone, 1, true, false, bittorrent.None)
	an(emptyOld, 1, true, false, bittorrent.Completed)
	an(emptyOld, 1, true, false, bittorrent.Stopped)
	clk.Advance(10 * time.Minute)
	an(h, 2, true, false, bittorrent.None)
	clk.Advance(10 * time.Minute)
	an(h, 3, false, true, bittorrent.None)
	an(h, 4, false, true, bittorrent.None)
	an(empty, 1, true, false, bittorrent.Completed)
	an(empty, 1, true, false, bittorrent.Stopped)
	clk.Advance(5 * time.Minute)
	data := snapshot(t, s)

	// Ten minutes down: 25m + 10m is past the 30m lifetime.
	l, lclk := openAt(t, `{"shards": 2}`, clk.Now().Add(10*time.Minute))
	stats, err := l.readSnapshot(bytes.NewReader(data))
	if err != nil {
		t.Fatal(err)
	}
	if stats.swarms != 2 || stats.peers != 3 || stats.expiredSwarms != 2 || stats.expiredPeers != 2 {
		t.Errorf("stats %+v, want 2 swarms and 3 peers loaded, 2 swarms and 2 peers expired", stats)
	}
	sc, _ := l.Scrape(context.Background(), []bittorrent.InfoHash{h, gone, empty, emptyOld}, nil)
	if len(sc) != 2 || sc[0].InfoHash != h || sc[0].Incomplete != 3 || sc[1].InfoHash != empty || sc[1].Snatches != 1 {
		t.Fatalf("scrape after loading %+v", sc)
	}
	sw := l.swarm(h)
	if k := l.key.sum(0, new(peerID(3))); sw.v4.find(k) >= 0 || sw.v6.find(k) < 0 || sw.v6.flags(sw.v6.find(k))&dual != 0 {
		t.Fatalf("peer 3 should have kept its IPv6 endpoint only")
	}
	// Peer 2 is now 25m old: it stays five more minutes, not a second
	// longer.
	lclk.Advance(5 * time.Minute)
	if sc, _ = l.Scrape(context.Background(), []bittorrent.InfoHash{h}, nil); sc[0].Incomplete != 3 {
		t.Fatalf("peer 2 expired early: %+v", sc)
	}
	lclk.Advance(2 * time.Second)
	if sc, _ = l.Scrape(context.Background(), []bittorrent.InfoHash{h}, nil); sc[0].Incomplete != 2 {
		t.Fatalf("peer 2 outlived its lifetime: %+v", sc)
	}
	// The empty swarm, whose last announce was 15m old at the load, goes
	// 15m after it.
	lclk.Advance(10*time.Minute - 2*time.Second)
	if sc, _ = l.Scrape(context.Background(), []bittorrent.InfoHash{empty}, nil); len(sc) != 1 {
		t.Fatalf("the empty swarm went early")
	}
	lclk.Advance(2 * time.Second)
	if sc, _ = l.Scrape(context.Background(), []bittorrent.InfoHash{empty}, nil); len(sc) != 0 {
		t.Fatalf("the empty swarm outlived its lifetime")
	}

	// A clock that went backwards loses nothing: ages stay as written.
	back, _ := openAt(t, `{}`, clk.Now().Add(-time.Hour))
	if stats, err := back.readSnapshot(bytes.NewReader(data)); err != nil || stats.expiredPeers != 0 || stats.peers != 5 {
		t.Fatalf("after the clock went back: %+v, %v", stats, err)
	}
	// A day later nothing is left.
	late, _ := openAt(t, `{}`, clk.Now().Add(24*time.Hour))
	if stats, err := late.readSnapshot(bytes.NewReader(data)); err != nil || stats.swarms != 0 || stats.expiredPeers != 5 || !late.empty() {
		t.Fatalf("a day later: %+v, %v", stats, err)
	}
}

// smallSnapshot is a snapshot of a few peers of both families, with their
// ids.
func smallSnapshot(t testing.TB) []byte {
	t.Helper()
	s, _ := openAt(t, `{"shards": 1, "peer_ids": true}`, t0)
	h := hash(1)
	do(t, s, cache.Announce{InfoHash: h, PeerID: peerID(1), IPv4: v4(1), Port: 1, Event: bittorrent.Completed, Seeder: true})
	do(t, s, cache.Announce{InfoHash: h, UserID: 3, PeerID: peerID(2), IPv6: v6(2), Port: 2, Uploaded: 1})
	do(t, s, cache.Announce{InfoHash: hash(2), PeerID: peerID(3), IPv4: v4(3), IPv6: v6(3), Port: 3, Event: bittorrent.Paused})
	return snapshot(t, s)
}

// resum replaces the checksum of a snapshot with the right one, so a test
// can reach the checks behind it.
func resum(data []byte) []byte {
	data = slices.Clone(data)
	if len(data) >= 4 {
		binary.BigEndian.PutUint32(data[len(data)-4:], crc32.Checksum(data[:len(data)-4], castagnoli))
	}
	return data
}

// mustReject loads data into a fresh store and fails unless that is an
// error that leaves the store empty.
func mustReject(t *testing.T, s *store, data []byte) error {
	t.Helper()
	err := s.ReadSnapshot(bytes.NewReader(data))
	if err == nil {
		t.Fatalf("a bad snapshot was loaded: %x", data)
	}
	if !s.empty() {
		t.Fatalf("a rejected snapshot (%v) left swarms behind", err)
	}
	return err
}

func TestSnapshotCorruption(t *testing.T) {
	data := smallSnapshot(t)
	s, _ := openAt(t, `{"shards": 2}`, t0.Add(time.Minute))
	// Every peer has its id (peer_ids is on); only the second reported
	// totals.
	const peer = 1 + 8 + 20
	if len(data) != snapHeaderSize+snapKeySize+2*(1+snapSwarmSize)+(peer+snapEndpoint4)+(peer+totalsLen+snapEndpoint6)+(peer+snapEndpoint4+snapEndpoint6)+1+snapTrailerSize+4 {
		t.Fatalf("the snapshot of 2 swarms and 3 peers takes %d bytes", len(data))
	}

	for n := range len(data) {
		if err := mustReject(t, s, data[:n]); !errors.Is(err, errSnapTruncated) {
			t.Fatalf("truncated to %d bytes: %v", n, err)
		}
	}
	checksumErrs := 0
	for i := range data {
		for bit := range 8 {
			bad := slices.Clone(data)
			bad[i] ^= 1 << bit
			err := mustReject(t, s, bad)
			if errors.Is(err, errSnapChecksum) {
				checksumErrs++
			}
			// Bits with no meaning to the structure: the clock, the
			// key, the first info hash, the checksum itself.
			clockOrKey := i >= snapHeaderSize-8 && i < snapHeaderSize+snapKeySize
			hash := i > snapHeaderSize+snapKeySize && i <= snapHeaderSize+snapKeySize+20
			if (clockOrKey || hash || i >= len(data)-4) && !errors.Is(err, errSnapChecksum) {
				t.Errorf("bit %d of byte %d flipped: %v", bit, i, err)
			}
		}
	}
	// Flips in flags, tags and counts may be caught by the structure
	// first; every other one, in addresses, ids, totals, ages, is caught
	// by the checksum.
	if checksumErrs < 3*8*len(data)/4 {
		t.Errorf("only %d of %d bit flips failed the checksum", checksumErrs, 8*len(data))
	}
	if err := mustReject(t, s, append(slices.Clone(data), 0)); !strings.Contains(err.Error(), "data after the checksum") {
		t.Errorf("trailing byte: %v", err)
	}

	bad := slices.Clone(data)
	copy(bad, "CHYSWARN")
	if err := mustReject(t, s, resum(bad)); !errors.Is(err, errSnapMagic) {
		t.Errorf("wrong magic: %v", err)
	}
	bad = slices.Clone(data)
	binary.BigEndian.PutUint16(bad[len(snapMagic):], snapVersion+1)
	if err := mustReject(t, s, resum(bad)); !strings.Contains(err.Error(), "version 3 is not supported") {
		t.Errorf("future version: %v", err)
	}
	if err := mustReject(t, s, nil); !errors.Is(err, errSnapTruncated) {
		t.Errorf("empty file: %v", err)
	}
}

// testKey is the peer key of hand-built version 2 snapshots.
var testKey = peerKey{1, 2}

// build assembles a snapshot of the given format version with a right
// checksum from a header time and raw records, then the trailer's counts.
func build(version uint16, written time.Time, swarms, peers uint64, records ...[]byte) []byte {
	b := []byte(snapMagic)
	b = binary.BigEndian.AppendUint16(b, version)
	b = binary.BigEndian.AppendUint16(b, 0)
	b = binary.BigEndian.AppendUint64(b, uint64(written.UnixNano()))
	if version >= 2 {
		b = binary.BigEndian.AppendUint64(b, testKey[0])
		b = binary.BigEndian.AppendUint64(b, testKey[1])
	}
	for _, r := range records {
		b = append(b, r...)
	}
	b = append(b, snapTagEnd)
	b = binary.BigEndian.AppendUint64(b, swarms)
	b = binary.BigEndian.AppendUint64(b, peers)
	return binary.BigEndian.AppendUint32(b, crc32.Checksum(b, castagnoli))
}

func swarmRec(h byte, n uint32) []byte {
	b := []byte{snapTagSwarm, h, 20: 0}
	b = binary.BigEndian.AppendUint32(b, 0) // snatches
	b = binary.BigEndian.AppendUint32(b, 0) // age
	return binary.BigEndian.AppendUint32(b, n)
}

// endpoints appends the endpoints flags ask for, seen at the snapshot's
// time.
func endpoints(b []byte, flags uint8, n byte, addr6 netip.Addr) []byte {
	if flags&snapHas4 != 0 {
		b = append(b, 10, 0, 0, n, 0, 1, 0, 0, 0, 0)
	}
	if flags&snapHas6 != 0 {
		a := addr6.As16()
		b = append(b, a[:]...)
		b = append(b, 0, 1, 0, 0, 0, 0)
	}
	return b
}

// peerV1 is a version 1 peer: user, peer id, totals (up is set), then the
// endpoints.
func peerV1(flags uint8, user uint32, id byte, up uint64, addr6 netip.Addr) []byte {
	b := []byte{flags}
	b = binary.BigEndian.AppendUint32(b, user)
	b = append(b, id)
	b = append(b, make([]byte, 19)...)
	b = binary.BigEndian.AppendUint64(b, up)
	b = binary.BigEndian.AppendUint64(b, 0)
	return endpoints(b, flags, id, addr6)
}

// peerRec is a version 2 peer whose hash is n, with totals and id when
// flags say so.
func peerRec(flags uint8, n byte, addr6 netip.Addr) []byte {
	b := []byte{flags}
	b = binary.BigEndian.AppendUint64(b, uint64(n))
	if flags&snapTotals != 0 {
		b = binary.BigEndian.AppendUint64(b, 5)
		b = binary.BigEndian.AppendUint64(b, 0)
	}
	if flags&snapID != 0 {
		b = append(b, n)
		b = append(b, make([]byte, 19)...)
	}
	return endpoints(b, flags, n, addr6)
}

func TestSnapshotStructure(t *testing.T) {
	s, _ := openAt(t, `{"shards": 2}`, t0)
	ip6 := netip.MustParseAddr("2001:db8::1")
	peers := func(n int, flags uint8) []byte {
		var b []byte
		for i := range n {
			b = append(b, peerRec(flags, byte(i), ip6)...)
		}
		return b
	}
	valid := build(snapVersion, t0, 2, 12, swarmRec(1, 2), peers(2, snapHas4|snapSeeder|snapID), swarmRec(2, 10), peers(10, snapHas4|snapHas6|snapPaused|snapSnatched|snapTotals))
	l, _ := openAt(t, `{"shards": 2}`, t0)
	if err := l.ReadSnapshot(bytes.NewReader(valid)); err != nil {
		t.Fatalf("a hand-built snapshot: %v", err)
	}
	if sc, _ := l.Scrape(context.Background(), []bittorrent.InfoHash{{1}, {2}}, nil); len(sc) != 2 || sc[0].Complete != 2 || sc[1].Incomplete != 10 {
		t.Fatalf("hand-built snapshot loaded as %+v", sc)
	}
	if l.key != testKey {
		t.Errorf("the store's key is %x after loading, want the snapshot's", l.key)
	}
	if err := l.ReadSnapshot(bytes.NewReader(valid)); !errors.Is(err, errSnapNotEmpty) {
		t.Fatalf("loading into a store with swarms: %v", err)
	}

	tests := []struct {
		name, err string
		data      []byte
	}{
		{"unknown flag", "invalid peer flags 0x81", build(2, t0, 1, 1, swarmRec(1, 1), peerRec(snapHas4|0x80, 1, ip6))},
		{"no endpoint", "invalid peer flags 0x4", build(2, t0, 1, 1, swarmRec(1, 1), peerRec(snapSeeder, 1, ip6))},
		{"zero totals", "totals flagged but zero", build(2, t0, 1, 1, swarmRec(1, 1), slices.Concat([]byte{snapHas4 | snapTotals}, make([]byte, 8+16), []byte{10, 0, 0, 1, 0, 1, 0, 0, 0, 0}))},
		{"mapped IPv6", "IPv4-mapped", build(2, t0, 1, 1, swarmRec(1, 1), peerRec(snapHas6, 1, netip.MustParseAddr("::ffff:10.0.0.1")))},
		{"duplicate peer", "appears twice", build(2, t0, 1, 2, swarmRec(1, 2), peerRec(snapHas4, 1, ip6), peerRec(snapHas6|snapSeeder, 1, ip6))},
		{"duplicate indexed peer", "appears twice", build(2, t0, 1, 40, swarmRec(1, 40), peers(39, snapHas4), peerRec(snapHas4, 4, ip6))},
		{"duplicate swarm", "appears twice", build(2, t0, 2, 2, swarmRec(1, 1), peers(1, snapHas4), swarmRec(1, 1), peers(1, snapHas4))},
		{"duplicate expired swarm", "appears twice", build(2, t0.Add(-2*time.Hour), 2, 2, swarmRec(1, 1), peers(1, snapHas4), swarmRec(1, 1), peers(1, snapHas4))},
		{"unknown tag", "unknown record tag 7", build(2, t0, 0, 0, []byte{7})},
		{"trailer counts", "the trailer counts 1 swarms and 3 peers", build(2, t0, 1, 3, swarmRec(1, 2), peers(2, snapHas4))},
		{"peer count beyond the data", "ends early", slices.Concat(build(2, t0, 0, 0)[:snapHeaderSize+snapKeySize], swarmRec(1, 4000000000), peers(2, snapHas4))},
		{"version 1, flag of version 2", "invalid peer flags 0x21", build(1, t0, 1, 1, swarmRec(1, 1), peerV1(snapHas4|snapTotals, 0, 1, 0, ip6))},
		{"version 1, duplicate peer", "appears twice", build(1, t0, 1, 2, swarmRec(1, 2), peerV1(snapHas4, 3, 1, 0, ip6), peerV1(snapHas6, 3, 1, 0, ip6))},
		{"version 0", "version 0 is not supported", build(0, t0, 0, 0)},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if err := mustReject(t, s, tc.data); !strings.Contains(err.Error(), tc.err) {
				t.Fatalf("error %v, want one containing %q", err, tc.err)
			}
		})
	}
	bad := slices.Clone(valid)
	bad[len(snapMagic)+3] = 1
	if err := mustReject(t, s, resum(bad)); !strings.Contains(err.Error(), "reserved") {
		t.Errorf("reserved field set: %v", err)
	}
}

// TestSnapshotVersion1 loads a snapshot of the previous format: its peers,
// keyed by user and peer id, are found again by the same announces, with
// their totals, and two users' equal peer ids stay two peers.
func TestSnapshotVersion1(t *testing.T) {
	ip6 := netip.MustParseAddr("2001:db8::1")
	data := build(1, t0, 1, 3, swarmRec(1, 3),
		peerV1(snapHas4|snapSeeder, 1, 7, 100, ip6),
		peerV1(snapHas4|snapHas6, 2, 7, 200, ip6),
		peerV1(snapHas6|snapPaused, 0, 8, 0, ip6))
	l, _ := openAt(t, `{"shards": 2, "peer_ids": true}`, t0.Add(time.Minute))
	if err := l.ReadSnapshot(bytes.NewReader(data)); err != nil {
		t.Fatal(err)
	}
	state(t, l, 0)
	h := bittorrent.InfoHash{1}
	var id7 bittorrent.PeerID
	id7[0] = 7
	r := do(t, l, cache.Announce{InfoHash: h, UserID: 2, PeerID: id7, IPv6: ip6, Port: 1, NumWant: 10})
	if !r.Known || r.PrevUploaded != 200 || r.Complete != 1 || r.Incomplete != 2 {
		t.Fatalf("user 2's peer after loading: %+v", r)
	}
	// Dual-stack, it is handed the other peers of each family.
	if id, _ := r.Peers6.ID(0); r.Peers6.Len() != 1 || id[0] != 8 {
		t.Errorf("IPv6 peers %v, want peer 8", sortedPeers(&r.Peers6))
	}
	r = do(t, l, cache.Announce{InfoHash: h, UserID: 1, PeerID: id7, IPv4: netip.AddrFrom4([4]byte{10, 0, 0, 7}), Port: 1, Seeder: true})
	if !r.Known || r.PrevUploaded != 100 {
		t.Fatalf("user 1's peer after loading: %+v", r)
	}
}

// TestSnapshotFlagValues pins the record flags that mean the same in the
// snapshot, where they are translated one by one: a test of the
// translation, since the format does not depend on the record's values.
func TestSnapshotFlagValues(t *testing.T) {
	s, _ := openAt(t, `{"shards": 1, "peer_ids": true}`, t0)
	do(t, s, cache.Announce{InfoHash: hash(1), PeerID: peerID(1), IPv4: v4(1), Port: 1, Seeder: true, Event: bittorrent.Completed, Uploaded: 1})
	do(t, s, cache.Announce{InfoHash: hash(2), PeerID: peerID(2), IPv6: v6(2), Port: 1, Event: bittorrent.Paused})
	data := snapshot(t, s)
	flags := map[uint8]bool{}
	for _, want := range []uint8{snapHas4 | snapSeeder | snapSnatched | snapTotals | snapID, snapHas6 | snapPaused | snapID} {
		flags[want] = true
	}
	// Each swarm record is followed by its single peer's flags.
	off := snapHeaderSize + snapKeySize
	for range 2 {
		f := data[off+1+snapSwarmSize]
		if !flags[f] {
			t.Errorf("peer flags %#x, want one of %v", f, flags)
		}
		delete(flags, f)
		size := 1 + 8 + 20 + snapEndpoint6
		if f&snapHas4 != 0 {
			size = 1 + 8 + totalsLen + 20 + snapEndpoint4
		}
		off += 1 + snapSwarmSize + size
	}
}

// TestSnapshotWhileServing writes snapshots while announces go on and
// loads them while announces race with the load.
func TestSnapshotWhileServing(t *testing.T) {
	s, clk := openAt(t, `{"shards": 4}`, t0)
	hashes := make([]bittorrent.InfoHash, 16)
	for i := range hashes {
		hashes[i] = hash(i)
	}
	var wg sync.WaitGroup
	stop := make(chan struct{})
	for w := range 4 {
		wg.Go(func() {
			var r cache.Result
			for n := 0; ; n++ {
				select {
				case <-stop:
					return
				default:
				}
				a := cache.Announce{InfoHash: hashes[n%16], PeerID: peerID(w*1000 + n%100), IPv4: v4(n), Port: 1, Seeder: n%3 == 0, Event: bittorrent.Event(n % 5)}
				if err := s.Announce(context.Background(), &a, &r); err != nil {
					t.Error(err)
					return
				}
			}
		})
	}
	var snaps [][]byte
	for range 5 {
		snaps = append(snaps, snapshot(t, s))
		time.Sleep(time.Millisecond)
	}
	close(stop)
	wg.Wait()
	other := hash(1000)
	for _, data := range snaps {
		ref, _ := openAt(t, `{"shards": 2}`, clk.Now())
		if err := ref.ReadSnapshot(bytes.NewReader(data)); err != nil {
			t.Fatal(err)
		}
		n := len(state(t, ref, 0))
		l, _ := openAt(t, `{"shards": 2}`, clk.Now())
		race := make(chan error)
		go func() {
			a := cache.Announce{InfoHash: other, PeerID: peerID(1), IPv4: v4(1), Port: 1}
			race <- l.Announce(context.Background(), &a, &cache.Result{})
		}()
		err := l.ReadSnapshot(bytes.NewReader(data))
		if err := <-race; err != nil {
			t.Fatal(err)
		}
		// All of the snapshot and the announce, or the announce alone.
		got := len(state(t, l, 0))
		if !(err == nil && got == n+1) && !(errors.Is(err, errSnapNotEmpty) && got == 1) {
			t.Fatalf("a load that raced an announce: %v, %d swarms (the snapshot has %d)", err, got, n)
		}
	}
}

func TestSnapshotWriterError(t *testing.T) {
	s, _, _ := variedStore(t, `{"shards": 4}`)
	boom := errors.New("disk full")
	if err := s.WriteSnapshot(failingWriter{boom}); !errors.Is(err, boom) {
		t.Fatalf("WriteSnapshot to a failing writer: %v", err)
	}
}

type failingWriter struct{ err error }

func (w failingWriter) Write([]byte) (int, error) { return 0, w.err }

// logBuffer collects a store's log.
func logBuffer() (*slog.Logger, *syncBuffer) {
	var b syncBuffer
	return slog.New(slog.NewTextHandler(&b, nil)), &b
}

type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.b.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.b.String()
}

func openFile(t *testing.T, file string, now time.Time) (*store, *syncBuffer) {
	t.Helper()
	log, buf := logBuffer()
	raw, _ := json.Marshal(map[string]any{"shards": 4, "snapshot_file": file})
	s, err := driver{}.Open(raw, cache.Options{PeerLifetime: lifetime, Now: func() time.Time { return now }, Log: log})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return s.(*store), buf
}

func TestSnapshotFile(t *testing.T) {
	dir := t.TempDir()
	file := filepath.Join(dir, "swarms.snap")
	// A leftover temporary file, as a crash while writing leaves, is
	// never read.
	if err := os.WriteFile(file+".tmp", []byte("half a snapshot"), 0o600); err != nil {
		t.Fatal(err)
	}
	s, log := openFile(t, file, t0)
	if !strings.Contains(log.String(), "no swarm snapshot to load") || !s.empty() {
		t.Fatalf("a missing snapshot: %s", log)
	}
	hashes := []bittorrent.InfoHash{hash(0), hash(1), hash(2)}
	for n := range 20 {
		do(t, s, cache.Announce{InfoHash: hashes[n%3], PeerID: peerID(n), IPv4: v4(n), Port: 1, Seeder: n%2 == 0})
	}
	want, _ := s.Scrape(context.Background(), hashes, nil)
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(log.String(), "swarm snapshot written") || !strings.Contains(log.String(), "peers=20") {
		t.Fatalf("Close logged:\n%s", log)
	}
	if _, err := os.Stat(file + ".tmp"); !os.IsNotExist(err) {
		t.Fatalf("the temporary file is still there: %v", err)
	}
	if fi, err := os.Stat(file); err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("snapshot file: %v %v", fi, err)
	}
	if err := s.Close(); err != nil {
		t.Fatalf("second Close: %v", err)
	}

	l, log := openFile(t, file, t0.Add(time.Minute))
	if !strings.Contains(log.String(), "swarm snapshot loaded") || !strings.Contains(log.String(), "peers=20") {
		t.Fatalf("Open logged:\n%s", log)
	}
	if len(want) != 3 {
		t.Fatalf("scrape before the restart: %+v", want)
	}
	if got, _ := l.Scrape(context.Background(), hashes, nil); !slices.Equal(got, want) {
		t.Fatalf("after the restart %+v, want %+v", got, want)
	}
	if _, err := os.Stat(file); !os.IsNotExist(err) {
		t.Fatalf("a loaded snapshot is removed, so a later crash cannot bring it back: %v", err)
	}

	// A failed write leaves the previous snapshot as it was.
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	before, _ := os.ReadFile(file)
	f, _ := openFile(t, file, t0.Add(2*time.Minute))
	os.WriteFile(file, before, 0o600)
	if err := os.Mkdir(file+".tmp", 0o700); err != nil {
		t.Fatal(err)
	}
	if err := f.Close(); err == nil || !strings.Contains(err.Error(), "snapshot_file") {
		t.Fatalf("Close with an unwritable temporary file: %v", err)
	}
	if after, _ := os.ReadFile(file); !bytes.Equal(after, before) {
		t.Fatal("a failed write changed the snapshot")
	}
}

func TestSnapshotFileCorrupt(t *testing.T) {
	file := filepath.Join(t.TempDir(), "swarms.snap")
	data := smallSnapshot(t)
	data[len(data)/2] ^= 1
	if err := os.WriteFile(file, data, 0o600); err != nil {
		t.Fatal(err)
	}
	s, log := openFile(t, file, t0)
	if !s.empty() || !strings.Contains(log.String(), "level=WARN msg=\"swarm snapshot ignored; starting with no swarms\"") || !strings.Contains(log.String(), "checksum") {
		t.Fatalf("a corrupt snapshot: empty %v, log:\n%s", s.empty(), log)
	}
	if kept, err := os.ReadFile(file + ".rejected"); err != nil || !bytes.Equal(kept, data) {
		t.Fatalf("the rejected snapshot is not kept aside: %v", err)
	}
	// The store serves as usual and writes a good snapshot on Close.
	do(t, s, cache.Announce{InfoHash: hash(1), PeerID: peerID(1), IPv4: v4(1), Port: 1})
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	l, _ := openFile(t, file, t0)
	if l.empty() {
		t.Fatal("the snapshot written after a rejected one did not load")
	}
}

func TestSnapshotFileConfig(t *testing.T) {
	dir := t.TempDir()
	opts := cache.Options{PeerLifetime: lifetime}
	for _, tc := range []struct{ file, err string }{
		{filepath.Join(dir, "missing", "s.snap"), "snapshot_file: the directory " + filepath.Join(dir, "missing") + " does not exist"},
		{dir, "snapshot_file: " + dir + " is not a regular file"},
	} {
		raw, _ := json.Marshal(map[string]string{"snapshot_file": tc.file})
		if _, err := cache.Open("memory", raw, opts); err == nil || err.Error() != tc.err {
			t.Errorf("snapshot_file %q: %v, want %q", tc.file, err, tc.err)
		}
	}
	for in, want := range map[string]string{
		`{"snapshot_file": 1}`:         `snapshot_file: must be a file path string ("" for none)`,
		`{"snapshot_file": "a\u0000"}`: "snapshot_file: must not contain a NUL byte",
	} {
		if _, err := parseConfig(json.RawMessage(in)); err == nil || err.Error() != want {
			t.Errorf("%s: %v, want %q", in, err, want)
		}
	}
	c, err := parseConfig(json.RawMessage(`{"snapshot_file": "/var/lib/chihaya/swarms"}`))
	if err != nil || c.snapshotFile != "/var/lib/chihaya/swarms" {
		t.Errorf("snapshot_file not read: %+v %v", c, err)
	}
	if c, _ := parseConfig(json.RawMessage(`{"snapshot_file": null}`)); c.snapshotFile != "" {
		t.Errorf("null snapshot_file: %q", c.snapshotFile)
	}
}

// The memory block of config/example.json, the documented defaults, names
// every key of the driver with its default value.
func TestExampleBlockIsTheDefault(t *testing.T) {
	raw := configfile.Default().Cache.Config
	c, err := parseConfig(raw)
	if err != nil || c != defaultConfig() {
		t.Fatalf("example.json's memory block %s reads as %+v, %v; want the defaults", raw, c, err)
	}
	var keys map[string]any
	if err := json.Unmarshal(raw, &keys); err != nil || len(keys) != 4 {
		t.Fatalf("example.json's memory block %s should name shards, reap_interval, snapshot_file and peer_ids", raw)
	}
}

func FuzzReadSnapshot(f *testing.F) {
	s, _ := openAt(f, `{"shards": 1}`, t0)
	do(f, s, cache.Announce{InfoHash: hash(1), PeerID: peerID(1), IPv4: v4(1), IPv6: v6(1), Port: 1, Seeder: true, Event: bittorrent.Completed})
	h := hash(2)
	for n := range 10 {
		do(f, s, cache.Announce{InfoHash: h, UserID: uint32(n % 2), PeerID: peerID(n), IPv6: v6(n), Port: 2, Event: bittorrent.Event(n % 5)})
	}
	small := smallSnapshot(f)
	f.Add(snapshot(f, s), false)
	f.Add(small, false)
	f.Add(small[:len(small)/2], true)
	f.Add(build(snapVersion, t0, 0, 0), false)
	f.Add(build(snapVersion, t0, 1, 1, swarmRec(1, 1), peerRec(snapHas4|snapHas6|snapID, 1, netip.MustParseAddr("::1"))), false)
	f.Add(build(snapVersion, t0, 1, 2, swarmRec(1, 2), peerRec(snapHas4, 1, netip.Addr{}), peerRec(snapHas4, 1, netip.Addr{})), true)
	f.Add(build(1, t0, 1, 1, swarmRec(1, 1), peerV1(snapHas4|snapHas6, 3, 1, 9, netip.MustParseAddr("::1"))), false)
	f.Add([]byte(snapMagic), false)
	f.Fuzz(func(t *testing.T, data []byte, fixSum bool) {
		// fixSum lets the fuzzer past the checksum, to the checks
		// behind it.
		if fixSum {
			data = resum(data)
		}
		s, err := open(config{shards: 2, reapInterval: time.Hour}, cache.Options{PeerLifetime: lifetime, Now: func() time.Time { return t0.Add(time.Minute) }})
		if err != nil {
			t.Fatal(err)
		}
		defer s.Close()
		if err := s.ReadSnapshot(bytes.NewReader(data)); err != nil {
			if !s.empty() {
				t.Fatalf("%v, and swarms were loaded", err)
			}
			return
		}
		// What was loaded is sound and survives another round trip.
		before := state(t, s, 0)
		var buf bytes.Buffer
		if err := s.WriteSnapshot(&buf); err != nil {
			t.Fatal(err)
		}
		l, _ := open(config{shards: 4, reapInterval: time.Hour}, cache.Options{PeerLifetime: lifetime, Now: s.now})
		defer l.Close()
		if err := l.ReadSnapshot(&buf); err != nil {
			t.Fatalf("a loaded snapshot, written again, does not load: %v", err)
		}
		after := state(t, l, 0)
		if len(after) != len(before) {
			t.Fatalf("%d swarms, then %d", len(before), len(after))
		}
	})
}
