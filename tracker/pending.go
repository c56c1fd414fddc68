package tracker

import (
	"bytes"
	"context"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/chihaya/chihaya/bittorrent"
	"github.com/chihaya/chihaya/storage"
)

// Users' and torrents' rows wait for the Flusher in their entries, which
// admit has found already, so that an announce adds to a few atomics rather
// than to a keyed queue behind a lock. An entry joins its dirty list when
// its first change since the last write arrives; the Flusher takes the
// lists when it writes (userRows and torrentRows are its sources).
//
// Taking an entry clears its flag before reading its values: a change that
// lands after the read finds the flag clear and lists the entry again, and
// one that lands before it is read, so none is lost or taken twice.

// dirtyList is the entries of one kind with a pending row.
type dirtyList[E any] struct {
	mu      sync.Mutex
	entries []*E
	// spare is the previous take's slice, reused for the next entries.
	spare []*E
}

func (d *dirtyList[E]) add(e *E) {
	d.mu.Lock()
	d.entries = append(d.entries, e)
	d.mu.Unlock()
}

// take returns the listed entries; give the slice back with done.
func (d *dirtyList[E]) take() []*E {
	d.mu.Lock()
	defer d.mu.Unlock()
	out := d.entries
	d.entries, d.spare = d.spare[:0], nil
	return out
}

func (d *dirtyList[E]) done(s []*E) {
	clear(s)
	d.mu.Lock()
	if d.spare == nil {
		d.spare = s[:0]
	}
	d.mu.Unlock()
}

func (d *dirtyList[E]) len() int {
	d.mu.Lock()
	defer d.mu.Unlock()
	return len(d.entries)
}

// userRow is a user's transfer to credit at the next write.
type userRow struct {
	dirty            atomic.Bool
	uploaded, downed atomic.Int64
}

// credit adds to the user's pending delta.
func (p *Private) credit(e *userEntry, up, down int64) {
	e.row.uploaded.Add(up)
	e.row.downed.Add(down)
	if !e.row.dirty.Load() && e.row.dirty.CompareAndSwap(false, true) {
		p.dirtyUsers.add(e)
	}
}

// torrentRow is a torrent's counters and snatches for the next write; the
// balance is the entry's own.
type torrentRow struct {
	dirty atomic.Bool
	// counts packs seeders (high half) and leechers.
	counts   atomic.Uint64
	snatches atomic.Uint32
	// seeded is the last time a seeder was seen (Unix nanoseconds), 0
	// for none since the last write.
	seeded atomic.Int64
}

// count records a torrent's current counters and a snatch; seeded says an
// announce saw a seeder.
func (p *Private) count(e *torrentEntry, seeders, leechers uint32, snatched, seeded bool, now time.Time) {
	e.row.counts.Store(uint64(seeders)<<32 | uint64(leechers))
	if snatched {
		e.row.snatches.Add(1)
	}
	if seeded {
		e.row.seeded.Store(now.UnixNano())
	}
	if !e.row.dirty.Load() && e.row.dirty.CompareAndSwap(false, true) {
		p.dirtyTorrents.add(e)
	}
	e.lastFlushed.Store(now.Unix())
}

// userRows is the Flusher's source of user rows.
type userRows struct {
	p *Private
	// seen finds the row of an id met twice in one take: a user removed
	// and added again has a new entry, while the old one may still be
	// listed. Only Take uses it, and the Flusher calls Take from one
	// goroutine at a time.
	seen map[uint32]int
}

// Take implements storage.Source.
func (s *userRows) Take(dst []storage.UserDelta) []storage.UserDelta {
	d := &s.p.dirtyUsers
	entries := d.take()
	for _, e := range entries {
		e.row.dirty.Store(false)
		up, down := e.row.uploaded.Swap(0), e.row.downed.Swap(0)
		if up == 0 && down == 0 {
			continue
		}
		id := e.info.Load().ID
		if i, ok := s.seen[id]; ok {
			dst[i].Uploaded += up
			dst[i].Downloaded += down
			continue
		}
		s.seen[id] = len(dst)
		dst = append(dst, storage.UserDelta{UserID: id, Uploaded: up, Downloaded: down})
	}
	clear(s.seen)
	d.done(entries)
	return dst
}

// Pending implements storage.Source.
func (s *userRows) Pending() int { return s.p.dirtyUsers.len() }

// torrentRows is the Flusher's source of torrent rows.
type torrentRows struct {
	p *Private
	// seen is userRows.seen for torrents (deleted and registered again).
	seen map[uint32]int
	// hashes and counts serve the scrape of the taken torrents.
	hashes []bittorrent.InfoHash
	counts map[bittorrent.InfoHash]bittorrent.Scrape
}

// scrapeTimeout bounds the swarm store's answer to a take's scrape.
const scrapeTimeout = 5 * time.Second

// Take implements storage.Source.
func (s *torrentRows) Take(dst []storage.TorrentStats) []storage.TorrentStats {
	d := &s.p.dirtyTorrents
	entries := d.take()
	n := len(dst)
	// hashes[i] is the info hash of row dst[n+i].
	s.hashes = s.hashes[:0]
	for _, e := range entries {
		e.row.dirty.Store(false)
		c := e.row.counts.Load()
		info := e.info.Load()
		row := storage.TorrentStats{
			TorrentID: info.ID,
			Seeders:   uint32(c >> 32),
			Leechers:  uint32(c),
			Snatches:  e.row.snatches.Swap(0),
			Balance:   e.balance.Load(),
		}
		if ns := e.row.seeded.Swap(0); ns != 0 {
			row.Seeded = time.Unix(0, ns)
		}
		if i, ok := s.seen[row.TorrentID]; ok {
			// Listed under two entries; the torrent's newest
			// counters cannot be told apart, so keep either
			// entry's and add the snatches up.
			row.Snatches += dst[i].Snatches
			if row.Seeded.IsZero() {
				row.Seeded = dst[i].Seeded
			}
			dst[i] = row
			s.hashes[i-n] = info.InfoHash
			continue
		}
		s.seen[row.TorrentID] = len(dst)
		dst = append(dst, row)
		s.hashes = append(s.hashes, info.InfoHash)
	}
	clear(s.seen)
	d.done(entries)
	s.scrape(dst[n:])
	return dst
}

// scrape replaces the counters announces left in rows with the swarms'
// current ones. Two announces on a torrent may store their counters in the
// other order than the swarm took them, so the last stored could be stale;
// the swarm's own, read after the rows' flags were cleared, are not, and
// any later change lists the torrent again. If the store cannot answer, the
// stored counters stand.
func (s *torrentRows) scrape(rows []storage.TorrentStats) {
	if len(rows) == 0 {
		return
	}
	sorted := slices.Clone(s.hashes)
	slices.SortFunc(sorted, func(a, b bittorrent.InfoHash) int { return bytes.Compare(a[:], b[:]) })
	sorted = slices.Compact(sorted)
	ctx, cancel := context.WithTimeout(context.Background(), scrapeTimeout)
	files, err := s.p.t.swarms.Scrape(ctx, sorted, nil)
	cancel()
	if err != nil {
		return
	}
	if s.counts == nil {
		s.counts = make(map[bittorrent.InfoHash]bittorrent.Scrape, len(files))
	}
	for _, f := range files {
		s.counts[f.InfoHash] = f
	}
	for i := range rows {
		// A swarm the store does not know has no peers.
		c := s.counts[s.hashes[i]]
		rows[i].Seeders, rows[i].Leechers = c.Complete, c.Incomplete
	}
	clear(s.counts)
}

// Pending implements storage.Source.
func (s *torrentRows) Pending() int { return s.p.dirtyTorrents.len() }
