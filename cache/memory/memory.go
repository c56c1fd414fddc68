// Package memory is the in-process cache driver, registered as "memory":
// every swarm lives in this process's heap, so it suits a single tracker
// process.
//
// Swarms are spread over shards by their info hash, each shard with its own
// lock, so announces for different torrents rarely wait for each other.
// Peers are fixed-size records packed in one byte slice per swarm and
// address family, keyed by a 64-bit keyed hash of who they are and
// partitioned into downloaders and the rest so that a seeder's peer list
// costs the same however many seeders the swarm has; see swarm.go.
//
// Expiry is exact whatever the reaper's timing: a swarm drops its stale
// endpoints before it is read by an announce or a scrape. The reaper, which
// walks the shards every reap_interval, only reclaims swarms nobody asks
// about. A swarm with no peers is deleted once a peer lifetime has passed
// since its last announce; its snatch count goes with it.
//
// With snapshot_file set, Close writes every swarm to that file and Open
// reads them back, so a graceful restart keeps the swarms; see snapshot.go.
package memory

import (
	"context"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"math"
	"math/rand/v2"
	"net/netip"
	"sync"
	"sync/atomic"
	"time"
	"unsafe"

	"github.com/chihaya/chihaya/bittorrent"
	"github.com/chihaya/chihaya/cache"
	"github.com/chihaya/chihaya/internal/hashtab"
	"github.com/chihaya/chihaya/internal/prefetch"
)

func init() {
	cache.Register("memory", driver{})
}

// driver opens memory stores.
type driver struct{}

// Open implements cache.Driver.
func (driver) Open(raw json.RawMessage, opts cache.Options) (cache.Store, error) {
	c, err := parseConfig(raw)
	if err != nil {
		return nil, err
	}
	if c.snapshotFile != "" {
		if err := checkSnapshotPath(c.snapshotFile); err != nil {
			return nil, fmt.Errorf("snapshot_file: %w", err)
		}
	}
	st, err := open(c, opts)
	if err != nil {
		return nil, err
	}
	if st.snapshotFile != "" {
		st.loadSnapshotFile()
	}
	return st, nil
}

// shardState is the part of a shard that matters; see shard.
type shardState struct {
	mu     sync.Mutex
	swarms hashtab.Table[bittorrent.InfoHash, swarm]
	// rng is used under mu only, so picking peers needs no other lock.
	rng rand.PCG
}

// shard is a lock and the swarms it guards, padded to a cache line so that
// cores working on neighbouring shards do not fight over one line.
type shard struct {
	shardState
	_ [prefetch.LineSize - unsafe.Sizeof(shardState{})%prefetch.LineSize]byte
}

// store is an open memory store.
type store struct {
	shards []shard
	mask   uint32
	now    func() time.Time
	// ownClock: now is the system clock, and run keeps clock, the
	// current second, which announces read instead of calling it (the
	// call was 2 % of the tracker's CPU on the UDP load). It lags by up
	// to clockTick, so peers live at most that much longer, never less.
	ownClock bool
	clock    atomic.Uint32
	// epoch is the time the store's second counters start from: a peer
	// lifetime before the store opened, so that the last-seen times of
	// peers loaded from a snapshot, which are up to a lifetime old, fit.
	epoch time.Time
	// life is the peer lifetime in whole seconds, rounded up so a peer is
	// never dropped before its lifetime has passed.
	life uint32

	// key hashes peer identities; see peerKey. It changes only when a
	// snapshot is installed, under every shard lock.
	key peerKey
	// layout is what every record carries beside the endpoint: the peer
	// id when answers may list it.
	layout uint8

	// snapshotFile is written by Close and read by Open; empty: none.
	snapshotFile string
	log          *slog.Logger

	closeOnce sync.Once
	closeErr  error
	stop      chan struct{}
	done      chan struct{}
}

func open(c config, opts cache.Options) (*store, error) {
	if opts.PeerLifetime <= 0 {
		return nil, errors.New("peer lifetime must be positive")
	}
	ownClock := opts.Now == nil
	if ownClock {
		opts.Now = time.Now
	}
	if opts.Log == nil {
		opts.Log = slog.New(slog.DiscardHandler)
	}
	life := uint32(min((opts.PeerLifetime+time.Second-1)/time.Second, math.MaxUint32))
	st := &store{
		ownClock: ownClock,
		shards:   make([]shard, c.shards),
		mask:     uint32(c.shards - 1),
		now:      opts.Now,
		// The head start is capped at 2^30 seconds (34 years), a quarter
		// of the counters' range.
		epoch:        opts.Now().Add(-time.Duration(min(life, 1<<30)) * time.Second),
		life:         life,
		snapshotFile: c.snapshotFile,
		layout:       layoutOf(c),
		log:          opts.Log,
		key:          peerKey{rand.Uint64(), rand.Uint64()},
		stop:         make(chan struct{}),
		done:         make(chan struct{}),
	}
	for i := range st.shards {
		sh := &st.shards[i]
		sh.swarms = hashtab.New[bittorrent.InfoHash, swarm]()
		sh.rng.Seed(rand.Uint64(), rand.Uint64())
	}
	st.clock.Store(st.seconds(st.now()))
	go st.run(c.reapInterval)
	return st, nil
}

// layoutOf returns the record layout a configuration asks for.
func layoutOf(c config) uint8 {
	if c.peerIDs {
		return withID
	}
	return 0
}

// clockTick is how often run moves the store's own clock on.
const clockTick = 100 * time.Millisecond

// nowSeconds is the current second of the store's counter.
func (st *store) nowSeconds() uint32 {
	if st.ownClock {
		return st.clock.Load()
	}
	return st.seconds(st.now())
}

// seconds turns a time into the store's second counter.
func (st *store) seconds(t time.Time) uint32 {
	d := t.Sub(st.epoch)
	if d < 0 {
		return 0
	}
	return uint32(d / time.Second)
}

// shard returns the shard of a hash. Info hashes are uniform (they are
// SHA-1 or SHA-256 digests), so their first bytes spread swarms evenly.
func (st *store) shard(h bittorrent.InfoHash) *shard {
	return &st.shards[binary.LittleEndian.Uint32(h[:4])&st.mask]
}

// Announce implements cache.Store. It never blocks on anything but a shard
// lock, so ctx is not consulted.
func (st *store) Announce(_ context.Context, a *cache.Announce, r *cache.Result) error {
	now := st.nowSeconds()
	v4 := a.IPv4.Unmap()
	want4 := v4.Is4()
	want6 := a.IPv6.Is6() && !a.IPv6.Is4In6()
	adds := (want4 || want6) && a.Event != bittorrent.Stopped

	*r = cache.Result{Peers4: r.Peers4, Peers6: r.Peers6}
	sh := st.shard(a.InfoHash)
	sh.mu.Lock()
	defer sh.mu.Unlock()

	hv := sh.swarms.Hash(&a.InfoHash)
	s := sh.lookup(&a.InfoHash, hv, now, st.life)
	if s == nil {
		if !adds {
			// Neither a departing peer nor one without an address may
			// create a swarm.
			return nil
		}
		s = newSwarm(now, st.layout)
		sh.swarms.SetHashed(&a.InfoHash, hv, s)
	}
	s.touched = now

	// The key is read under the shard lock: a snapshot replaces it while
	// holding every shard lock.
	h := st.key.sum(a.UserID, &a.PeerID)
	i4, i6 := s.locate(h, want6 && !want4)
	var f uint8
	switch {
	case i4 >= 0:
		f = s.v4.flags(i4)
		r.PrevUploaded, r.PrevDownloaded = s.v4.totals(i4)
	case i6 >= 0:
		f = s.v6.flags(i6)
		r.PrevUploaded, r.PrevDownloaded = s.v6.totals(i6)
	}
	r.Known = i4 >= 0 || i6 >= 0
	switch {
	case a.Event == bittorrent.Stopped:
		if i4 >= 0 {
			s.v4.remove(i4)
		}
		if i6 >= 0 {
			s.v6.remove(i6)
		}
		if r.Known {
			s.peers--
			if f&seeder != 0 {
				s.seeders--
			}
		}
		i4, i6 = -1, -1
	case r.Known || adds:
		i4, i6, f, r.Snatched = s.update(i4, i6, f, h, a, v4, want4, want6, now)
	}

	r.Complete = s.seeders
	r.Incomplete = s.peers - s.seeders
	r.Snatches = s.snatches
	if (i4 >= 0 || i6 >= 0) && a.NumWant > 0 {
		// A peer that does not download gets only downloaders.
		downOnly := f&(seeder|paused) != 0
		var ids4, ids6 *[]bittorrent.PeerID
		if a.PeerIDs {
			ids4, ids6 = &r.Peers4.IDs, &r.Peers6.IDs
		}
		if want4 {
			r.Peers4.Compact = s.v4.pick(i4, downOnly, a.NumWant, &sh.rng, r.Peers4.Compact, ids4)
		}
		if want6 {
			r.Peers6.Compact = s.v6.pick(i6, downOnly, a.NumWant, &sh.rng, r.Peers6.Compact, ids6)
		}
	}
	return nil
}

// warmLines is how much of a swarm's IPv4 records Warm asks for, in cache
// lines: all of a small swarm's, which an announce scans for the peer and
// hands out, and a bounded part of a big one's, whose peer is found through
// its index and whose answer is a few records from a random place.
const warmLines = 16

// Warm implements cache.Warmer. It asks the CPU for each swarm's slot in
// its shard's index, then for the swarm, then for the start of its IPv4
// records (package prefetch), each step for a group of hashes before the
// next step reads what the last one asked for. So the cache misses of a
// batch's swarms overlap, where an announce waits for its own one after
// another; BenchmarkAnnounceBatch measures the difference. Prefetches
// rather than loads, because the shard's lock is a full barrier: loads
// would have to arrive before the next swarm's lookup could start,
// prefetches need not.
func (st *store) Warm(hashes []bittorrent.InfoHash) {
	var (
		hv    [warmGroup]uint64
		found [warmGroup]*swarm
	)
	for len(hashes) > 0 {
		group := hashes[:min(len(hashes), warmGroup)]
		hashes = hashes[len(group):]
		for i := range group {
			sh := st.shard(group[i])
			sh.mu.Lock()
			hv[i] = sh.swarms.Hash(&group[i])
			sh.swarms.Prefetch(hv[i])
			sh.mu.Unlock()
		}
		for i := range group {
			sh := st.shard(group[i])
			sh.mu.Lock()
			s := sh.swarms.FindHashed(&group[i], hv[i])
			sh.mu.Unlock()
			if s != nil {
				prefetch.Lines(unsafe.Pointer(s), 2, prefetch.LineSize)
			}
			found[i] = s
		}
		for i, s := range found[:len(group)] {
			if s == nil {
				continue
			}
			// The swarm may have been removed since, which makes this a
			// wasted hint, not a wrong one; the lock keeps the read of
			// its records' slice apart from an announce's write.
			sh := st.shard(group[i])
			sh.mu.Lock()
			if b := s.v4.b; len(b) > 0 {
				prefetch.Lines(unsafe.Pointer(&b[0]), min((len(b)+prefetch.LineSize-1)/prefetch.LineSize, warmLines), prefetch.LineSize)
			}
			sh.mu.Unlock()
		}
	}
}

// warmGroup is how many swarms Warm asks for before it asks for their
// records: a UDP batch's worth.
const warmGroup = 32

// update applies an announce other than stopped to the peer with hash h,
// whose records are in slots i4 and i6 (-1: none) with flags f, adding a
// record for each family the announce came over. It returns the records'
// slots, which change when the peer starts or stops downloading, and the
// peer's new flags.
func (s *swarm) update(i4, i6 int, f uint8, h uint64, a *cache.Announce, v4 netip.Addr, want4, want6 bool, now uint32) (int, int, uint8, bool) {
	known := i4 >= 0 || i6 >= 0
	was := known && f&seeder != 0
	f &^= seeder | paused | dual
	if a.Seeder {
		f |= seeder
	}
	if a.Event == bittorrent.Paused {
		f |= paused
	}
	snatch := false
	if a.Event == bittorrent.Completed && f&snatched == 0 {
		f |= snatched
		s.snatches++
		snatch = true
	}
	if want4 {
		if i4 < 0 {
			i4 = s.v4.add(h)
			s.v4.setID(i4, &a.PeerID)
		}
		s.v4.setEndpoint(i4, v4, a.Port, now)
	}
	if want6 {
		if i6 < 0 {
			i6 = s.v6.add(h)
			s.v6.setID(i6, &a.PeerID)
		}
		s.v6.setEndpoint(i6, a.IPv6, a.Port, now)
	}
	if !known {
		s.peers++
	}
	if is := f&seeder != 0; is != was {
		if is {
			s.seeders++
		} else {
			s.seeders--
		}
	}
	if i4 >= 0 && i6 >= 0 {
		f |= dual
	}
	if i4 >= 0 {
		s.v4.setTotals(i4, a.Uploaded, a.Downloaded)
		i4 = s.v4.setFlags(i4, f)
	}
	if i6 >= 0 {
		s.v6.setTotals(i6, a.Uploaded, a.Downloaded)
		i6 = s.v6.setFlags(i6, f)
	}
	return i4, i6, f, snatch
}

// Scrape implements cache.Store.
func (st *store) Scrape(_ context.Context, hashes []bittorrent.InfoHash, dst []bittorrent.Scrape) ([]bittorrent.Scrape, error) {
	now := st.nowSeconds()
	for _, h := range hashes {
		sh := st.shard(h)
		sh.mu.Lock()
		if s := sh.lookup(&h, sh.swarms.Hash(&h), now, st.life); s != nil {
			dst = append(dst, bittorrent.Scrape{
				InfoHash:   h,
				Complete:   s.seeders,
				Incomplete: s.peers - s.seeders,
				Snatches:   s.snatches,
			})
		}
		sh.mu.Unlock()
	}
	return dst, nil
}

// Walk implements cache.Walker. It copies one shard's counts at a time and
// calls fn without holding a lock, so announces are held up for no longer
// than a reaper pass over one shard.
func (st *store) Walk(ctx context.Context, fn func(bittorrent.Scrape) error) error {
	now := st.nowSeconds()
	var batch []bittorrent.Scrape
	for i := range st.shards {
		if err := ctx.Err(); err != nil {
			return err
		}
		sh := &st.shards[i]
		batch = batch[:0]
		sh.mu.Lock()
		for h, s := range sh.swarms.All() {
			if sh.keep(h, s, now, st.life) {
				batch = append(batch, bittorrent.Scrape{
					InfoHash:   *h,
					Complete:   s.seeders,
					Incomplete: s.peers - s.seeders,
					Snatches:   s.snatches,
				})
			}
		}
		sh.mu.Unlock()
		for _, sc := range batch {
			if err := fn(sc); err != nil {
				return err
			}
		}
	}
	return nil
}

// Close stops the reaper and, with snapshot_file set, writes the swarms
// there. The store's memory goes when it is no longer referenced. Calls
// after the first wait for it, return its error and write nothing.
func (st *store) Close() error {
	st.closeOnce.Do(func() {
		close(st.stop)
		<-st.done
		if st.snapshotFile != "" {
			st.closeErr = st.saveSnapshotFile()
		}
	})
	return st.closeErr
}

// run reaps every interval until Close.
func (st *store) run(interval time.Duration) {
	defer close(st.done)
	t := time.NewTicker(interval)
	defer t.Stop()
	var clock <-chan time.Time
	if st.ownClock {
		c := time.NewTicker(clockTick)
		defer c.Stop()
		clock = c.C
	}
	for {
		select {
		case <-st.stop:
			return
		case <-clock:
			st.clock.Store(st.seconds(st.now()))
		case <-t.C:
			st.reap(st.now())
		}
	}
}

// reap does to every swarm what a lookup does to one, so that swarms nobody
// asks about do not hold memory for ever, and trims the ones that shrank.
// It holds one shard's lock at a time, so announces elsewhere go on
// meanwhile.
func (st *store) reap(t time.Time) {
	now := st.seconds(t)
	for i := range st.shards {
		sh := &st.shards[i]
		sh.mu.Lock()
		for h, s := range sh.swarms.All() {
			if sh.keep(h, s, now, st.life) {
				s.compact()
			}
		}
		sh.swarms.Shrink()
		sh.mu.Unlock()
	}
}

// lookup returns the swarm of h with its expired endpoints dropped, or nil.
// A swarm left empty for a peer lifetime since its last announce is deleted
// here rather than only by the reaper, so what clients see never depends
// on when the reaper last ran.
// hv is h's hash in the shard's table.
func (sh *shard) lookup(h *bittorrent.InfoHash, hv uint64, now, life uint32) *swarm {
	if s := sh.swarms.FindHashed(h, hv); s != nil && sh.keep(h, s, now, life) {
		return s
	}
	return nil
}

// keep drops the expired endpoints of s, the swarm of h, and reports
// whether it stays; a swarm with no peers left a peer lifetime after its
// last announce is removed.
func (sh *shard) keep(h *bittorrent.InfoHash, s *swarm, now, life uint32) bool {
	s.sweep(now, life)
	if s.peers == 0 && expired(s.touched, now, life) {
		sh.swarms.Delete(h)
		return false
	}
	return true
}
