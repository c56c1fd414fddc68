package main

import (
	"encoding/hex"
	"math"
	"math/rand/v2"
	"strings"
	"testing"
)

func mustMix(t *testing.T, s string) eventMix {
	t.Helper()
	m, err := parseMix(s)
	if err != nil {
		t.Fatal(err)
	}
	return m
}

func TestSeederShareIsExact(t *testing.T) {
	m := newModel(10000, 20, 0.3, 50, mustMix(t, "90/5/3/2"), 0, 1)
	total := 0
	for tr := range m.torrents {
		n := 0
		for p := range m.peers {
			if m.isSeeder(tr*m.peers + p) {
				n++
			}
		}
		// Seeders are spread evenly, so each torrent of 20 peers
		// has exactly 6.
		if n != 6 {
			t.Fatalf("torrent %d has %d seeders, want 6", tr, n)
		}
		total += n
	}
	if total != 60000 {
		t.Fatalf("%d seeders, want 60000", total)
	}

	for _, share := range []float64{0, 0.25, 0.333, 1} {
		m := newModel(97, 7, share, 50, mustMix(t, "90/5/3/2"), 0, 1)
		n := 0
		for g := range m.total() {
			if m.isSeeder(g) {
				n++
				if m.left(g, evNone) != 0 {
					t.Fatalf("seeder %d reports left > 0", g)
				}
			} else if m.left(g, evNone) == 0 || m.left(g, evCompleted) != 0 {
				t.Fatalf("leecher %d: left %d, on completed %d", g, m.left(g, evNone), m.left(g, evCompleted))
			}
		}
		if want := share * float64(m.total()); math.Abs(float64(n)-want) > 1 {
			t.Errorf("share %v: %d seeders of %d, want %.1f", share, n, m.total(), want)
		}
	}
}

func TestEventMixDraws(t *testing.T) {
	mix := mustMix(t, "90/5/3/2")
	r := rand.New(rand.NewPCG(5, 6))
	var counts [numEvents]int
	const n = 1_000_000
	for range n {
		counts[mix.draw(r)]++
	}
	want := [numEvents]float64{evNone: 0.90, evStarted: 0.05, evStopped: 0.03, evCompleted: 0.02}
	for e, w := range want {
		got := float64(counts[e]) / n
		if math.Abs(got-w) > 0.002 {
			t.Errorf("%v: %.4f of draws, want %.2f", event(e), got, w)
		}
		if mix.share(event(e)) != w {
			t.Errorf("share(%v) = %v, want %v", event(e), mix.share(event(e)), w)
		}
	}
}

func TestParseMix(t *testing.T) {
	for _, bad := range []string{"", "90/5/3", "90/5/3/3", "a/b/c/d", "-10/60/30/20", "90/5/3/2/0"} {
		if _, err := parseMix(bad); err == nil {
			t.Errorf("parseMix(%q) accepted", bad)
		}
	}
	m := mustMix(t, "100/0/0/0")
	r := rand.New(rand.NewPCG(1, 1))
	for range 1000 {
		if e := m.draw(r); e != evNone {
			t.Fatalf("100/0/0/0 drew %v", e)
		}
	}
	if m := mustMix(t, "97.5/0.5/1.5/0.5"); m.share(evStopped) != 0.015 {
		t.Errorf("fractional percentages: stopped share %v", m.share(evStopped))
	}
}

func TestStoppedPeerReentersWithStarted(t *testing.T) {
	// One peer: every announce is its own, in order.
	m := newModel(1, 1, 0, 50, mustMix(t, "70/0/30/0"), 0, 1)
	s := newPeerSet(m, 0, 1, 9)
	prev := evNone
	var stopped, restarted int
	for range 10000 {
		g, e, ok := s.nextAnnounce()
		if !ok || g != 0 {
			t.Fatalf("nextAnnounce = %d, %v, %v", g, e, ok)
		}
		if _, _, ok := s.nextAnnounce(); ok {
			t.Fatal("the only peer was handed out twice while in flight")
		}
		if prev == evStopped && e != evStarted {
			t.Fatalf("after stopped came %v, want started", e)
		}
		if e == evStopped {
			stopped++
		}
		if e == evStarted {
			restarted++
		}
		s.release(g)
		prev = e
	}
	// Started only ever follows stopped here, since the mix has none.
	if stopped < 2000 || restarted < stopped-1 || restarted > stopped {
		t.Errorf("%d stopped, %d started", stopped, restarted)
	}
}

func TestPeerSetsPartitionThePeers(t *testing.T) {
	for _, c := range []struct {
		torrents, peers, owners int
		zipf                    float64
	}{
		{50, 5, 16, 0},
		{50, 5, 64, 1.1},
		{10, 20, 3, 0.8},
		{3, 2, 8, 0}, // more owners than peers
	} {
		m := newModel(c.torrents, c.peers, 0.3, 50, mustMix(t, "90/5/3/2"), c.zipf, 1)
		seen := make([]int, m.total())
		for o := range c.owners {
			s := newPeerSet(m, o, c.owners, 1)
			for {
				g, ok := s.nextPrefill()
				if !ok {
					break
				}
				seen[g]++
				s.release(g)
			}
			for range 200 {
				g, _, ok := s.nextAnnounce()
				if !ok {
					if s.n == 0 {
						break
					}
					t.Fatalf("%+v: owner %d of %d peers found none free", c, o, s.n)
				}
				if g%c.owners != o {
					t.Fatalf("%+v: owner %d picked peer %d", c, o, g)
				}
				s.release(g)
			}
		}
		for g, n := range seen {
			if n != 1 {
				t.Fatalf("%+v: peer %d prefilled %d times", c, g, n)
			}
		}
	}
}

func TestZipfPopularity(t *testing.T) {
	m := newModel(1000, 20, 0.3, 50, mustMix(t, "90/5/3/2"), 1, 1)
	r := rand.New(rand.NewPCG(7, 8))
	counts := make([]int, m.torrents)
	for range 500000 {
		counts[m.pickTorrent(r)]++
	}
	// With exponent 1 the most popular torrent is drawn ten times as
	// often as the tenth.
	if ratio := float64(counts[0]) / float64(counts[9]); ratio < 8.5 || ratio > 11.5 {
		t.Errorf("rank 1 / rank 10 = %.2f, want about 10", ratio)
	}
	uniform := newModel(1000, 20, 0.3, 50, mustMix(t, "90/5/3/2"), 0, 1)
	clear(counts)
	for range 500000 {
		counts[uniform.pickTorrent(r)]++
	}
	for tr, n := range counts {
		if n < 350 || n > 650 {
			t.Fatalf("uniform: torrent %d drawn %d times, want about 500", tr, n)
		}
	}
}

func TestPeerIdentitiesAreStableAndDistinct(t *testing.T) {
	m := newModel(100, 20, 0.3, 50, mustMix(t, "90/5/3/2"), 0, 1)
	ids := map[[20]byte]bool{}
	for g := range m.total() {
		id := m.peerID(g)
		if ids[id] {
			t.Fatalf("peer id %q repeats", id)
		}
		ids[id] = true
		if id != m.peerID(g) || m.port(g) == 0 {
			t.Fatal("unstable id or zero port")
		}
	}
	hashes := map[[20]byte]bool{}
	for _, h := range m.hashes {
		hashes[h] = true
	}
	if len(hashes) != m.torrents {
		t.Fatal("info hashes repeat")
	}
	other := newModel(100, 20, 0.3, 50, mustMix(t, "90/5/3/2"), 0, 2)
	if other.hashes[0] == m.hashes[0] {
		t.Fatal("another seed must give other torrents")
	}
}

func TestLoopbackAddresses(t *testing.T) {
	seen := map[string]bool{}
	for _, a := range []struct{ first, n int }{{1, maxOwners}, {2, 300000}} {
		for i := 0; i < a.n; i += 7 {
			addr := loopbackAddr(byte(a.first), i)
			b := addr.As4()
			if !addr.IsLoopback() || b[2] == 0 || b[3] == 0 || b[2] == 255 || b[3] == 255 {
				t.Fatalf("loopbackAddr(%d, %d) = %v", a.first, i, addr)
			}
			if seen[addr.String()] {
				t.Fatalf("loopbackAddr(%d, %d) = %v repeats", a.first, i, addr)
			}
			seen[addr.String()] = true
		}
	}
	if last := peerAddr(maxPeers - 1).As4(); last[1] != 253 {
		t.Errorf("the last peer's address is %v", last)
	}
}

// The listed info hashes are the ones the runs announce to, so a private
// tracker that registers them accepts every request of a run with the same
// model flags.
func TestListInfoHashes(t *testing.T) {
	var out, errOut strings.Builder
	if code := mainExit([]string{"-list-info-hashes", "-torrents", "4", "-seed", "9"}, &out, &errOut); code != 0 {
		t.Fatalf("exit %d: %s", code, errOut.String())
	}
	lines := strings.Fields(out.String())
	m := newModel(4, 20, 0.3, 50, mustMix(t, "90/5/3/2"), 0, 9)
	if len(lines) != len(m.hashes) {
		t.Fatalf("%d lines, want %d: %q", len(lines), len(m.hashes), out.String())
	}
	seen := map[string]bool{}
	for i, l := range lines {
		if l != hex.EncodeToString(m.hashes[i][:]) {
			t.Errorf("line %d is %s, want the hash of torrent %d", i, l, i)
		}
		seen[l] = true
	}
	if len(seen) != 4 {
		t.Errorf("hashes repeat: %q", lines)
	}
}
