package storage

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"time"
)

// FlusherConfig configures a Flusher.
type FlusherConfig struct {
	// Interval is how often pending rows are written (Ocelot: 3s).
	Interval time.Duration
	// Timeout bounds one write, of at most batchRows rows.
	Timeout time.Duration
	// MaxBackoff caps the wait after failed writes, which doubles from
	// Interval.
	MaxBackoff time.Duration
	// MaxPeerRows bounds the pending peer rows; past it the oldest are
	// dropped (the peer's next announce writes its row again). Users',
	// torrents', snatches' and tokens' rows are never dropped for size:
	// they are summed per key, so they are bounded by the number of
	// users and torrents.
	MaxPeerRows int
}

// Flusher collects statistics from announces, sums them per key and writes
// them to a Writer in batches, one goroutine per kind of row, so a slow
// kind does not hold up the others. A failed write puts its rows back,
// summed with what arrived since, and is retried with back-off; a batch
// that fails because of its rows is split until the bad row is found and
// dropped. Nothing counted is lost while the database is down, and nothing
// is written twice. A Source may keep some kind's rows itself until they
// are written.
type Flusher struct {
	cfg FlusherConfig
	log *slog.Logger

	users    *queue[uint32, UserDelta]
	torrents *queue[uint32, TorrentStats]
	peers    *queue[peerKey, PeerRow]
	snatches *queue[int, Snatch]
	tokens   *queue[Token, TokenUse]
	expired  *queue[Token, Token]
	flushers []flusher

	stop     chan struct{}
	stopOnce sync.Once
	wg       sync.WaitGroup
}

type peerKey struct {
	torrent, user uint32
	peer          [20]byte
}

// flusher is the kind-independent face of a queue.
type flusher interface {
	flush(ctx context.Context) error
	name() string
	pending() int
	stats() QueueStats
}

// NewFlusher returns a flusher writing to w; Start starts it.
func NewFlusher(w Writer, cfg FlusherConfig, log *slog.Logger) *Flusher {
	f := &Flusher{cfg: cfg, log: log, stop: make(chan struct{})}
	f.users = newQueue("users", w.WriteUsers, func(r UserDelta) uint32 { return r.UserID },
		func(old, new UserDelta) UserDelta {
			new.Uploaded += old.Uploaded
			new.Downloaded += old.Downloaded
			return new
		}, 0, f)
	f.torrents = newQueue("torrents", w.WriteTorrents, func(r TorrentStats) uint32 { return r.TorrentID },
		func(old, new TorrentStats) TorrentStats {
			// Counters and balance are the newest state; snatches
			// and the last seeded time accumulate.
			new.Snatches += old.Snatches
			if new.Seeded.IsZero() {
				new.Seeded = old.Seeded
			}
			return new
		}, 0, f)
	f.peers = newQueue("peers", w.WritePeers, func(r PeerRow) peerKey { return peerKey{r.TorrentID, r.UserID, r.PeerID} },
		func(old, new PeerRow) PeerRow {
			// A light row after a full one must still write the
			// full row's changes; the tracker fills every field of
			// every row, so the newest values are complete.
			new.Full = new.Full || old.Full
			return new
		}, cfg.MaxPeerRows, f)
	f.snatches = newQueue[int, Snatch]("snatches", w.WriteSnatches, nil, nil, 0, f)
	f.tokens = newQueue("tokens", w.WriteTokens, func(r TokenUse) Token { return Token{r.UserID, r.TorrentID} },
		func(old, new TokenUse) TokenUse {
			new.Downloaded += old.Downloaded
			return new
		}, 0, f)
	f.expired = newQueue("expired tokens", w.ExpireTokens, func(t Token) Token { return t },
		func(_, new Token) Token { return new }, 0, f)
	f.flushers = []flusher{f.users, f.torrents, f.peers, f.snatches, f.tokens, f.expired}
	return f
}

// Source holds rows of one kind that are pending outside the Flusher, in
// structures the announce path updates anyway (the tracker keeps each live
// peer's row in its session entry), so that an announce does not pay for a
// second lookup in the Flusher's own index. Each write takes the source's
// rows after the Flusher's own, which are older: rows a failed write put
// back, and rows added with Add*. Rows of one key are merged as Add* merges
// them.
type Source[R any] interface {
	// Take appends the rows that changed since the last Take to dst and
	// forgets them, and returns the extended slice. Each key appears at
	// most once.
	Take(dst []R) []R
	// Pending counts the rows the next Take would return.
	Pending() int
}

// Sources are the rows a Flusher takes from elsewhere, besides those added
// to it; a nil field is no source.
type Sources struct {
	Users    Source[UserDelta]
	Torrents Source[TorrentStats]
	Peers    Source[PeerRow]
}

// SetSources replaces the sources the Flusher takes rows from.
func (f *Flusher) SetSources(s Sources) {
	f.users.setSource(s.Users)
	f.torrents.setSource(s.Torrents)
	f.peers.setSource(s.Peers)
}

// AddUser adds transfer to a user's pending delta.
func (f *Flusher) AddUser(d UserDelta) { f.users.add(d) }

// AddTorrent records a torrent's current counters.
func (f *Flusher) AddTorrent(t TorrentStats) { f.torrents.add(t) }

// AddPeer records a peer's current state.
func (f *Flusher) AddPeer(p PeerRow) { f.peers.add(p) }

// AddSnatch records a completion.
func (f *Flusher) AddSnatch(s Snatch) { f.snatches.add(s) }

// AddTokenUse adds download spared by a token.
func (f *Flusher) AddTokenUse(t TokenUse) { f.tokens.add(t) }

// ExpireToken queues a used-up token for the web application.
func (f *Flusher) ExpireToken(t Token) { f.expired.add(t) }

// Pending counts the rows waiting to be written.
func (f *Flusher) Pending() Pending {
	return Pending{
		Users: f.users.pending(), Torrents: f.torrents.pending(), Peers: f.peers.pending(),
		Snatches: f.snatches.pending(), Tokens: f.tokens.pending(), ExpiredTokens: f.expired.pending(),
	}
}

// QueueStats are one kind of row's running totals.
type QueueStats struct {
	Name    string
	Pending int
	// Written and Dropped count rows; Retries counts failed writes
	// whose rows were put back.
	Written, Dropped, Retries uint64
	// LastWrite is the duration of the last successful write.
	LastWrite time.Duration
	LastError string
}

// Stats returns every kind's running totals.
func (f *Flusher) Stats() []QueueStats {
	out := make([]QueueStats, 0, len(f.flushers))
	for _, q := range f.flushers {
		out = append(out, q.stats())
	}
	return out
}

// Start starts the periodic writes.
func (f *Flusher) Start() {
	for _, q := range f.flushers {
		f.wg.Add(1)
		go f.run(q)
	}
}

func (f *Flusher) run(q flusher) {
	defer f.wg.Done()
	wait := f.cfg.Interval
	timer := time.NewTimer(wait)
	defer timer.Stop()
	for {
		select {
		case <-f.stop:
			return
		case <-timer.C:
		}
		// Each write has its own timeout (see batchRows); the flush as
		// a whole has none.
		err := q.flush(context.Background())
		if err != nil {
			wait = min(2*wait, f.cfg.MaxBackoff)
			f.log.Warn("storage write failed; rows kept for the next try", "kind", q.name(), "pending", q.pending(), "retry_in", wait, "err", err)
		} else {
			wait = f.cfg.Interval
		}
		timer.Reset(wait)
	}
}

// Flush writes everything pending now, once per kind.
func (f *Flusher) Flush(ctx context.Context) error {
	var errs []error
	for _, q := range f.flushers {
		if err := q.flush(ctx); err != nil {
			errs = append(errs, fmt.Errorf("%s: %w", q.name(), err))
		}
	}
	return errors.Join(errs...)
}

// Close stops the periodic writes and writes what is pending, retrying
// until it is written or ctx ends. It reports the rows that could not be
// written. Calling it again retries what is still pending.
func (f *Flusher) Close(ctx context.Context) error {
	f.stopOnce.Do(func() { close(f.stop) })
	f.wg.Wait()
	backoff := 100 * time.Millisecond
	for {
		err := f.Flush(ctx)
		if err == nil {
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("rows left unwritten at shutdown (%+v): %w", f.Pending(), err)
		case <-time.After(backoff):
			backoff = min(2*backoff, time.Second)
		}
	}
}

// queue holds the pending rows of one kind: in arrival order, one per key
// (rows for a key already pending are merged into it).
type queue[K comparable, R any] struct {
	kind  string
	write func(context.Context, []R) error
	key   func(R) K // nil: rows are never merged
	merge func(old, new R) R
	limit int
	f     *Flusher

	mu    sync.Mutex
	rows  []R
	index map[K]int
	// spare is the previous batch's slice, reused for the next rows so
	// that steady traffic does not regrow a slice every interval.
	spare []R
	st    QueueStats
	// source holds further rows, newer than rows; nil: none.
	source Source[R]
	// flushing serialises writes of this kind, so rows of one key are
	// never written out of order.
	flushing sync.Mutex
	// merged indexes a batch while a source's rows are merged into it;
	// only flush, under flushing, uses it.
	merged map[K]int
}

func newQueue[K comparable, R any](kind string, write func(context.Context, []R) error, key func(R) K, merge func(old, new R) R, limit int, f *Flusher) *queue[K, R] {
	q := &queue[K, R]{kind: kind, write: write, key: key, merge: merge, limit: limit, f: f}
	if key != nil {
		q.index = map[K]int{}
	}
	return q
}

func (q *queue[K, R]) name() string { return q.kind }

func (q *queue[K, R]) setSource(s Source[R]) {
	q.mu.Lock()
	q.source = s
	q.mu.Unlock()
}

// pending counts the queue's rows and its source's. A key pending in both
// counts twice; the bound on peer rows applies to the queue's alone.
func (q *queue[K, R]) pending() int {
	q.mu.Lock()
	n, src := len(q.rows), q.source
	q.mu.Unlock()
	// The source is asked without q.mu held: it may add rows to the
	// queue while holding its own locks.
	if src != nil {
		n += src.Pending()
	}
	return n
}

func (q *queue[K, R]) stats() QueueStats {
	q.mu.Lock()
	st := q.st
	q.mu.Unlock()
	st.Name, st.Pending = q.kind, q.pending()
	return st
}

func (q *queue[K, R]) add(r R) {
	q.mu.Lock()
	defer q.mu.Unlock()
	q.addLocked(r)
	if q.limit > 0 && len(q.rows) > q.limit {
		q.dropOldestLocked(len(q.rows) - q.limit)
	}
}

func (q *queue[K, R]) addLocked(r R) {
	if q.key == nil {
		q.rows = append(q.rows, r)
		return
	}
	k := q.key(r)
	if i, ok := q.index[k]; ok {
		q.rows[i] = q.merge(q.rows[i], r)
		return
	}
	q.index[k] = len(q.rows)
	q.rows = append(q.rows, r)
}

func (q *queue[K, R]) dropOldestLocked(n int) {
	q.st.Dropped += uint64(n)
	rest := append([]R(nil), q.rows[n:]...)
	q.rows = q.rows[:0]
	q.reindexLocked(rest)
}

// reindexLocked makes rows the pending rows.
func (q *queue[K, R]) reindexLocked(rows []R) {
	q.rows = rows
	if q.key == nil {
		return
	}
	clear(q.index)
	for i, r := range rows {
		q.index[q.key(r)] = i
	}
}

// take removes and returns every pending row.
func (q *queue[K, R]) take() []R {
	q.mu.Lock()
	defer q.mu.Unlock()
	rows := q.rows
	q.rows, q.spare = q.spare[:0], nil
	if q.key != nil {
		clear(q.index)
	}
	return rows
}

// collect appends the source's rows to rows, the queue's own, merging the
// keys found in both so that the batch holds each key once. The source's
// rows are the newer: a key leaves the source only for the queue (a
// session that ended) or for a batch, and a failed batch comes back to the
// queue before the next collect.
func (q *queue[K, R]) collect(rows []R) []R {
	q.mu.Lock()
	src := q.source
	q.mu.Unlock()
	if src == nil {
		return rows
	}
	n := len(rows)
	rows = src.Take(rows)
	if n == 0 || len(rows) == n {
		return rows
	}
	if q.merged == nil {
		q.merged = make(map[K]int, n)
	}
	for i, r := range rows[:n] {
		q.merged[q.key(r)] = i
	}
	out := rows[:n]
	for _, r := range rows[n:] {
		if i, ok := q.merged[q.key(r)]; ok {
			out[i] = q.merge(out[i], r)
			continue
		}
		// out never passes the row being read, so the batch is
		// compacted in place.
		out = append(out, r)
	}
	clear(rows[len(out):])
	clear(q.merged)
	return out
}

// recycle offers a written batch's slice for reuse.
func (q *queue[K, R]) recycle(rows []R) {
	clear(rows) // drop references (user agents) held by old rows
	q.mu.Lock()
	if cap(rows) > cap(q.spare) {
		q.spare = rows[:0]
	}
	q.mu.Unlock()
}

// putBack returns the rows of a failed write, ahead of (older than) the
// rows that arrived meanwhile, merged with them per key.
func (q *queue[K, R]) putBack(failed []R) {
	q.mu.Lock()
	defer q.mu.Unlock()
	q.st.Retries++
	q.requeueLocked(failed)
}

// requeueLocked puts rows not written back in the queue, ahead of (older
// than) the rows that arrived meanwhile, merged with them per key.
func (q *queue[K, R]) requeueLocked(failed []R) {
	newer := q.rows
	q.rows = nil
	q.reindexLocked(make([]R, 0, len(failed)+len(newer)))
	for _, r := range failed {
		q.addLocked(r)
	}
	for _, r := range newer {
		q.addLocked(r)
	}
	if q.limit > 0 && len(q.rows) > q.limit {
		q.dropOldestLocked(len(q.rows) - q.limit)
	}
}

// batchRows is the most rows one write carries. A flush writes its rows
// in batches of this size, each within the write timeout, so that a
// backlog (after an outage, or under more rows than the database quite
// keeps up with) goes out piece by piece and what was written stays
// written. As one write, a backlog that takes longer than the timeout
// would fail whole at every try, for as long as the backlog lasts.
const batchRows = 10_000

// flush writes the pending rows, in batches of batchRows, each within the
// flusher's write timeout and ctx. At the first batch that fails it stops
// and puts that batch and the ones after it back.
func (q *queue[K, R]) flush(ctx context.Context) error {
	q.flushing.Lock()
	defer q.flushing.Unlock()
	rows := q.collect(q.take())
	if len(rows) == 0 {
		q.recycle(rows)
		return nil
	}
	start := time.Now()
	var err error
	for done := 0; done < len(rows); {
		batch := rows[done:min(done+batchRows, len(rows))]
		wctx, cancel := context.WithTimeout(ctx, q.f.cfg.Timeout)
		err = q.writeSplitting(wctx, batch)
		cancel()
		done += len(batch)
		if err != nil {
			// writeSplitting put back what of the batch failed;
			// the batches not tried go back too.
			if done < len(rows) {
				q.mu.Lock()
				q.requeueLocked(rows[done:])
				q.mu.Unlock()
			}
			break
		}
	}
	if err == nil {
		q.recycle(rows)
	}
	q.mu.Lock()
	if err == nil {
		q.st.LastWrite = time.Since(start)
		q.st.LastError = ""
	} else {
		q.st.LastError = err.Error()
	}
	q.mu.Unlock()
	return err
}

// writeSplitting writes rows; when the database refuses the rows
// themselves it halves the batch until the bad rows are alone, drops those,
// and writes the rest. Rows not written for any other reason go back.
func (q *queue[K, R]) writeSplitting(ctx context.Context, rows []R) error {
	err := q.write(ctx, rows)
	switch {
	case err == nil:
		q.mu.Lock()
		q.st.Written += uint64(len(rows))
		q.mu.Unlock()
		return nil
	case !IsPermanent(err):
		q.putBack(rows)
		return err
	case len(rows) == 1:
		q.mu.Lock()
		q.st.Dropped++
		q.mu.Unlock()
		q.f.log.Error("storage refused a row; dropping it", "kind", q.kind, "row", fmt.Sprintf("%+v", rows[0]), "err", err)
		return nil
	}
	half := len(rows) / 2
	err1 := q.writeSplitting(ctx, rows[:half])
	err2 := q.writeSplitting(ctx, rows[half:])
	return errors.Join(err1, err2)
}
