package tracker

import (
	"fmt"
	"math/rand/v2"
	"net/netip"
	"strings"
	"testing"
	"time"
	"unsafe"

	"github.com/chihaya/chihaya/bittorrent"
	"github.com/chihaya/chihaya/storage"
)

// liveFixture drives a liveTable directly, one torrent.
type liveFixture struct {
	t       *testing.T
	l       liveTable
	now     time.Time
	counted map[uint32]int32
}

func newLiveFixture(t *testing.T) *liveFixture {
	f := &liveFixture{t: t, now: time.Unix(1_700_000_000, 0), counted: map[uint32]int32{}}
	f.l.init(func(storage.PeerRow) {})
	return f
}

func livePeerID(n int) bittorrent.PeerID {
	var id bittorrent.PeerID
	copy(id[:], fmt.Sprintf("-TR4000-%012d", n))
	return id
}

// announce sends an announce of session (user, peer n) on the torrent and
// returns whether it ended one.
func (f *liveFixture) announce(torrent, user uint32, n int, ev bittorrent.Event, agent string) storage.PeerRow {
	f.t.Helper()
	a := liveAnnounce{
		torrent: torrent, user: user, peer: livePeerID(n), now: f.now, lifetime: time.Hour,
		event: ev, stopped: ev == bittorrent.Stopped, left: 1,
		addr: netip.AddrFrom4([4]byte{10, 0, byte(n >> 8), byte(n)}), port: 6881, userAgent: agent,
	}
	var last storage.PeerRow
	f.l.update(&a, &last, func(u uint32, s, l int32) { f.counted[u] += s + l })
	return last
}

func (f *liveFixture) swarm(torrent uint32) *liveSwarm {
	return f.l.shard(torrent).swarms[torrent]
}

// check verifies that every entry of the swarm is found where it lies, and
// that the index, when there is one, holds exactly the swarm's keys.
func (f *liveFixture) check(torrent uint32, want map[liveKey]bool) {
	f.t.Helper()
	sw := f.swarm(torrent)
	if len(want) == 0 {
		if sw != nil {
			f.t.Fatalf("empty swarm still held with %d entries", len(sw.peers))
		}
		return
	}
	if len(sw.peers) != len(want) {
		f.t.Fatalf("swarm holds %d entries, want %d", len(sw.peers), len(want))
	}
	for j := range sw.peers {
		k := sw.peers[j].key
		if !want[k] {
			f.t.Fatalf("slot %d holds %+v, which left", j, k)
		}
		if i, ok := sw.find(k); !ok || i != j {
			f.t.Fatalf("find(%+v) = %d, %v; it lies in slot %d", k, i, ok, j)
		}
	}
	// The spare room stays small: a swarm that lost half its sessions
	// gives the memory back.
	if c := cap(sw.peers); c > max(8, 2*len(sw.peers)+1) {
		f.t.Fatalf("a swarm of %d has room for %d", len(sw.peers), c)
	}
	// The batch hint follows the sessions where they are now: after a
	// move to a larger or smaller slice it would ask for freed memory.
	if first, n := sw.first.Load(), sw.count.Load(); first != &sw.peers[0] || int(n) != len(sw.peers) {
		f.t.Fatalf("the hint names %d sessions at %p; the swarm has %d at %p", n, first, len(sw.peers), &sw.peers[0])
	}
	// The tags follow the entries a scan reads, and the hint names the
	// first session with the peer's tag: the one it will update, unless
	// an earlier one shares its tag.
	for j := range min(len(sw.peers), indexAbove) {
		k := &sw.peers[j].key
		if got := sw.tag(j); got != tagOf(&k.peer) {
			f.t.Fatalf("slot %d (%+v) is tagged %#x, want %#x", j, *k, got, tagOf(&k.peer))
		}
		first, off, ok := sw.hinted(&k.peer)
		if len(sw.peers) > indexAbove {
			if ok {
				f.t.Fatalf("the hint scans the tags of a swarm of %d", len(sw.peers))
			}
			continue
		}
		h := int(off / unsafe.Sizeof(livePeer{}))
		if !ok || first != &sw.peers[0] || h > j || sw.tag(h) != sw.tag(j) {
			f.t.Fatalf("the hint for slot %d names slot %d (%v)", j, h, ok)
		}
	}
	if sw.index != nil {
		// Every slot in one cell, the table at most three quarters
		// full and not left much emptier than a quarter.
		seen := make([]bool, len(sw.peers))
		used := 0
		for _, v := range sw.index.cells {
			if v == 0 {
				continue
			}
			if int(v) > len(sw.peers) || seen[v-1] {
				f.t.Fatalf("index cell holds slot %d of %d twice or past the end", v-1, len(sw.peers))
			}
			seen[v-1] = true
			used++
		}
		if used != len(sw.peers) {
			f.t.Fatalf("index holds %d slots for %d entries", used, len(sw.peers))
		}
		if n, size := len(sw.peers), len(sw.index.cells); 4*n > 3*size || (size > 64 && 4*n < size) {
			f.t.Fatalf("index of %d cells for %d entries", size, n)
		}
	}
	if len(sw.peers) > indexAbove && sw.index == nil {
		f.t.Fatalf("a swarm of %d has no index", len(sw.peers))
	}
	if len(sw.peers) <= indexBelow && sw.index != nil {
		f.t.Fatalf("a swarm of %d keeps its index", len(sw.peers))
	}
}

// TestLiveSwarmGrowsAndShrinks grows a swarm well past the size from which
// it keeps an index, then empties it in random order: every session must
// be found throughout, as a continued session (its announces counted), and
// every leaving session must end once.
func TestLiveSwarmGrowsAndShrinks(t *testing.T) {
	f := newLiveFixture(t)
	const torrent, n = 7, 5 * indexAbove
	want := map[liveKey]bool{}
	// Users with two clients each, so that the scan must tell sessions
	// of one user apart by peer id.
	user := func(i int) uint32 { return uint32(i/2 + 1) }
	for i := range n {
		f.announce(torrent, user(i), i, bittorrent.Started, "")
		want[liveKey{user(i), livePeerID(i)}] = true
		f.check(torrent, want)
	}
	// Grown a quarter at a time, not doubled.
	if sw := f.swarm(torrent); cap(sw.peers) > n+n/4+4 {
		t.Fatalf("a swarm of %d grew to room for %d", n, cap(sw.peers))
	}
	rng := rand.New(rand.NewPCG(1, 2))
	order := rng.Perm(n)
	for step, i := range order {
		f.now = f.now.Add(time.Second)
		// The sessions still there continue: one announce each
		// every few steps.
		if step%8 == 0 {
			for _, j := range order[step:] {
				f.announce(torrent, user(j), j, bittorrent.None, "")
			}
			sw := f.swarm(torrent)
			for j := range sw.peers {
				if sw.peers[j].announces < 2 {
					t.Fatalf("step %d: session %+v restarted", step, sw.peers[j].key)
				}
			}
		}
		row := f.announce(torrent, user(i), i, bittorrent.Stopped, "")
		if row.PeerID != livePeerID(i) || row.Announces < 2 {
			t.Fatalf("step %d: stop of %d: row %+v, want the continued session's", step, i, row)
		}
		delete(want, liveKey{user(i), livePeerID(i)})
		f.check(torrent, want)
	}
	for u, c := range f.counted {
		if c != 0 {
			t.Errorf("user %d counted %d sessions after all left", u, c)
		}
	}
}

// TestLiveSwarmSharedPeerID: two users whose clients chose the same peer
// id share a tag; their sessions stay apart.
func TestLiveSwarmSharedPeerID(t *testing.T) {
	f := newLiveFixture(t)
	const torrent = 4
	want := map[liveKey]bool{}
	for _, user := range []uint32{1, 2, 3} {
		for n := range 5 {
			f.announce(torrent, user, n, bittorrent.Started, "")
			want[liveKey{user, livePeerID(n)}] = true
			f.check(torrent, want)
		}
	}
	if row := f.announce(torrent, 2, 3, bittorrent.Stopped, ""); row.UserID != 2 || row.PeerID != livePeerID(3) {
		t.Fatalf("the stop of user 2's peer 3 ended %d's %q", row.UserID, row.PeerID)
	}
	delete(want, liveKey{2, livePeerID(3)})
	f.check(torrent, want)
}

// TestLiveSwarmExpiresPastIndex lets most of a big swarm expire at once:
// the sweep removes entries while the swarm drops below the threshold.
func TestLiveSwarmExpiresPastIndex(t *testing.T) {
	f := newLiveFixture(t)
	const torrent, n = 3, 3 * indexAbove
	want := map[liveKey]bool{}
	for i := range n {
		f.announce(torrent, uint32(i+1), i, bittorrent.Started, "")
	}
	f.now = f.now.Add(50 * time.Minute)
	for i := range n {
		if i%10 == 0 {
			f.announce(torrent, uint32(i+1), i, bittorrent.None, "")
			want[liveKey{uint32(i + 1), livePeerID(i)}] = true
		}
	}
	f.now = f.now.Add(20 * time.Minute)
	f.l.expire(f.now, time.Hour, func(uint32, int32, int32) {})
	f.check(torrent, want)
}

// TestLiveSwarmChurn drives one swarm of thousands of sessions through
// random joins, stops, continued announces and expiry sweeps, against a
// plain map of the sessions there should be and when each last announced:
// every session there must be found where it lies, and none that left.
func TestLiveSwarmChurn(t *testing.T) {
	f := newLiveFixture(t)
	const torrent, big = 9, 5000
	type session struct {
		user uint32
		n    int
	}
	// seen is the model: each live session's last announce.
	seen := map[session]time.Time{}
	var live []session // the model's keys, to draw from
	want := func() map[liveKey]bool {
		w := make(map[liveKey]bool, len(seen))
		for s := range seen {
			w[liveKey{s.user, livePeerID(s.n)}] = true
		}
		return w
	}
	rng := rand.New(rand.NewPCG(3, 4))
	next := 0
	join := func() {
		// Users repeat: a user has many clients in the swarm.
		s := session{uint32(rng.IntN(700) + 1), next}
		next++
		f.announce(torrent, s.user, s.n, bittorrent.Started, "")
		seen[s] = f.now
		live = append(live, s)
	}
	// pick draws a live session, dropping the model's keys of those
	// that left since.
	pick := func() (session, bool) {
		for len(live) > 0 {
			k := rng.IntN(len(live))
			s := live[k]
			if _, ok := seen[s]; ok {
				return s, true
			}
			live[k] = live[len(live)-1]
			live = live[:len(live)-1]
		}
		return session{}, false
	}
	gone := func(s session) {
		sw := f.swarm(torrent)
		if sw == nil {
			return
		}
		if _, ok := sw.find(liveKey{s.user, livePeerID(s.n)}); ok {
			t.Fatalf("session %+v found after it left", s)
		}
	}
	sweep := func() {
		f.l.expire(f.now, time.Hour, func(u uint32, s, l int32) { f.counted[u] += s + l })
		for s, at := range seen {
			if f.now.Sub(at) > time.Hour {
				delete(seen, s)
				gone(s)
			}
		}
	}

	for i := range big {
		join()
		if i%250 == 0 {
			f.check(torrent, want())
		}
	}
	f.check(torrent, want())
	// Churn with the clock running: sessions not announced again for an
	// hour expire, so the swarm shrinks through its index's sizes while
	// others join and leave.
	for step := range 30000 {
		f.now = f.now.Add(time.Second)
		switch r := rng.IntN(10); {
		case r < 3:
			join()
		case r < 5:
			if s, ok := pick(); ok {
				f.announce(torrent, s.user, s.n, bittorrent.Stopped, "")
				delete(seen, s)
				gone(s)
			}
		default:
			if s, ok := pick(); ok {
				f.announce(torrent, s.user, s.n, bittorrent.None, "")
				seen[s] = f.now
			}
		}
		if step%300 == 0 {
			sweep()
			f.check(torrent, want())
		}
	}
	// Everyone leaves at once but a few, past both thresholds.
	f.now = f.now.Add(50 * time.Minute)
	kept := 0
	for s := range seen {
		if kept < indexBelow/2 {
			f.announce(torrent, s.user, s.n, bittorrent.None, "")
			seen[s] = f.now
			kept++
		}
	}
	f.now = f.now.Add(20 * time.Minute)
	sweep()
	f.check(torrent, want())
	if t.Failed() {
		return
	}
	for u, c := range f.counted {
		var n int32
		for s := range seen {
			if s.user == u {
				n++
			}
		}
		if c != n {
			t.Errorf("user %d counted %d sessions, has %d", u, c, n)
		}
	}
}

// TestLiveSessionsShareAgents: sessions whose agents arrive as separate
// strings keep one copy of each.
func TestLiveSessionsShareAgents(t *testing.T) {
	f := newLiveFixture(t)
	for i := range 10 {
		// Built at run time: each is its own string, as each request's.
		f.announce(1, uint32(i+1), i, bittorrent.Started, fmt.Sprintf("Transmission/%d.00", 4))
	}
	sw := f.swarm(1)
	first := unsafe.StringData(sw.peers[0].userAgent)
	for j := range sw.peers {
		if ua := sw.peers[j].userAgent; ua != "Transmission/4.00" || unsafe.StringData(ua) != first {
			t.Fatalf("session %d keeps agent %q apart", j, ua)
		}
	}
	// A changed agent is taken too.
	f.announce(1, 1, 0, bittorrent.None, fmt.Sprintf("qBittorrent/%d.6.2", 4))
	i, _ := sw.find(liveKey{1, livePeerID(0)})
	if ua := sw.peers[i].userAgent; ua != "qBittorrent/4.6.2" {
		t.Fatalf("agent %q, want the changed one", ua)
	}
}

// TestAgentTableBounded: made-up agents cannot grow the table past its
// bound; once full it hands back the caller's string until it starts over.
func TestAgentTableBounded(t *testing.T) {
	var at agentTable
	now := uint32(1_700_000_000)
	for i := range 3 * maxAgents {
		at.intern(fmt.Sprintf("junk/%d", i), now)
	}
	if n := len(*at.known.Load()); n != maxAgents {
		t.Fatalf("table holds %d agents, want its bound %d", n, maxAgents)
	}
	late := fmt.Sprintf("Deluge/%d.1.1", 2)
	if s := at.intern(late, now+agentRestart-1); unsafe.StringData(s) != unsafe.StringData(late) {
		t.Fatal("a full table took an agent")
	}
	if s := at.intern(strings.Repeat("x", maxAgentLen+1), now); len(*at.known.Load()) != maxAgents || len(s) != maxAgentLen+1 {
		t.Fatal("an overlong agent changed the table or came back cut")
	}
	// Once agentRestart has passed, a full table starts over.
	s := at.intern(late, now+agentRestart)
	if n := len(*at.known.Load()); n != 1 || s != late {
		t.Fatalf("after the restart the table holds %d agents", n)
	}
	again := fmt.Sprintf("Deluge/%d.1.1", 2)
	if unsafe.StringData(at.intern(again, now+agentRestart)) != unsafe.StringData(s) {
		t.Fatal("the agent taken after the restart is not shared")
	}
	if at.intern("", now) != "" {
		t.Fatal("the empty agent changed")
	}
}

// TestLivePeerSize: every live peer of a private tracker costs an entry;
// a field added must not push it past 128 bytes unnoticed.
func TestLivePeerSize(t *testing.T) {
	if n := unsafe.Sizeof(livePeer{}); n > 128 {
		t.Fatalf("livePeer takes %d bytes, want at most 128", n)
	}
}

// TestLiveSwarmLayout: a swarm's fields fill one cache line and its tags
// the next, so that a scan of the tags, and the hint's fetch of them, read
// one line.
func TestLiveSwarmLayout(t *testing.T) {
	var sw liveSwarm
	if off, n := unsafe.Offsetof(sw.tags), unsafe.Sizeof(sw); off != 64 || n != 128 {
		t.Fatalf("liveSwarm: tags at byte %d of %d, want 64 of 128", off, n)
	}
}

// TestLivePeerKeepsRow: what an entry keeps in its compact form comes back
// in its row as the announce gave it.
func TestLivePeerKeepsRow(t *testing.T) {
	for _, s := range []string{"", "10.1.2.3", "2001:db8::7", "::ffff:10.1.2.3", "::", "0.0.0.0"} {
		var a netip.Addr
		if s != "" {
			a = netip.MustParseAddr(s)
		}
		var e livePeer
		e.setAddr(a)
		if got := e.address(); got != a {
			t.Errorf("address %v came back as %v", a, got)
		}
	}
	var e livePeer
	e.setAddr(netip.MustParseAddr("fe80::1%eth0"))
	if got := e.address(); got != netip.MustParseAddr("fe80::1") {
		t.Errorf("zoned address came back as %v, want it without its zone", got)
	}

	f := newLiveFixture(t)
	f.now = time.Unix(1_700_000_000, 999_999_999)
	f.announce(1, 1, 0, bittorrent.Started, "a")
	f.now = f.now.Add(90 * time.Second)
	f.announce(1, 1, 0, bittorrent.None, "a")
	rows := f.l.Take(nil)
	if len(rows) != 1 {
		t.Fatalf("%d rows, want 1", len(rows))
	}
	r := rows[0]
	if !r.Time.Equal(f.now) || r.TimeSpent != 90*time.Second || r.Announces != 2 ||
		r.Addr != netip.AddrFrom4([4]byte{10, 0, 0, 0}) || r.Port != 6881 || r.UserAgent != "a" {
		t.Fatalf("row %+v", r)
	}
	if sw := f.swarm(1); sw.peers[0].seen() != unixSeconds(f.now) {
		t.Fatalf("seen %d, want %d", sw.peers[0].seen(), unixSeconds(f.now))
	}
}
