package postgres

import (
	"context"
	"encoding/hex"
	"errors"
	"fmt"
	"math"
	"math/rand/v2"
	"net/netip"
	"slices"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgtype"

	"github.com/chihaya/chihaya/storage"
)

// Every batch is one transaction, so it applies whole or not at all.
//
// The built-in statements write a batch in bulk: COPY into a temporary
// table, then one INSERT … SELECT … ON CONFLICT (or UPDATE … FROM) that
// merges it into the real table, joined to users and torrents so that rows
// of deleted ones are left out instead of failing the batch. For batches
// of 10,000 rows it measured about twice as fast as the same rows written
// by pipelined single-row statements (README.md has the figures).
//
// An operator's statement is per row: its named parameters are one row's
// values, and the batch runs it once per row, pipelined (pgx.Batch) in
// the transaction.

// bulk is the built-in write of one kind.
type bulk struct {
	// table is the temporary table the rows are copied into; create
	// makes it if this session does not have it yet. ON COMMIT DELETE
	// ROWS empties it at each commit, so it is created once per
	// connection and never dropped: no catalog churn at every flush.
	table  string
	create string
	// columns are the temporary table's, in the order a batch's fill
	// writes them; each bears the name of the per-row parameter it
	// stands for (perRow finds values by it), peers' is_full aside.
	columns []string
	// merges move the copied rows into the real tables, in order.
	merges []string
}

func newBulk(table, columns string, merges ...string) *bulk {
	var names []string
	for _, c := range strings.Split(columns, ",") {
		names = append(names, strings.Fields(c)[0])
	}
	return &bulk{
		table:   table,
		create:  "CREATE TEMPORARY TABLE IF NOT EXISTS " + table + " (" + columns + ") ON COMMIT DELETE ROWS",
		columns: names,
		merges:  merges,
	}
}

var (
	bulkUsers = newBulk("chihaya_users", "user_id bigint, uploaded bigint, downloaded bigint",
		`INSERT INTO user_stats AS s (user_id, uploaded, downloaded)
		SELECT d.user_id, d.uploaded, d.downloaded FROM pg_temp.chihaya_users d
		WHERE EXISTS (SELECT 1 FROM users u WHERE u.id = d.user_id)
		ORDER BY d.user_id
		ON CONFLICT (user_id) DO UPDATE SET
			uploaded = s.uploaded + EXCLUDED.uploaded, downloaded = s.downloaded + EXCLUDED.downloaded`)

	bulkTorrents = newBulk("chihaya_torrents",
		"torrent_id bigint, seeders bigint, leechers bigint, snatches bigint, balance bigint, last_seeded timestamptz",
		`INSERT INTO torrent_stats AS s (torrent_id, seeders, leechers, snatches, balance, last_seeded)
		SELECT d.torrent_id, d.seeders, d.leechers, d.snatches, d.balance, d.last_seeded FROM pg_temp.chihaya_torrents d
		WHERE EXISTS (SELECT 1 FROM torrents t WHERE t.id = d.torrent_id)
		ORDER BY d.torrent_id
		ON CONFLICT (torrent_id) DO UPDATE SET
			seeders = EXCLUDED.seeders, leechers = EXCLUDED.leechers,
			snatches = s.snatches + EXCLUDED.snatches, balance = EXCLUDED.balance,
			last_seeded = greatest(s.last_seeded, EXCLUDED.last_seeded)`)

	peerColumns = "torrent_id, user_id, peer_id, ip, port, uploaded, downloaded, remaining, corrupt, up_speed, down_speed, time_spent, announces, active, user_agent, updated_at"
	peerInsert  = `INSERT INTO peers AS p (` + peerColumns + `)
		SELECT d.torrent_id, d.user_id, d.peer_id, d.ip, d.port, d.uploaded, d.downloaded, d.remaining, d.corrupt,
			d.up_speed, d.down_speed, d.time_spent, d.announces, d.active, d.user_agent, d.updated_at
		FROM pg_temp.chihaya_peers d
		WHERE %s d.is_full
			AND EXISTS (SELECT 1 FROM torrents t WHERE t.id = d.torrent_id)
			AND EXISTS (SELECT 1 FROM users u WHERE u.id = d.user_id)
		ORDER BY d.torrent_id, d.user_id, d.peer_id
		ON CONFLICT (torrent_id, user_id, peer_id) DO UPDATE SET `
	bulkPeers = newBulk("chihaya_peers",
		"is_full boolean, torrent_id bigint, user_id bigint, peer_id bytea, ip inet, port bigint, uploaded bigint, downloaded bigint,"+
			" remaining bigint, corrupt bigint, up_speed bigint, down_speed bigint, time_spent bigint, announces bigint,"+
			" active boolean, user_agent text, updated_at timestamptz",
		// A full row overwrites everything.
		fmt.Sprintf(peerInsert, "")+`ip = EXCLUDED.ip, port = EXCLUDED.port,
			uploaded = EXCLUDED.uploaded, downloaded = EXCLUDED.downloaded, remaining = EXCLUDED.remaining,
			corrupt = EXCLUDED.corrupt, up_speed = EXCLUDED.up_speed, down_speed = EXCLUDED.down_speed,
			time_spent = EXCLUDED.time_spent, announces = EXCLUDED.announces, active = EXCLUDED.active,
			user_agent = EXCLUDED.user_agent, updated_at = EXCLUDED.updated_at`,
		// A light row only says the peer is still there: times and
		// counters. A missing row (the site purged it) is inserted
		// whole, with the peer's real state.
		fmt.Sprintf(peerInsert, "NOT")+`up_speed = 0, down_speed = 0,
			time_spent = EXCLUDED.time_spent, announces = EXCLUDED.announces, updated_at = EXCLUDED.updated_at`)

	bulkSnatches = newBulk("chihaya_snatches", "user_id bigint, torrent_id bigint, at timestamptz, ip inet",
		`INSERT INTO snatches (user_id, torrent_id, at, ip)
		SELECT d.user_id, d.torrent_id, d.at, d.ip FROM pg_temp.chihaya_snatches d
		WHERE EXISTS (SELECT 1 FROM users u WHERE u.id = d.user_id)
			AND EXISTS (SELECT 1 FROM torrents t WHERE t.id = d.torrent_id)`)

	// Token rows are the site's: use is added to an existing row, never
	// a new one, which would grant a token.
	bulkTokens = newBulk("chihaya_tokens", "user_id bigint, torrent_id bigint, downloaded bigint",
		`UPDATE tokens t SET downloaded = t.downloaded + d.downloaded FROM pg_temp.chihaya_tokens d
		WHERE t.user_id = d.user_id AND t.torrent_id = d.torrent_id`)

	bulkExpire = newBulk("chihaya_expired", "user_id bigint, torrent_id bigint",
		`UPDATE tokens t SET expired = true FROM pg_temp.chihaya_expired d
		WHERE t.user_id = d.user_id AND t.torrent_id = d.torrent_id AND NOT t.expired`)
)

// copySource feeds COPY from a batch without building a row slice per
// row: fill writes row i into one reused slice, which pgx encodes before
// asking for the next.
type copySource struct {
	n       int
	include func(i int) bool
	fill    func(i int, vals []any)
	i       int
	vals    []any
}

func (c *copySource) Next() bool {
	for c.i++; c.i < c.n; c.i++ {
		if c.include == nil || c.include(c.i) {
			return true
		}
	}
	return false
}

func (c *copySource) Values() ([]any, error) {
	c.fill(c.i, c.vals)
	return c.vals, nil
}

func (c *copySource) Err() error { return nil }

// run copies the included rows into the temporary table and merges them.
func (b *bulk) run(ctx context.Context, tx pgx.Tx, n int, include func(int) bool, fill func(int, []any)) error {
	// No arguments: one round trip each with the simple protocol.
	if _, err := tx.Exec(ctx, b.create); err != nil {
		return err
	}
	src := &copySource{n: n, include: include, fill: fill, i: -1, vals: make([]any, len(b.columns))}
	if _, err := tx.CopyFrom(ctx, pgx.Identifier{"pg_temp", b.table}, b.columns, src); err != nil {
		return err
	}
	for _, m := range b.merges {
		if _, err := tx.Exec(ctx, m); err != nil {
			return err
		}
	}
	return nil
}

// batch is one write's rows as both paths see them: n rows, of which
// include picks those to write (nil: all), and fill, which writes row i's
// values into v in the order of the kind's bulk columns: int64, bool,
// []byte, string, netip.Addr, time.Time, or nil for NULL.
type batch struct {
	n       int
	include func(i int) bool
	fill    func(i int, v []any)
}

// writeWith writes the batch with st: the built-in bulk write b (COPY
// into b's temporary table, then b's merges) if st is the built-in one,
// else the operator's statement once per row.
func (w batch) writeWith(ctx context.Context, tx pgx.Tx, st *statement, b *bulk) error {
	if st.bulk {
		return b.run(ctx, tx, w.n, w.include, w.fill)
	}
	return perRow(ctx, tx, st, b.columns, w)
}

// writeBatch writes a kind that has one statement, key, whose built-in
// write is b. Nothing is written, and no transaction opened, if the store
// is read-only, the statement is turned off, or include leaves no row.
func (s *Store) writeBatch(ctx context.Context, kind, key string, b *bulk, w batch) error {
	st := s.cfg.queries[key]
	if s.cfg.readonly || st.disabled {
		return nil
	}
	if w.include != nil && !anyRow(w.n, w.include) {
		return nil
	}
	return s.write(ctx, kind, func(ctx context.Context, tx pgx.Tx) error {
		return w.writeWith(ctx, tx, st, b)
	})
}

// perRow runs an operator's statement once per included row, pipelined.
// The built-in columns bear the parameters' names: a parameter's value is
// the filled row's value of the column of that name.
func perRow(ctx context.Context, tx pgx.Tx, st *statement, columns []string, w batch) error {
	oids, err := st.describe(ctx, tx.Conn())
	if err != nil {
		return err
	}
	at := make([]int, len(st.params))
	for j, p := range st.params {
		at[j] = slices.Index(columns, st.def.params[p].name)
		if at[j] < 0 {
			panic("postgres: no built-in column for parameter @" + st.def.params[p].name)
		}
	}
	vals := make([]any, len(columns))
	b := &pgx.Batch{}
	for i := 0; i < w.n; i++ {
		if w.include != nil && !w.include(i) {
			continue
		}
		w.fill(i, vals)
		args := make([]any, len(st.params))
		for j, p := range st.params {
			prm := st.def.params[p]
			v, err := convert(vals[at[j]], prm.class, oids[j])
			if err != nil {
				return &rowError{fmt.Sprintf("queries.%s: @%s: %v", st.key(), prm.name, err)}
			}
			args[j] = v
		}
		b.Queue(st.sql, args...)
	}
	if b.Len() == 0 {
		return nil
	}
	return tx.SendBatch(ctx, b).Close()
}

// describe learns, once, the parameter types PostgreSQL infers for an
// operator's statement and checks them against the parameters' classes.
func (st *statement) describe(ctx context.Context, conn *pgx.Conn) ([]uint32, error) {
	st.mu.Lock()
	defer st.mu.Unlock()
	if st.oids != nil {
		return st.oids, nil
	}
	sd, err := conn.PgConn().Prepare(ctx, "", st.sql, nil)
	if err != nil {
		return nil, fmt.Errorf("queries.%s: %w", st.key(), err)
	}
	if err := st.checkParams(sd.ParamOIDs, typeNamer(conn)); err != nil {
		return nil, err
	}
	st.oids = append([]uint32{}, sd.ParamOIDs...)
	return st.oids, nil
}

// convert turns a value into what the parameter's type takes. It fails
// for an integer the type cannot hold, which is the row's fault.
func convert(v any, class paramClass, oid uint32) (any, error) {
	if v == nil {
		return nil, nil
	}
	switch class {
	case paramInt:
		return fitInt(v.(int64), oid)
	case paramBool:
		if oid != pgtype.BoolOID {
			if v.(bool) {
				return int64(1), nil
			}
			return int64(0), nil
		}
	case paramBytes:
		if oid != pgtype.ByteaOID {
			return hex.EncodeToString(v.([]byte)), nil
		}
	case paramInet:
		if oid != pgtype.InetOID {
			return v.(netip.Addr).String(), nil
		}
	case paramTime:
		t := v.(time.Time)
		switch oid {
		case pgtype.TimestamptzOID:
			return t, nil
		case pgtype.TimestampOID:
			// timestamp without time zone: the UTC wall clock.
			return t.UTC(), nil
		}
		return fitInt(t.Unix(), oid)
	}
	return v, nil
}

func fitInt(n int64, oid uint32) (any, error) {
	lo, hi := int64(math.MinInt64), int64(math.MaxInt64)
	switch oid {
	case pgtype.Float4OID, pgtype.Float8OID:
		// make_interval(secs => @time_spent) and the like.
		return float64(n), nil
	case pgtype.Int2OID:
		lo, hi = math.MinInt16, math.MaxInt16
	case pgtype.Int4OID:
		lo, hi = math.MinInt32, math.MaxInt32
	}
	if n < lo || n > hi {
		return nil, fmt.Errorf("%d is out of range for its type", n)
	}
	return n, nil
}

// write runs fn in one transaction, under the configured timeout, and
// classifies its error for the flusher.
func (s *Store) write(ctx context.Context, kind string, fn func(ctx context.Context, tx pgx.Tx) error) error {
	ctx, cancel := context.WithTimeout(ctx, s.cfg.timeout)
	defer cancel()
	if err := s.writeTx(ctx, kind, fn); err != nil {
		return classify(fmt.Errorf("postgres: write %s: %w", kind, err))
	}
	return nil
}

func (s *Store) writeTx(ctx context.Context, kind string, fn func(ctx context.Context, tx pgx.Tx) error) error {
	tx, err := s.pool.Begin(ctx)
	if err != nil {
		return err
	}
	rollback := func() { _ = tx.Rollback(context.WithoutCancel(ctx)) }
	// The transaction's id and its marker let a lost answer to COMMIT be
	// resolved: see resolveCommit. The marker's INSERT returns the id, so
	// both cost one round trip.
	var xid, token int64
	if s.hasMarkers(ctx, tx) {
		// 0 stands for "no marker".
		for token == 0 {
			token = rand.Int64()
		}
		err = tx.QueryRow(ctx, "INSERT INTO write_markers (token) VALUES ($1) RETURNING txid_current()", token).Scan(&xid)
	} else {
		err = tx.QueryRow(ctx, "SELECT txid_current()").Scan(&xid)
	}
	if err != nil {
		rollback()
		return err
	}
	if token != 0 && token%64 == 0 {
		// Markers are needed for seconds; a rare prune keeps the table
		// small without a job of its own.
		if _, err := tx.Exec(ctx, "DELETE FROM write_markers WHERE written_at < now() - interval '1 hour'"); err != nil {
			rollback()
			return err
		}
	}
	if err := fn(ctx, tx); err != nil {
		rollback()
		return err
	}
	err = tx.Commit(ctx)
	if err == nil || !commitUncertain(err) {
		return err
	}
	return s.resolveCommit(ctx, kind, xid, token, err)
}

// hasMarkers reports whether the database has the write_markers table
// (migration 0003). A database set up for custom statements may lack it;
// its writes then fall back to the transaction id alone. The answer is
// asked once, in the first write's transaction (which then fails if the
// server cannot be asked, as it would anyway).
func (s *Store) hasMarkers(ctx context.Context, tx pgx.Tx) bool {
	switch s.markers.Load() {
	case markersPresent:
		return true
	case markersAbsent:
		return false
	}
	var present bool
	if err := tx.QueryRow(ctx, "SELECT to_regclass('write_markers') IS NOT NULL").Scan(&present); err != nil {
		return false
	}
	if present {
		s.markers.Store(markersPresent)
	} else {
		s.markers.Store(markersAbsent)
		s.log.Warn("the database has no write_markers table (run `chihaya migrate`): a write whose COMMIT answer is lost in a crash of the database may be taken as written")
	}
	return present
}

// The states of Store.markers.
const (
	markersUnknown int32 = iota
	markersPresent
	markersAbsent
)

// commitUncertain reports whether a failed COMMIT may have committed: the
// server did not answer it (the connection broke, the time ran out)
// rather than answering with an error. pgconn.SafeToRetry cannot tell: a
// connection that breaks while the answer to a sent COMMIT is awaited
// reports "conn closed", which claims it is safe to retry. Asking the
// server costs one query, and only when a write failed.
func commitUncertain(err error) bool {
	var pe *pgconn.PgError
	return !errors.As(err, &pe) && !errors.Is(err, pgx.ErrTxCommitRollback)
}

// resolveCommit finds out whether a transaction whose COMMIT got no
// answer committed. Without this, the flusher would put the batch back
// and write it again: added twice, if the commit had in fact happened
// just before the connection broke. It asks the server (on another
// connection, retrying while the server is away) for the transaction's
// status, for up to the configured timeout. Only if that runs out is the
// outcome unknown; then the batch is retried, and the log says it may be
// counted twice.
func (s *Store) resolveCommit(ctx context.Context, kind string, xid, token int64, commitErr error) error {
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), s.cfg.timeout)
	defer cancel()
	wait := 50 * time.Millisecond
	for {
		committed, known, err := s.commitOutcome(ctx, xid, token)
		if known {
			if !committed {
				return commitErr
			}
			s.log.Info("a write's COMMIT got no answer but did commit", "kind", kind, "xid", xid, "err", commitErr)
			return nil
		}
		// In progress (the server is still committing it), or the
		// server is away: ask again.
		select {
		case <-ctx.Done():
			s.log.Error("a write's COMMIT got no answer and its outcome stays unknown; the batch will be written again and may be counted twice",
				"kind", kind, "xid", xid, "commit_err", commitErr, "status_err", err)
			return fmt.Errorf("commit outcome unknown (transaction %d): %w", xid, commitErr)
		case <-time.After(wait):
			wait = min(2*wait, time.Second)
		}
	}
}

// commitOutcome asks the server once what became of transaction xid;
// known is false while it is still in progress or the server cannot say.
// With a marker (token not 0) the marker decides and the id only tells
// whether the server is still committing: after a crash of the server the
// id may belong to another transaction.
func (s *Store) commitOutcome(ctx context.Context, xid, token int64) (committed, known bool, err error) {
	var status *string
	if token != 0 {
		var found bool
		err = s.pool.QueryRow(ctx, "SELECT txid_status($1), EXISTS (SELECT 1 FROM write_markers WHERE token = $2)", xid, token).Scan(&status, &found)
		if err != nil || found {
			return found, found, err
		}
		return false, status == nil || *status != "in progress", nil
	}
	if err = s.pool.QueryRow(ctx, "SELECT txid_status($1)", xid).Scan(&status); err != nil {
		return false, false, err
	}
	if status == nil {
		// Too old to be known: cannot happen within seconds.
		return false, false, errors.New("the server no longer knows the transaction")
	}
	switch *status {
	case "committed":
		return true, true, nil
	case "aborted":
		return false, true, nil
	}
	return false, false, nil
}

// WriteUsers adds transfer deltas to user_stats. Rows without transfer
// are skipped; rows of deleted users write nothing and do not fail.
func (s *Store) WriteUsers(ctx context.Context, rows []storage.UserDelta) error {
	return s.writeBatch(ctx, "users", keyWriteUsers, bulkUsers, batch{
		n:       len(rows),
		include: func(i int) bool { return rows[i].Uploaded != 0 || rows[i].Downloaded != 0 },
		fill: func(i int, v []any) {
			r := &rows[i]
			v[0], v[1], v[2] = int64(r.UserID), r.Uploaded, r.Downloaded
		},
	})
}

// WriteTorrents writes the torrents' swarm counters: seeders, leechers and
// balance overwritten, snatches added, last_seeded moved forward only.
// Rows of deleted torrents write nothing and do not fail.
func (s *Store) WriteTorrents(ctx context.Context, rows []storage.TorrentStats) error {
	now := time.Now()
	seeded := func(r *storage.TorrentStats) any {
		switch {
		case !r.Seeded.IsZero():
			return r.Seeded
		case r.Seeders > 0:
			// Counters refreshed without an announce (peers
			// expiring) still show a seeder now.
			return now
		}
		return nil
	}
	return s.writeBatch(ctx, "torrents", keyWriteTorrents, bulkTorrents, batch{
		n: len(rows),
		fill: func(i int, v []any) {
			r := &rows[i]
			v[0], v[1], v[2] = int64(r.TorrentID), clampCount(r.Seeders), clampCount(r.Leechers)
			v[3], v[4], v[5] = int64(r.Snatches), r.Balance, seeded(r)
		},
	})
}

// anyRow reports whether include accepts one of rows 0…n−1: a batch with
// nothing to write needs no transaction.
func anyRow(n int, include func(int) bool) bool {
	for i := range n {
		if include(i) {
			return true
		}
	}
	return false
}

// clampCount fits a live count into an integer column.
func clampCount(n uint32) int64 { return int64(min(n, math.MaxInt32)) }

// clampBytes fits a client's byte counter into a bigint.
func clampBytes(n uint64) int64 { return int64(min(n, math.MaxInt64)) }

// maxUserAgent bounds the stored User-Agent; a client may send kilobytes.
const maxUserAgent = 255

// cleanUserAgent makes a header storable as text: valid UTF-8 (PostgreSQL
// refuses anything else, and NUL always), at most maxUserAgent bytes, cut
// at a character boundary.
func cleanUserAgent(ua string) string {
	if len(ua) > 4*maxUserAgent {
		ua = ua[:4*maxUserAgent]
	}
	ua = strings.ToValidUTF8(strings.ReplaceAll(ua, "\x00", ""), "\uFFFD")
	if len(ua) > maxUserAgent {
		cut := maxUserAgent
		for cut > 0 && !utf8.RuneStart(ua[cut]) {
			cut--
		}
		ua = ua[:cut]
	}
	return ua
}

// addr is an address as a parameter: nil (NULL) for the zero Addr of a
// protected user, IPv4-mapped IPv6 as IPv4.
func addr(a netip.Addr) any {
	if !a.IsValid() {
		return nil
	}
	return a.Unmap()
}

// WritePeers writes the peers' rows. A full row overwrites every column;
// any other row only refreshes the times and counters of an existing row,
// or inserts the peer's whole state when the row is missing. Rows of
// deleted users or torrents write nothing and do not fail.
func (s *Store) WritePeers(ctx context.Context, rows []storage.PeerRow) error {
	full, light := s.cfg.queries[keyWritePeers], s.cfg.queries[keyWritePeersLight]
	if s.cfg.readonly || (full.disabled && light.disabled) {
		return nil
	}
	now := time.Now()
	all := batch{n: len(rows), fill: func(i int, v []any) {
		r := &rows[i]
		v[0], v[1], v[2], v[3] = r.Full, int64(r.TorrentID), int64(r.UserID), r.PeerID[:]
		v[4], v[5] = addr(r.Addr), int64(r.Port)
		v[6], v[7] = clampBytes(r.Uploaded), clampBytes(r.Downloaded)
		v[8], v[9] = clampBytes(r.Left), clampBytes(r.Corrupt)
		v[10], v[11] = clampBytes(r.UpSpeed), clampBytes(r.DownSpeed)
		v[12] = min(max(int64(r.TimeSpent/time.Second), 0), math.MaxInt32)
		v[13] = int64(min(r.Announces, math.MaxInt32))
		// A light row says the peer is still there, whatever Active
		// holds; it reaches the table only when the row is missing.
		v[14] = r.Active || !r.Full
		v[15] = cleanUserAgent(r.UserAgent)
		v[16] = orNow(r.Time, now)
	}}
	return s.write(ctx, "peers", func(ctx context.Context, tx pgx.Tx) error {
		if full.bulk && light.bulk {
			// Both built in: one COPY of every row, then both merges.
			return all.writeWith(ctx, tx, full, bulkPeers)
		}
		for _, part := range []struct {
			st   *statement
			full bool
		}{{full, true}, {light, false}} {
			if part.st.disabled {
				continue
			}
			// Each statement gets only its own rows, the built-in
			// one too when the other is custom.
			own := all
			own.include = func(i int) bool { return rows[i].Full == part.full }
			if err := own.writeWith(ctx, tx, part.st, bulkPeers); err != nil {
				return err
			}
		}
		return nil
	})
}

// orNow is t, or now for a row that carries no time.
func orNow(t, now time.Time) time.Time {
	if t.IsZero() {
		return now
	}
	return t
}

// WriteSnatches appends the completions to snatches. Rows of deleted users
// or torrents write nothing and do not fail.
func (s *Store) WriteSnatches(ctx context.Context, rows []storage.Snatch) error {
	now := time.Now()
	return s.writeBatch(ctx, "snatches", keyWriteSnatches, bulkSnatches, batch{
		n: len(rows),
		fill: func(i int, v []any) {
			r := &rows[i]
			v[0], v[1], v[2], v[3] = int64(r.UserID), int64(r.TorrentID), orNow(r.Time, now), addr(r.Addr)
		},
	})
}

// WriteTokens adds what tokens spared to tokens.downloaded. Rows without
// a token row write nothing.
func (s *Store) WriteTokens(ctx context.Context, rows []storage.TokenUse) error {
	return s.writeBatch(ctx, "tokens", keyWriteTokens, bulkTokens, batch{
		n:       len(rows),
		include: func(i int) bool { return rows[i].Downloaded != 0 },
		fill: func(i int, v []any) {
			r := &rows[i]
			v[0], v[1], v[2] = int64(r.UserID), int64(r.TorrentID), r.Downloaded
		},
	})
}

// ExpireTokens marks the tokens used up (expired = true).
func (s *Store) ExpireTokens(ctx context.Context, tokens []storage.Token) error {
	return s.writeBatch(ctx, "expired tokens", keyExpireTokens, bulkExpire, batch{
		n: len(tokens),
		fill: func(i int, v []any) {
			v[0], v[1] = int64(tokens[i].UserID), int64(tokens[i].TorrentID)
		},
	})
}
