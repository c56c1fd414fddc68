package memory

import (
	"context"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"math/rand/v2"
	"net/netip"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/chihaya/chihaya/bittorrent"
	"github.com/chihaya/chihaya/cache"
	"github.com/chihaya/chihaya/cache/cachetest"
)

func TestSuite(t *testing.T) {
	// Few shards, so swarms of one subtest share locks as in a busy
	// tracker. The suite tells peers apart by their ids, so it needs them
	// kept; TestPeerIDsOff checks the rest without.
	cachetest.Run(t, func(t *testing.T, opts cache.Options) cache.Store {
		s, err := cache.Open("memory", json.RawMessage(`{"shards": 4, "peer_ids": true}`), opts)
		if err != nil {
			t.Fatal(err)
		}
		return s
	})
}

// TestPeerIDsOff: without peer_ids, answers carry zero ids and everything
// else as with them, and a record carries nothing but the endpoint.
func TestPeerIDsOff(t *testing.T) {
	with, _ := openTest(t, `{"shards": 1, "peer_ids": true}`)
	without, _ := openTest(t, `{"shards": 1}`)
	h := hash(1)
	for n := range 40 {
		a := cache.Announce{InfoHash: h, PeerID: peerID(n), Port: uint16(1000 + n), Seeder: n%3 == 0, NumWant: 100}
		if n%4 != 1 {
			a.IPv4 = netip.AddrFrom4([4]byte{10, 0, 0, byte(n)})
		}
		if n%4 != 0 {
			a.IPv6 = netip.AddrFrom16([16]byte{0x20, 0x01, 15: byte(n)})
		}
		rw, ro := do(t, with, a), do(t, without, a)
		if len(ro.Peers4.IDs)+len(ro.Peers6.IDs) != 0 {
			t.Fatalf("peer %d got peer ids %x and %x from a store that keeps none", n, ro.Peers4.IDs, ro.Peers6.IDs)
		}
		if len(rw.Peers4.IDs) != rw.Peers4.Len() || len(rw.Peers6.IDs) != rw.Peers6.Len() {
			t.Fatalf("peer %d got %d and %d ids for %d and %d peers", n, len(rw.Peers4.IDs), len(rw.Peers6.IDs), rw.Peers4.Len(), rw.Peers6.Len())
		}
		rw.Peers4.IDs, rw.Peers6.IDs = nil, nil
		if !sameResult(rw, ro) {
			t.Fatalf("peer %d: with ids %+v, without %+v", n, rw, ro)
		}
	}
	sw := without.swarm(h)
	if sw.v4.stride != 19 || sw.v6.stride != 31 {
		t.Errorf("records of %d and %d bytes, want 19 and 31", sw.v4.stride, sw.v6.stride)
	}
	if err := sw.check(); err != nil {
		t.Fatal(err)
	}
}

func TestConfig(t *testing.T) {
	def := defaultConfig()
	tests := []struct {
		in   string
		want config
		err  string
	}{
		{in: ``, want: def},
		{in: `null`, want: def},
		{in: ` {} `, want: def},
		{in: `{"shards": 16, "reap_interval": "30s"}`, want: config{shards: 16, reapInterval: 30 * time.Second, peerIDs: def.peerIDs}},
		{in: `{"shards": 1}`, want: config{shards: 1, reapInterval: def.reapInterval, peerIDs: def.peerIDs}},
		{in: `{"shards": 65536}`, want: config{shards: 65536, reapInterval: def.reapInterval, peerIDs: def.peerIDs}},
		{in: `{"peer_ids": false}`, want: config{shards: def.shards, reapInterval: def.reapInterval}},
		{in: `{"peer_ids": true}`, want: config{shards: def.shards, reapInterval: def.reapInterval, peerIDs: true}},
		{in: `{"peer_ids": 1}`, err: "peer_ids: must be true or false"},
		{in: `{"shards": null}`, want: def},
		{in: `{"shards": 0}`, err: "shards: must be a power of two between 1 and 65536"},
		{in: `{"shards": 3}`, err: "shards: must be a power of two between 1 and 65536"},
		{in: `{"shards": 131072}`, err: "shards: must be a power of two between 1 and 65536"},
		{in: `{"shards": -2}`, err: "shards: must be a power of two between 1 and 65536"},
		{in: `{"shards": "16"}`, err: "shards: must be a power of two between 1 and 65536"},
		{in: `{"reap_interval": "x"}`, err: `reap_interval: time: invalid duration "x"`},
		{in: `{"reap_interval": 60}`, err: `reap_interval: must be a duration string such as "1m"`},
		{in: `{"reap_interval": "0s"}`, err: "reap_interval: must be positive"},
		{in: `{"reap_interval": "-1m"}`, err: "reap_interval: must be positive"},
		{in: `{"foo": 1}`, err: `unknown key "foo"`},
		{in: `[]`, err: "the configuration must be a JSON object, not array"},
		{in: `{"shards": 16} {}`, err: "unexpected data after the configuration object"},
		{in: `{"shards": }`, err: "invalid JSON at byte 12: invalid character '}' looking for beginning of value"},
	}
	for _, tc := range tests {
		t.Run(tc.in, func(t *testing.T) {
			got, err := parseConfig(json.RawMessage(tc.in))
			if tc.err != "" {
				if err == nil || err.Error() != tc.err {
					t.Fatalf("error %v, want %q", err, tc.err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if got != tc.want {
				t.Errorf("got %+v, want %+v", got, tc.want)
			}
		})
	}
}

func TestOpen(t *testing.T) {
	if !slices.Contains(cache.Drivers(), "memory") {
		t.Fatalf("memory is not among the registered drivers %v", cache.Drivers())
	}
	s, err := cache.Open("memory", nil, cache.Options{PeerLifetime: time.Minute})
	if err != nil {
		t.Fatal(err)
	}
	if len(s.(*store).shards) != 1024 {
		t.Errorf("default store has %d shards, want 1024", len(s.(*store).shards))
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	if err := s.Close(); err != nil {
		t.Fatalf("second Close: %v", err)
	}

	if _, err := cache.Open("memory", json.RawMessage(`{"shards": 3}`), cache.Options{PeerLifetime: time.Minute}); err == nil {
		t.Error("a bad config opened a store")
	}
	if _, err := cache.Open("memory", nil, cache.Options{}); err == nil {
		t.Error("a zero peer lifetime opened a store")
	}
}

// fakeClock is a settable clock for tests that reach inside the store.
type fakeClock struct {
	mu  sync.Mutex
	now time.Time
}

func (c *fakeClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

func (c *fakeClock) Advance(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.now = c.now.Add(d)
}

const lifetime = 30 * time.Minute

func openTest(t testing.TB, raw string) (*store, *fakeClock) {
	t.Helper()
	clk := &fakeClock{now: time.Date(2024, 1, 1, 0, 0, 0, 0, time.UTC)}
	s, err := driver{}.Open(json.RawMessage(raw), cache.Options{PeerLifetime: lifetime, Now: clk.Now})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return s.(*store), clk
}

func hash(n int) bittorrent.InfoHash {
	var h bittorrent.InfoHash
	binary.BigEndian.PutUint64(h[:], rand.Uint64())
	binary.BigEndian.PutUint32(h[16:], uint32(n))
	return h
}

func peerID(n int) bittorrent.PeerID {
	var p bittorrent.PeerID
	binary.BigEndian.PutUint32(p[16:], uint32(n))
	return p
}

func announce(t testing.TB, s *store, h bittorrent.InfoHash, n int, ev bittorrent.Event) *cache.Result {
	t.Helper()
	a := cache.Announce{
		InfoHash: h,
		PeerID:   peerID(n),
		IPv4:     netip.AddrFrom4([4]byte{10, 0, byte(n >> 8), byte(n)}),
		Port:     6881,
		Event:    ev,
		NumWant:  50,
	}
	var r cache.Result
	if err := s.Announce(context.Background(), &a, &r); err != nil {
		t.Fatal(err)
	}
	return &r
}

func (st *store) swarm(h bittorrent.InfoHash) *swarm {
	sh := st.shard(h)
	sh.mu.Lock()
	defer sh.mu.Unlock()
	return sh.swarms.Find(&h)
}

func TestReapDeletesIdleSwarms(t *testing.T) {
	s, clk := openTest(t, `{"shards": 2}`)
	idle, busy, stopped := hash(1), hash(2), hash(3)
	announce(t, s, idle, 1, bittorrent.None)
	announce(t, s, busy, 1, bittorrent.None)
	announce(t, s, stopped, 1, bittorrent.Completed)
	announce(t, s, stopped, 1, bittorrent.Stopped)

	// An empty swarm stays for a lifetime after its last announce.
	s.reap(clk.Now())
	if s.swarm(stopped) == nil {
		t.Fatal("an empty swarm was reaped before its lifetime passed")
	}

	clk.Advance(lifetime / 2)
	announce(t, s, busy, 1, bittorrent.None)
	clk.Advance(lifetime/2 + 2*time.Second)
	s.reap(clk.Now())
	if s.swarm(idle) != nil {
		t.Error("a swarm whose peers all expired survived the reaper")
	}
	if s.swarm(stopped) != nil {
		t.Error("an empty swarm survived the reaper a lifetime after its last announce")
	}
	if sw := s.swarm(busy); sw == nil || sw.peers != 1 {
		t.Error("the reaper removed a live peer")
	}
}

func TestReaperRuns(t *testing.T) {
	s, clk := openTest(t, `{"shards": 2, "reap_interval": "1ms"}`)
	h := hash(1)
	announce(t, s, h, 1, bittorrent.None)
	clk.Advance(lifetime + 2*time.Second)
	for deadline := time.Now().Add(5 * time.Second); s.swarm(h) != nil; time.Sleep(time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatal("the background reaper did not remove an expired swarm")
		}
	}
}

func TestCompact(t *testing.T) {
	s, clk := openTest(t, `{"shards": 1}`)
	h := hash(1)
	for n := range 1000 {
		announce(t, s, h, n, bittorrent.None)
	}
	clk.Advance(lifetime / 2)
	for n := range 10 {
		announce(t, s, h, n, bittorrent.None)
	}
	clk.Advance(lifetime/2 + 2*time.Second)
	s.reap(clk.Now())
	sw := s.swarm(h)
	if sw.v4.n != 10 || cap(sw.v4.b) > 32*int(sw.v4.stride) || sw.v4.index != nil {
		t.Errorf("after shrinking to 10 peers: len %d, capacity %d records, indexed %v", sw.v4.n, cap(sw.v4.b)/int(sw.v4.stride), sw.v4.index != nil)
	}
	if err := sw.check(); err != nil {
		t.Fatal(err)
	}
}

// check verifies a swarm's invariants: the partitions, the indexes, the
// dual-stack links and the counts.
func (s *swarm) check() error {
	peers, seeders := 0, 0
	for _, fam := range []struct {
		name      string
		l, other  *list
		countDual bool
	}{{"IPv4", &s.v4, &s.v6, true}, {"IPv6", &s.v6, &s.v4, false}} {
		l := fam.l
		if len(l.b) != int(l.n)*int(l.stride) {
			return fmt.Errorf("%s: %d bytes for %d records of %d", fam.name, len(l.b), l.n, l.stride)
		}
		for i := range int(l.n) {
			f := l.flags(i)
			if l.downloads(i) != (i < int(l.down)) {
				return fmt.Errorf("%s slot %d (flags %04b) on the wrong side of the border %d", fam.name, i, f, l.down)
			}
			if j := l.find(l.hash(i)); j != i {
				return fmt.Errorf("%s record in slot %d is found in slot %d", fam.name, i, j)
			}
			j := fam.other.find(l.hash(i))
			if (j >= 0) != (f&dual != 0) {
				return fmt.Errorf("%s slot %d: dual flag %v, record in the other family %v", fam.name, i, f&dual != 0, j >= 0)
			}
			if j >= 0 && fam.other.flags(j) != f {
				return fmt.Errorf("%s slot %d: flags %04b, the other family's %04b", fam.name, i, f, fam.other.flags(j))
			}
			if j < 0 || fam.countDual {
				peers++
				if f&seeder != 0 {
					seeders++
				}
			}
		}
		if l.index == nil && l.n > indexAbove {
			return fmt.Errorf("%s: no index for %d records", fam.name, l.n)
		}
		if l.index != nil && l.index.used != int(l.n) {
			return fmt.Errorf("%s: index has %d entries for %d records", fam.name, l.index.used, l.n)
		}
	}
	if peers != int(s.peers) || seeders != int(s.seeders) {
		return fmt.Errorf("counts %d peers, %d seeders; want %d, %d", s.peers, s.seeders, peers, seeders)
	}
	return nil
}

// TestInvariants drives one swarm through random announces over either
// family or both, expiries and reaps, and checks its structure after each
// step against a plain model: the partitions, indexes and dual-stack links,
// the counts, the totals, what a seeder is handed.
func TestInvariants(t *testing.T) {
	for _, cfg := range []string{`{"shards": 1}`, `{"shards": 1, "peer_ids": false}`} {
		t.Run(cfg, func(t *testing.T) { invariants(t, cfg) })
	}
}

func invariants(t *testing.T, cfg string) {
	s, clk := openTest(t, cfg)
	h := hash(1)
	rng := rand.New(rand.NewPCG(1, 2))
	type state struct {
		seeder, paused bool
		up             uint64
		// seen4 and seen6 are the endpoints' last announces; zero: none.
		seen4, seen6 time.Time
	}
	model := map[int]*state{}
	for step := range 30000 {
		// Enough peers for both lists to be indexed, few enough that
		// they come back often.
		n := rng.IntN(90)
		a := cache.Announce{
			InfoHash: h,
			UserID:   uint32(n % 3),
			PeerID:   peerID(n / 3),
			Port:     6881,
			Seeder:   rng.IntN(2) == 0,
			Event:    bittorrent.Event(rng.IntN(5)),
			NumWant:  rng.IntN(30),
		}
		if rng.IntN(4) == 0 {
			a.Uploaded = uint64(rng.IntN(1000))
		}
		fam := rng.IntN(3)
		if fam != 1 {
			a.IPv4 = netip.AddrFrom4([4]byte{10, 0, 0, byte(n)})
		}
		if fam != 0 {
			a.IPv6 = netip.AddrFrom16([16]byte{0x20, 0x01, 15: byte(n)})
		}
		var r cache.Result
		if err := s.Announce(context.Background(), &a, &r); err != nil {
			t.Fatal(err)
		}
		if m := model[n]; (m != nil) != r.Known || (m != nil && m.up != r.PrevUploaded) {
			t.Fatalf("step %d: peer %d known %v with totals %d, model %+v", step, n, r.Known, r.PrevUploaded, m)
		}
		if a.Event == bittorrent.Stopped {
			delete(model, n)
		} else {
			m := model[n]
			if m == nil {
				m = &state{}
				model[n] = m
			}
			m.seeder, m.paused, m.up = a.Seeder, a.Event == bittorrent.Paused, a.Uploaded
			if a.IPv4.IsValid() {
				m.seen4 = clk.Now()
			}
			if a.IPv6.IsValid() {
				m.seen6 = clk.Now()
			}
		}
		if sw := s.swarm(h); sw != nil {
			if err := sw.check(); err != nil {
				t.Fatalf("step %d: %v", step, err)
			}
		}
		complete := 0
		for _, st := range model {
			if st.seeder {
				complete++
			}
		}
		if int(r.Complete) != complete || int(r.Incomplete) != len(model)-complete {
			t.Fatalf("step %d: counts %d/%d, model %d/%d", step, r.Complete, r.Incomplete, complete, len(model)-complete)
		}
		if a.Seeder || a.Event == bittorrent.Paused {
			var got []netip.AddrPort
			for i := range r.Peers4.Len() {
				got = append(got, r.Peers4.At(i))
			}
			for i := range r.Peers6.Len() {
				got = append(got, r.Peers6.At(i))
			}
			for _, p := range got {
				a := p.Addr().As16()
				pn := int(a[15])
				if st := model[pn]; st == nil || st.seeder || st.paused {
					t.Fatalf("step %d: a seeder got non-downloading or unknown peer %d", step, pn)
				}
			}
		}
		switch rng.IntN(100) {
		case 0:
			clk.Advance(time.Duration(rng.IntN(int(lifetime/time.Second))) * time.Second)
			for pn, st := range model {
				if !st.seen4.IsZero() && clk.Now().Sub(st.seen4) > lifetime {
					st.seen4 = time.Time{}
				}
				if !st.seen6.IsZero() && clk.Now().Sub(st.seen6) > lifetime {
					st.seen6 = time.Time{}
				}
				if st.seen4.IsZero() && st.seen6.IsZero() {
					delete(model, pn)
				}
			}
		case 1:
			s.reap(clk.Now())
		}
	}
}

func TestConcurrent(t *testing.T) {
	s, clk := openTest(t, `{"shards": 4}`)
	hashes := make([]bittorrent.InfoHash, 16)
	for i := range hashes {
		hashes[i] = hash(i)
	}
	var wg sync.WaitGroup
	for w := range 8 {
		wg.Go(func() {
			rng := rand.New(rand.NewPCG(uint64(w), 0))
			var r cache.Result
			var scrapes []bittorrent.Scrape
			for range 3000 {
				a := cache.Announce{
					InfoHash: hashes[rng.IntN(len(hashes))],
					PeerID:   peerID(rng.IntN(64)),
					IPv4:     netip.AddrFrom4([4]byte{10, 0, 0, byte(rng.IntN(64))}),
					IPv6:     netip.IPv6Loopback(),
					Port:     6881,
					Seeder:   rng.IntN(3) == 0,
					Event:    bittorrent.Event(rng.IntN(5)),
					NumWant:  20,
				}
				r.Peers4.Reset()
				r.Peers6.Reset()
				if err := s.Announce(context.Background(), &a, &r); err != nil {
					t.Error(err)
					return
				}
				scrapes, _ = s.Scrape(context.Background(), hashes[:4], scrapes[:0])
			}
		})
	}
	wg.Go(func() {
		for range 50 {
			clk.Advance(lifetime / 10)
			s.reap(clk.Now())
		}
	})
	wg.Wait()
	for _, h := range hashes {
		if sw := s.swarm(h); sw != nil {
			if err := sw.check(); err != nil {
				t.Error(err)
			}
		}
	}
}

func TestAnnounceExistingPeerAllocatesNothing(t *testing.T) {
	s, _ := openTest(t, `{}`)
	h := hash(1)
	for n := range 100 {
		announce(t, s, h, n, bittorrent.None)
	}
	a := cache.Announce{
		InfoHash: h,
		PeerID:   peerID(7),
		IPv4:     netip.AddrFrom4([4]byte{10, 0, 0, 7}),
		IPv6:     netip.MustParseAddr("2001:db8::7"),
		Port:     6881,
		NumWant:  50,
	}
	var r cache.Result
	r.Peers4.Compact = make([]byte, 0, 50*r.Peers4.Size())
	r.Peers6.Compact = make([]byte, 0, 50*r.Peers6.Size())
	allocs := testing.AllocsPerRun(1000, func() {
		r.Peers4.Reset()
		r.Peers6.Reset()
		if err := s.Announce(context.Background(), &a, &r); err != nil {
			t.Fatal(err)
		}
	})
	if allocs != 0 {
		t.Errorf("Announce of an existing peer allocates %v times", allocs)
	}
	if r.Peers4.Len() != 50 {
		t.Errorf("got %d IPv4 peers, want 50", r.Peers4.Len())
	}
}

func TestWalkListsEverySwarm(t *testing.T) {
	now := time.Unix(1_700_000_000, 0)
	clock := func() time.Time { return now }
	st, err := cache.Open("memory", json.RawMessage(`{"shards": 4}`), cache.Options{PeerLifetime: time.Hour, Now: clock})
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	want := map[bittorrent.InfoHash]bittorrent.Scrape{}
	for i := range 50 {
		h := bittorrent.InfoHash{byte(i), 7}
		for p := range i%3 + 1 {
			a := cache.Announce{InfoHash: h, IPv4: netip.AddrFrom4([4]byte{10, 0, byte(i), byte(p)}), Port: 1, Seeder: p == 0}
			a.PeerID[0] = byte(p)
			if err := st.Announce(context.Background(), &a, &cache.Result{}); err != nil {
				t.Fatal(err)
			}
		}
		want[h] = bittorrent.Scrape{InfoHash: h, Complete: 1, Incomplete: uint32(i % 3)}
	}
	got := map[bittorrent.InfoHash]bittorrent.Scrape{}
	err = st.(cache.Walker).Walk(context.Background(), func(s bittorrent.Scrape) error {
		if _, dup := got[s.InfoHash]; dup {
			t.Errorf("swarm %v walked twice", s.InfoHash)
		}
		got[s.InfoHash] = s
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != len(want) {
		t.Fatalf("walked %d swarms, want %d", len(got), len(want))
	}
	for h, w := range want {
		if got[h] != w {
			t.Errorf("swarm %v: %+v, want %+v", h, got[h], w)
		}
	}
	stop := errors.New("stop")
	n := 0
	if err := st.(cache.Walker).Walk(context.Background(), func(bittorrent.Scrape) error { n++; return stop }); err != stop || n != 1 {
		t.Fatalf("Walk did not stop at fn's error: %v after %d", err, n)
	}
	// Expired swarms are not listed.
	now = now.Add(3 * time.Hour)
	n = 0
	st.(cache.Walker).Walk(context.Background(), func(bittorrent.Scrape) error { n++; return nil })
	if n != 0 {
		t.Fatalf("walked %d expired swarms", n)
	}
}

// Warm is a hint only: it creates no swarm, changes no count, and may run
// beside announces that create and delete the swarms it reads (the race
// detector checks that it holds the locks it must).
func TestWarmIsOnlyAHint(t *testing.T) {
	s, _ := openTest(t, `{"shards": 4}`)
	known, unknown := hash(1), hash(2)
	for n := range 30 {
		announce(t, s, known, n, bittorrent.None)
	}
	s.Warm([]bittorrent.InfoHash{known, unknown})
	got, err := s.Scrape(context.Background(), []bittorrent.InfoHash{known, unknown}, nil)
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != 1 || got[0].InfoHash != known || got[0].Incomplete != 30 {
		t.Fatalf("after Warm, scrape = %+v; want only the known swarm, its 30 peers unchanged", got)
	}

	// More hashes than Warm takes in one group, so that it goes round
	// its groups while the swarms come and go.
	var churn []bittorrent.InfoHash
	for i := range 2*warmGroup + 5 {
		churn = append(churn, hash(3+i%7))
	}
	done := make(chan struct{})
	go func() {
		defer close(done)
		for range 2000 {
			s.Warm(churn)
		}
	}()
	for i := range 2000 {
		h := churn[i%len(churn)]
		announce(t, s, h, i, bittorrent.Started)
		announce(t, s, h, i, bittorrent.Stopped)
	}
	<-done
}

// With no clock of its own given, the store keeps one from the system's:
// peers still expire once their lifetime has passed, the reaper aside.
func TestSystemClockExpiresPeers(t *testing.T) {
	s, err := driver{}.Open(json.RawMessage(`{"reap_interval": "1h"}`), cache.Options{PeerLifetime: time.Second})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	st := s.(*store)
	h := hash(1)
	announce(t, st, h, 1, bittorrent.Started)
	if r := announce(t, st, h, 2, bittorrent.Started); r.Incomplete != 2 {
		t.Fatalf("second peer sees %d leechers, want 2", r.Incomplete)
	}
	deadline := time.Now().Add(10 * time.Second)
	for {
		got, err := st.Scrape(context.Background(), []bittorrent.InfoHash{h}, nil)
		if err != nil {
			t.Fatal(err)
		}
		if len(got) == 0 || got[0].Incomplete == 0 {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("peers of a 1 s lifetime still counted after 10 s: %+v", got)
		}
		time.Sleep(100 * time.Millisecond)
	}
}
