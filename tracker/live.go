package tracker

import (
	"encoding/binary"
	"maps"
	"math/bits"
	"math/rand/v2"
	"net/netip"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"
	"unsafe"

	"github.com/chihaya/chihaya/bittorrent"
	"github.com/chihaya/chihaya/storage"
)

// liveTable tracks the sessions of the live peers of registered torrents:
// when each started, how many announces it made, when it last announced,
// whether it seeds, and the peer's row while it waits to be written. Peer
// rows need the first three; the per-user and per-torrent activity reports
// need the rest. Keeping the pending row here, rather than in the
// Flusher's own index, means an announce updates the one entry it has
// already found; the Flusher takes the changed rows when it writes (the
// table is its storage.Source of peer rows).
//
// It is sharded by torrent so announces on different torrents rarely share
// a lock. A swarm keeps its entries in one slice, so that taking the
// changed rows reads memory in order; only a big swarm also keeps a hash
// table of its slots (see indexAbove).
type liveTable struct {
	shards [64]liveShard
	// seeders and leechers count every live peer.
	seeders, leechers atomic.Int64
	// lastExpire is when expire last ran (Unix seconds), so that
	// frequent callers do not each walk the table.
	lastExpire atomic.Int64
	// spill receives the pending rows of sessions that leave the table
	// without an announce (expired, torrent deleted).
	spill  func(storage.PeerRow)
	agents agentTable
}

// agentTable interns the User-Agent strings the sessions keep. Each HTTP
// announce brings its agent as a string of its own (clients open a
// connection per announce), yet a few clients' agents cover nearly every
// peer: sharing one copy of each saves a string per session.
//
// Lookups take no lock: the map is never changed once published, and an
// insert publishes a copy. The table is bounded in entries and in the
// length of each, so that clients sending made-up agents cannot grow it;
// once full it takes no agent until agentRestart has passed, then starts
// over, so that agents first seen late (new client versions) are shared
// too. A session whose agent the table does not take keeps its own string,
// as before.
type agentTable struct {
	known atomic.Pointer[map[string]string]
	// mu serialises inserts; started is when the current map was begun
	// (Unix seconds), under mu.
	mu      sync.Mutex
	started uint32
}

const (
	maxAgents    = 1024
	maxAgentLen  = 256
	agentRestart = 3600 // seconds
)

// intern returns the table's copy of agent, adding it when there is room.
func (t *agentTable) intern(agent string, nowS uint32) string {
	if m := t.known.Load(); m != nil {
		if s, ok := (*m)[agent]; ok {
			return s
		}
	}
	if agent == "" || len(agent) > maxAgentLen {
		return agent
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	var m map[string]string
	switch old := t.known.Load(); {
	case old == nil || len(*old) >= maxAgents && nowS-t.started >= agentRestart:
		m, t.started = make(map[string]string, 16), nowS
	case len(*old) >= maxAgents:
		return agent
	default:
		if s, ok := (*old)[agent]; ok {
			// Added since the lookup above.
			return s
		}
		m = maps.Clone(*old)
	}
	// Its own copy: the request's string may share a larger buffer.
	agent = strings.Clone(agent)
	m[agent] = agent
	t.known.Store(&m)
	return agent
}

type liveShard struct {
	mu     sync.Mutex
	swarms map[uint32]*liveSwarm
	// dirty counts the shard's entries whose row is pending.
	dirty int
}

// liveSwarm is one torrent's sessions.
type liveSwarm struct {
	// index finds entries of peers by key once the swarm has more than
	// indexAbove entries; nil below. A pointer rather than the table
	// itself keeps the swarm's fields at one cache line, 64 bytes, and
	// its tags at a second.
	index *liveIndex
	peers []livePeer
	dirty int
	// owner is the torrent's registry entry, whose live field points
	// back here (both under the shard's lock).
	owner *torrentEntry
	// first and count follow peers (its first entry and length) for
	// the batch hint, which reads them without the shard's lock; see
	// published.
	first atomic.Pointer[livePeer]
	count atomic.Int32
	_     [4]byte // so that tags start the second cache line
	// tags holds a short hash of the peer id of each of the first
	// indexAbove entries (tagOf), two to a word, so that a scan compares
	// keys only where the tag matches: it reads this one line rather
	// than the first line of every session. The batch hint, which knows
	// the coming announces' peer ids but not their users, reads them
	// too, to fetch only the session each announce will update; hence
	// atomic words, written under the shard's lock and read without.
	// They fill the swarm's second cache line.
	tags [indexAbove / 2]atomic.Uint32
}

// tagOf is the tag of a peer id: the high bits of its hash as a key of
// no user, which do not pick its cell in any index of fewer than 2^48
// cells. A user's sessions on one torrent have different peer ids, so
// leaving the user out costs a second key comparison only when two users'
// peer ids share a tag.
func tagOf(peer *bittorrent.PeerID) uint16 {
	return uint16(liveHash(&liveKey{peer: *peer}) >> 48)
}

// tag returns entry i's tag; i < indexAbove.
func (sw *liveSwarm) tag(i int) uint16 {
	return uint16(sw.tags[i/2].Load() >> (16 * (i % 2)))
}

// setTag records the tag of entry i's key, when i is one a scan reads.
func (sw *liveSwarm) setTag(i int) {
	if i >= indexAbove {
		return
	}
	w := &sw.tags[i/2]
	shift := 16 * (i % 2)
	w.Store(w.Load()&^(0xffff<<shift) | uint32(tagOf(&sw.peers[i].key.peer))<<shift)
}

// tagged returns the first of the first n entries, at least from, whose
// tag is tag, or n when none is.
func (sw *liveSwarm) tagged(tag uint16, from, n int) int {
	for i := from; i < n; i++ {
		if sw.tag(i) == tag {
			return i
		}
	}
	return n
}

// published brings first and count up to date after peers changed. Only
// the hint reads them, so a join or leave pays two stores, and a stale
// value costs a useless prefetch, never a wrong answer.
func (sw *liveSwarm) published() {
	var first *livePeer
	if len(sw.peers) > 0 {
		first = &sw.peers[0]
	}
	if sw.first.Load() != first {
		sw.first.Store(first)
	}
	sw.count.Store(int32(len(sw.peers)))
}

// hinted returns where the session of a peer with the id would lie, for
// the batch hint to fetch: its offset from first, the swarm's first
// session, for the first session whose tag matches; false for none (or a
// big swarm's, which the index finds). It takes no lock, so first and the
// count may be of different moments and the offset may lie past first's
// slice; only a prefetch (prefetch.LinesFrom) may use it, which reads
// nothing and cannot fault.
func (sw *liveSwarm) hinted(peer *bittorrent.PeerID) (first *livePeer, offset uintptr, ok bool) {
	first, count := sw.first.Load(), int(sw.count.Load())
	if first == nil || count > indexAbove {
		return nil, 0, false
	}
	j := sw.tagged(tagOf(peer), 0, count)
	return first, uintptr(j) * unsafe.Sizeof(livePeer{}), j < count
}

// A swarm of up to indexAbove sessions is searched by a scan of its
// entries: comparing a few keys is about as quick as hashing one. Most
// swarms are that small. A swarm that grew past it keeps its index until it
// shrinks to indexBelow, so that one hovering at the threshold does not
// build and drop it on every join and leave.
const (
	indexAbove = 32
	indexBelow = 16
)

type liveKey struct {
	user uint32
	peer bittorrent.PeerID
}

// livePeer is one session. Its layout is kept to 128 bytes (see
// TestLivePeerSize), the cost of every live peer in private mode: the last
// announce's second is read from at rather than kept apart, and the
// address is kept as its 16 bytes and family rather than as a netip.Addr,
// which carries a pointer for its zone. The zone is not kept: it names an
// interface of the tracker's host, which the web application cannot use
// (neither storage driver writes it).
//
// Speeds stay 64 bits: the PostgreSQL driver writes them as bigint.
type livePeer struct {
	key liveKey
	// uploaded and downloaded are the totals last reported.
	uploaded, downloaded uint64
	left, corrupt        uint64
	// upSpeed and downSpeed are bytes per second since the announce
	// before the last.
	upSpeed, downSpeed uint64
	// at is the last announce's time in Unix nanoseconds; started is
	// the session's first, in Unix seconds.
	at        int64
	started   uint32
	announces uint32
	port      uint16
	seeding   bool
	// dirty: the row changed since the Flusher last took it. full: one
	// of those changes needs a full row (see storage.PeerRow).
	dirty, full bool
	// family is 4 or 6 for addr's address, 0 for none (a protected
	// user's).
	family    uint8
	addr      [16]byte
	userAgent string
}

// seen is the last announce's time in Unix seconds.
func (e *livePeer) seen() uint32 { return unixSeconds(time.Unix(0, e.at)) }

// liveAt reports whether the session, last seen within lifetime of second
// nowS, is still going.
func (e *livePeer) liveAt(nowS uint32, lifetime time.Duration) bool {
	return time.Duration(nowS-e.seen())*time.Second <= lifetime
}

func (e *livePeer) setAddr(a netip.Addr) {
	switch {
	case a.Is4():
		e.family = 4
	case a.Is6():
		e.family = 6
	default:
		e.family = 0
	}
	e.addr = a.As16()
}

func (e *livePeer) address() netip.Addr {
	switch e.family {
	case 4:
		return netip.AddrFrom4([4]byte(e.addr[12:]))
	case 6:
		return netip.AddrFrom16(e.addr)
	}
	return netip.Addr{}
}

// row is the entry as storage writes it.
func (e *livePeer) row(torrentID uint32, active bool) storage.PeerRow {
	return storage.PeerRow{
		TorrentID:  torrentID,
		UserID:     e.key.user,
		PeerID:     e.key.peer,
		Full:       e.full,
		Active:     active,
		Uploaded:   e.uploaded,
		Downloaded: e.downloaded,
		Left:       e.left,
		Corrupt:    e.corrupt,
		UpSpeed:    e.upSpeed,
		DownSpeed:  e.downSpeed,
		TimeSpent:  time.Duration(e.seen()-e.started) * time.Second,
		Announces:  e.announces,
		Addr:       e.address(),
		Port:       e.port,
		UserAgent:  e.userAgent,
		Time:       time.Unix(0, e.at),
	}
}

// counterFunc moves a user's seeding and leeching counts.
type counterFunc func(userID uint32, seeding, leeching int32)

func (l *liveTable) init(spill func(storage.PeerRow)) {
	for i := range l.shards {
		l.shards[i].swarms = map[uint32]*liveSwarm{}
	}
	l.spill = spill
}

func (l *liveTable) shard(torrentID uint32) *liveShard {
	return &l.shards[torrentID%uint32(len(l.shards))]
}

func unixSeconds(t time.Time) uint32 { return uint32(t.Unix()) }

// swarm finds a torrent's sessions, through its registry entry when it
// has one (nil when the torrent has no live peer yet).
func (sh *liveShard) swarm(torrentID uint32, owner *torrentEntry) *liveSwarm {
	if owner != nil {
		if sw := owner.live.Load(); sw != nil {
			return sw
		}
	}
	sw := sh.swarms[torrentID]
	if sw != nil {
		// The torrent was registered again: its new entry takes the
		// sessions over.
		sw.adopt(owner)
	}
	return sw
}

// adopt links the swarm and the registry entry of its torrent, which then
// finds it without a lookup; nil unlinks it.
func (sw *liveSwarm) adopt(owner *torrentEntry) {
	if sw.owner != nil {
		sw.owner.live.Store(nil)
	}
	sw.owner = owner
	if owner != nil {
		owner.live.Store(sw)
	}
}

// find returns the slot of the session with the key.
func (sw *liveSwarm) find(key liveKey) (int, bool) {
	if sw.index != nil {
		c := sw.lookup(key)
		if v := sw.index.cells[c]; v != 0 {
			return int(v - 1), true
		}
		return 0, false
	}
	tag, n := tagOf(&key.peer), len(sw.peers)
	for i := sw.tagged(tag, 0, n); i < n; i = sw.tagged(tag, i+1, n) {
		if k := &sw.peers[i].key; k.user == key.user && k.peer == key.peer {
			return i, true
		}
	}
	return 0, false
}

// add appends a session with the key and returns its slot.
func (sw *liveSwarm) add(key liveKey) int {
	if len(sw.peers) == cap(sw.peers) {
		sw.peers = resizePeers(sw.peers)
	}
	sw.peers = append(sw.peers, livePeer{key: key})
	sw.published()
	i := len(sw.peers) - 1
	sw.setTag(i)
	switch {
	case sw.index != nil && 4*len(sw.peers) <= 3*len(sw.index.cells):
		sw.index.cells[sw.lookup(key)] = uint32(i + 1)
	case sw.index != nil || len(sw.peers) > indexAbove:
		sw.reindex()
	}
	return i
}

// remove takes entry i out of the swarm, moving the last entry into its
// place, and the swarm out of the shard once it is empty.
func (sh *liveShard) remove(torrentID uint32, sw *liveSwarm, i int) {
	last := len(sw.peers) - 1
	shrinkIndex := false
	if sw.peers[i].dirty {
		sw.dirty--
		sh.dirty--
	}
	if sw.index != nil {
		// While the entries are still where the index has them.
		sw.unindex(sw.lookup(sw.peers[i].key))
		if i != last {
			sw.index.cells[sw.lookup(sw.peers[last].key)] = uint32(i + 1)
		}
		switch {
		case last <= indexBelow:
			sw.index = nil
		case 4*last < len(sw.index.cells):
			// Shrunk to a quarter of the table: a new one
			// half its size or less gives the memory back, and
			// the swarm must double again before it grows.
			shrinkIndex = true
		}
	}
	if i != last {
		sw.peers[i] = sw.peers[last]
		sw.setTag(i)
	}
	sw.peers[last] = livePeer{} // drop the user agent
	sw.peers = sw.peers[:last]
	switch {
	case last == 0:
		delete(sh.swarms, torrentID)
		sw.adopt(nil)
	case cap(sw.peers) > 8 && last < cap(sw.peers)/2:
		// A swarm half its sessions left gives the memory back. The
		// new slice has room for a quarter more, so the swarm must
		// lose about a third more before it is copied again.
		sw.peers = resizePeers(sw.peers)
	}
	sw.published()
	if shrinkIndex {
		sw.reindex()
	}
}

// The index of a big swarm is an open-addressing hash table with linear
// probing whose cells hold a slot of peers plus one (zero: empty). It keeps
// no keys, which the entries have already: 4 bytes a cell and at most three
// quarters of the cells used, where a Go map took some 50 bytes a session,
// more than a third of the entry itself. Entries moved within peers keep
// their cells right (remove updates the moved entry's cell; resizePeers
// keeps every entry's slot).

// liveIndex is a big swarm's hash table of slots; see liveSwarm.lookup.
type liveIndex struct {
	cells []uint32
}

// liveSeed keys the index's hash: peer ids are the clients' choice, and a
// hash they could predict would let them pile a swarm's sessions into one
// probe chain.
var liveSeed = [3]uint64{rand.Uint64(), rand.Uint64(), rand.Uint64()}

// liveHash hashes a key by folding its 24 bytes, three words, through
// 64×64→128-bit multiplies with the seed, whose high and low halves mix
// every input bit into the low bits the table uses.
func liveHash(k *liveKey) uint64 {
	w0 := binary.LittleEndian.Uint64(k.peer[0:8])
	w1 := binary.LittleEndian.Uint64(k.peer[8:16])
	w2 := uint64(binary.LittleEndian.Uint32(k.peer[16:20])) | uint64(k.user)<<32
	hi, lo := bits.Mul64(w0^liveSeed[0], w1^liveSeed[1])
	hi, lo = bits.Mul64(hi^lo^w2, liveSeed[2])
	return hi ^ lo
}

// lookup returns the cell of the index that holds the key's slot, or the
// empty cell that ends its probe chain.
func (sw *liveSwarm) lookup(key liveKey) int {
	m := len(sw.index.cells) - 1
	for c := int(liveHash(&key)) & m; ; c = (c + 1) & m {
		v := sw.index.cells[c]
		if v == 0 {
			return c
		}
		if k := &sw.peers[v-1].key; k.user == key.user && k.peer == key.peer {
			return c
		}
	}
}

// unindex empties cell c, moving later cells of the chain back into the
// hole so that no chain is cut short by it (no tombstones, which would
// fill the table over a swarm's churn).
func (sw *liveSwarm) unindex(c int) {
	m := len(sw.index.cells) - 1
	hole := c
	for j := (c + 1) & m; sw.index.cells[j] != 0; j = (j + 1) & m {
		home := int(liveHash(&sw.peers[sw.index.cells[j]-1].key)) & m
		// The entry may fill the hole only if that does not put it
		// before its home: its home lies outside (hole, j].
		if (j-home)&m >= (j-hole)&m {
			sw.index.cells[hole] = sw.index.cells[j]
			hole = j
		}
	}
	sw.index.cells[hole] = 0
}

// reindex builds the index anew for the entries there are now, in the
// smallest table at most three quarters full.
func (sw *liveSwarm) reindex() {
	size := 64
	for 4*len(sw.peers) > 3*size {
		size *= 2
	}
	if sw.index == nil {
		sw.index = new(liveIndex)
	}
	sw.index.cells = make([]uint32, size)
	m := size - 1
	for i := range sw.peers {
		c := int(liveHash(&sw.peers[i].key)) & m
		for sw.index.cells[c] != 0 {
			c = (c + 1) & m
		}
		sw.index.cells[c] = uint32(i + 1)
	}
}

// resizePeers copies a swarm's entries to a slice with room for a quarter
// more, and two. A swarm does not grow by append's doubling: it spends most
// of its life at about the size it reached, and doubling would leave a
// swarm of 20 with room for 32 (the spare entries cost as much as live
// ones). Growing by a quarter copies each entry about four times over the
// swarm's growth instead of once, still a constant per join. The capacity
// takes the whole of the allocation's size class.
func resizePeers(peers []livePeer) []livePeer {
	n := len(peers)
	// Appending to nil rounds the capacity up to the size class.
	resized := append([]livePeer(nil), make([]livePeer, n+n/4+2)...)
	copy(resized, peers)
	return resized[:n]
}

// liveAnnounce is an announce as the live table records it.
type liveAnnounce struct {
	// entry is the torrent's registry entry, nil if it has none.
	entry         *torrentEntry
	torrent, user uint32
	peer          bittorrent.PeerID
	now           time.Time
	lifetime      time.Duration
	event         bittorrent.Event
	// stopped: the session ends (the client's own stop).
	stopped, seeding bool
	uploaded         uint64
	downloaded       uint64
	left, corrupt    uint64
	addr             netip.Addr
	port             uint16
	userAgent        string
	// known, prevUp and prevDown are the swarm's baseline for the
	// peer's totals (cache.Result). sessionBaseline says the peer was
	// kept out of the swarm (a refused leecher), so a continued
	// session's last totals are the baseline instead.
	known            bool
	prevUp, prevDown uint64
	sessionBaseline  bool
}

// update records an announce: it returns the transfer since the session's
// previous announce (zero for a new session and for totals that went
// backwards) and keeps the peer's row pending. A stopped peer leaves the
// table; its last row is returned, with ended true, for the caller to hand
// to storage.
func (l *liveTable) update(a *liveAnnounce, last *storage.PeerRow, counters counterFunc) (up, down uint64, ended bool) {
	sh := l.shard(a.torrent)
	key := liveKey{a.user, a.peer}
	nowS := unixSeconds(a.now)
	sh.mu.Lock()
	sw := sh.swarm(a.torrent, a.entry)
	var i int
	var had bool
	if sw != nil {
		i, had = sw.find(key)
	}
	var e *livePeer
	var wasSeeding, found, pendingFull bool
	switch {
	case had:
		e = &sw.peers[i]
		wasSeeding = e.seeding
		pendingFull = e.dirty && e.full
		// An entry expired but not yet swept is a new session.
		found = e.liveAt(nowS, a.lifetime)
	case !a.stopped:
		if sw == nil {
			sw = &liveSwarm{}
			sh.swarms[a.torrent] = sw
			sw.adopt(a.entry)
		}
		i = sw.add(key)
		e = &sw.peers[i]
	}

	// Transfer since the last announce. A new session (first announce,
	// started) sets the baseline; totals that went backwards (the client
	// restarted its counters) reset it; neither is credited.
	known, prevUp, prevDown := a.known, a.prevUp, a.prevDown
	if !known && a.sessionBaseline && found {
		known, prevUp, prevDown = true, e.uploaded, e.downloaded
	}
	restart := a.event == bittorrent.Started
	if known && !restart && a.uploaded >= prevUp && a.downloaded >= prevDown {
		up, down = a.uploaded-prevUp, a.downloaded-prevDown
	}
	// A full row when something a light row leaves alone changed: the
	// totals (also when they went backwards), the seeding state.
	full := !known || a.event != bittorrent.None || a.uploaded != prevUp || a.downloaded != prevDown ||
		!found || wasSeeding != a.seeding || pendingFull

	started, announces := nowS, uint32(1)
	var upSpeed, downSpeed uint64
	if found && !restart {
		started, announces = e.started, e.announces+1
		if secs := uint64(nowS - e.seen()); secs > 0 {
			upSpeed, downSpeed = up/secs, down/secs
		}
	}
	if a.stopped {
		*last = storage.PeerRow{
			TorrentID: a.torrent, UserID: a.user, PeerID: a.peer, Full: full,
			Uploaded: a.uploaded, Downloaded: a.downloaded, Left: a.left, Corrupt: a.corrupt,
			UpSpeed: upSpeed, DownSpeed: downSpeed, TimeSpent: time.Duration(nowS-started) * time.Second,
			Announces: announces, Addr: a.addr, Port: a.port, UserAgent: a.userAgent, Time: a.now,
		}
		ended = true
		if had {
			sh.remove(a.torrent, sw, i)
		}
	} else {
		// Field by field: the entry is written where it lies, not
		// built aside and copied.
		if !e.dirty {
			e.dirty = true
			sw.dirty++
			sh.dirty++
		}
		e.full = full
		e.uploaded, e.downloaded, e.left, e.corrupt = a.uploaded, a.downloaded, a.left, a.corrupt
		e.upSpeed, e.downSpeed = upSpeed, downSpeed
		e.at, e.started, e.announces = a.now.UnixNano(), started, announces
		e.port, e.seeding = a.port, a.seeding
		e.setAddr(a.addr)
		if e.userAgent != a.userAgent {
			// Only a changed agent: keep the string already held
			// rather than each request's copy.
			e.userAgent = l.agents.intern(a.userAgent, nowS)
		}
	}
	sh.mu.Unlock()

	// Counters follow the entry that was in the table, found or not.
	switch {
	case had && a.stopped:
		l.count(a.user, wasSeeding, -1, counters)
	case had && wasSeeding != a.seeding:
		l.count(a.user, wasSeeding, -1, counters)
		l.count(a.user, a.seeding, +1, counters)
	case !had && !a.stopped:
		l.count(a.user, a.seeding, +1, counters)
	}
	return up, down, ended
}

func (l *liveTable) count(userID uint32, seeding bool, n int32, counters counterFunc) {
	if seeding {
		l.seeders.Add(int64(n))
		counters(userID, n, 0)
	} else {
		l.leechers.Add(int64(n))
		counters(userID, 0, n)
	}
}

// Take implements storage.Source: it appends the pending rows to dst.
func (l *liveTable) Take(dst []storage.PeerRow) []storage.PeerRow {
	// Room for all of them at once: grown shard by shard, a batch of
	// 200,000 rows was copied over and over as it grew, six times the
	// cost of the rows themselves (BenchmarkLiveTake). Rows that turn
	// up meanwhile still get room below.
	dst = slices.Grow(dst, l.Pending())
	for i := range l.shards {
		sh := &l.shards[i]
		sh.mu.Lock()
		if sh.dirty > 0 {
			dst = slices.Grow(dst, sh.dirty)
			for id, sw := range sh.swarms {
				if sw.dirty == 0 {
					continue
				}
				for j := range sw.peers {
					if e := &sw.peers[j]; e.dirty {
						dst = append(dst, e.row(id, true))
						e.dirty = false
					}
				}
				sw.dirty = 0
			}
			sh.dirty = 0
		}
		sh.mu.Unlock()
	}
	return dst
}

// Pending implements storage.Source.
func (l *liveTable) Pending() int {
	n := 0
	for i := range l.shards {
		sh := &l.shards[i]
		sh.mu.Lock()
		n += sh.dirty
		sh.mu.Unlock()
	}
	return n
}

// gone is a session that left the table without an announce.
type gone struct {
	user    uint32
	seeding bool
}

// expire drops sessions not seen for lifetime and returns the torrents
// that lost peers. It runs at most every ten seconds.
func (l *liveTable) expire(now time.Time, lifetime time.Duration, counters counterFunc) []uint32 {
	last := l.lastExpire.Load()
	if now.Unix()-last < 10 || !l.lastExpire.CompareAndSwap(last, now.Unix()) {
		return nil
	}
	nowS := unixSeconds(now)
	var touched []uint32
	var dropped []gone
	var rows []storage.PeerRow
	for i := range l.shards {
		sh := &l.shards[i]
		dropped, rows = dropped[:0], rows[:0]
		sh.mu.Lock()
		for id, sw := range sh.swarms {
			n := len(dropped)
			// Backwards, so that the entry moved into a removed
			// one's place has been looked at already.
			for j := len(sw.peers) - 1; j >= 0; j-- {
				e := &sw.peers[j]
				if e.liveAt(nowS, lifetime) {
					continue
				}
				dropped = append(dropped, gone{e.key.user, e.seeding})
				if e.dirty {
					rows = append(rows, e.row(id, true))
				}
				sh.remove(id, sw, j)
			}
			if len(dropped) > n {
				touched = append(touched, id)
			}
		}
		sh.mu.Unlock()
		l.release(dropped, rows, counters)
	}
	return touched
}

// release counts sessions that left the table and hands their pending rows
// on.
func (l *liveTable) release(dropped []gone, rows []storage.PeerRow, counters counterFunc) {
	for _, g := range dropped {
		l.count(g.user, g.seeding, -1, counters)
	}
	for _, r := range rows {
		l.spill(r)
	}
}

// dropTorrent forgets a deleted torrent's sessions.
func (l *liveTable) dropTorrent(torrentID uint32, counters counterFunc) {
	sh := l.shard(torrentID)
	var dropped []gone
	var rows []storage.PeerRow
	sh.mu.Lock()
	if sw := sh.swarms[torrentID]; sw != nil {
		for j := range sw.peers {
			e := &sw.peers[j]
			dropped = append(dropped, gone{e.key.user, e.seeding})
			if e.dirty {
				rows = append(rows, e.row(torrentID, true))
				sh.dirty--
			}
		}
		delete(sh.swarms, torrentID)
		sw.adopt(nil)
	}
	sh.mu.Unlock()
	l.release(dropped, rows, counters)
}

// users returns the ids of the users seeding and leeching a torrent.
func (l *liveTable) users(torrentID uint32, now time.Time, lifetime time.Duration) (seeders, leechers []uint32) {
	nowS := unixSeconds(now)
	sh := l.shard(torrentID)
	sh.mu.Lock()
	if sw := sh.swarms[torrentID]; sw != nil {
		for j := range sw.peers {
			e := &sw.peers[j]
			if !e.liveAt(nowS, lifetime) {
				continue
			}
			if e.seeding {
				seeders = append(seeders, e.key.user)
			} else {
				leechers = append(leechers, e.key.user)
			}
		}
	}
	sh.mu.Unlock()
	slices.Sort(seeders)
	slices.Sort(leechers)
	return slices.Compact(seeders), slices.Compact(leechers)
}

func (l *liveTable) totals() (seeders, leechers int) {
	return int(l.seeders.Load()), int(l.leechers.Load())
}
