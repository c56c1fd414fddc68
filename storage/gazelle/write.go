package gazelle

import (
	"context"
	"database/sql"
	"encoding/hex"
	"fmt"
	"math"
	"net/netip"
	"strconv"
	"time"

	"github.com/chihaya/chihaya/storage"
)

// Each batch is written as few multi-row statements as the limits below
// allow. A statement stays far below max_allowed_packet (4 MiB on old
// MySQL, 16 MiB on MariaDB, 64 MiB on MySQL 8) and short enough that a
// slow one does not hold row locks Gazelle's page loads wait for.
const (
	maxRowsPerStatement = 1000
	maxStatementBytes   = 1 << 20
)

// Column widths of xbt_files_users and xbt_snatched that strict SQL mode
// enforces: a longer value fails the statement (error 1406).
const (
	userAgentWidth = 51
	ipWidth        = 15
)

// statement describes a multi-row statement: head, the rows separated by
// sep, then tail. row appends row i; first is true for the first row of a
// statement, which names the columns of a derived table.
type statement struct {
	head, sep, tail string
	row             func(dst []byte, i int, first bool) []byte
}

// build turns rows 0..n-1, those include accepts (all when nil), into
// statements of at most maxRowsPerStatement rows and about
// maxStatementBytes bytes.
func build(n int, st statement, include func(i int) bool) []string {
	var (
		out  []string
		buf  []byte
		rows int
	)
	flush := func() {
		if rows > 0 {
			buf = append(buf, st.tail...)
			out = append(out, string(buf))
		}
		buf, rows = buf[:0], 0
	}
	for i := 0; i < n; i++ {
		if include != nil && !include(i) {
			continue
		}
		if rows == 0 {
			buf = append(buf, st.head...)
		} else {
			buf = append(buf, st.sep...)
		}
		buf = st.row(buf, i, rows == 0)
		rows++
		if rows == maxRowsPerStatement || len(buf) >= maxStatementBytes {
			flush()
		}
	}
	flush()
	return out
}

// execOne runs one statement under the per-statement timeout.
func (s *Store) execOne(ctx context.Context, q string) error {
	ctx, cancel := context.WithTimeout(ctx, s.cfg.timeout)
	defer cancel()
	_, err := s.db.ExecContext(ctx, q)
	return err
}

// exec runs the statements of one batch: a single statement on its own (it
// is atomic), several in one transaction so the batch applies whole or not
// at all. Errors name the batch kind and are classified for the flusher.
func (s *Store) exec(ctx context.Context, kind string, stmts []string) error {
	var err error
	switch len(stmts) {
	case 0:
		return nil
	case 1:
		err = s.execOne(ctx, stmts[0])
	default:
		err = s.execTx(ctx, stmts)
	}
	if err != nil {
		return classify(fmt.Errorf("gazelle: write %s: %w", kind, err))
	}
	return nil
}

func (s *Store) execTx(ctx context.Context, stmts []string) error {
	// The transaction as a whole gets one timeout per statement plus
	// one for the commit; database/sql rolls it back if that expires.
	ctx, cancel := context.WithTimeout(ctx, s.cfg.timeout*time.Duration(len(stmts)+1))
	defer cancel()
	tx, err := s.db.BeginTx(ctx, nil)
	if err != nil {
		return err
	}
	for _, q := range stmts {
		if err := execIn(ctx, tx, s.cfg.timeout, q); err != nil {
			_ = tx.Rollback()
			return err
		}
	}
	return tx.Commit()
}

func execIn(ctx context.Context, tx *sql.Tx, timeout time.Duration, q string) error {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	_, err := tx.ExecContext(ctx, q)
	return err
}

// Users.
//
// ops: an upsert into users_leech_stats. INSERT IGNORE turns a row for a
// deleted user (foreign key error 1452) into a warning instead of failing
// the batch.
//
// what: the totals are columns of users_main, whose other NOT NULL columns
// (Username, …) have no defaults, so Ocelot's upsert fails in strict mode.
// An UPDATE joined to the batch as a derived table touches existing users
// only: no junk rows, nothing to fail on.
//
// Both clamp the total at zero: the What columns are unsigned, and a
// negative total means nothing on either schema.
const (
	usersOPSHead = "INSERT IGNORE INTO users_leech_stats (UserID, Uploaded, Downloaded) VALUES "
	usersOPSTail = " ON DUPLICATE KEY UPDATE" +
		" Uploaded = GREATEST(CAST(Uploaded AS SIGNED) + VALUES(Uploaded), 0)," +
		" Downloaded = GREATEST(CAST(Downloaded AS SIGNED) + VALUES(Downloaded), 0)"
	usersWhatHead = "UPDATE users_main u JOIN ("
	usersWhatTail = ") d ON u.ID = d.ID SET" +
		" u.Uploaded = GREATEST(CAST(u.Uploaded AS SIGNED) + d.Up, 0)," +
		" u.Downloaded = GREATEST(CAST(u.Downloaded AS SIGNED) + d.Down, 0)"
)

// WriteUsers adds transfer deltas to the users' totals. Rows without
// transfer are skipped; rows of deleted users are dropped without error.
func (s *Store) WriteUsers(ctx context.Context, rows []storage.UserDelta) error {
	if s.cfg.readonly {
		return nil
	}
	include := func(i int) bool { return rows[i].Uploaded != 0 || rows[i].Downloaded != 0 }
	st := statement{head: usersOPSHead, sep: ",", tail: usersOPSTail,
		row: func(b []byte, i int, _ bool) []byte {
			r := &rows[i]
			b = append(b, '(')
			b = strconv.AppendUint(b, uint64(r.UserID), 10)
			b = append(b, ',')
			b = strconv.AppendInt(b, r.Uploaded, 10)
			b = append(b, ',')
			b = strconv.AppendInt(b, r.Downloaded, 10)
			return append(b, ')')
		}}
	if s.cfg.dialect == DialectWhat {
		st = statement{head: usersWhatHead, sep: " UNION ALL ", tail: usersWhatTail,
			row: func(b []byte, i int, first bool) []byte {
				r := &rows[i]
				b = append(b, "SELECT "...)
				b = strconv.AppendUint(b, uint64(r.UserID), 10)
				b = alias(b, first, "ID")
				b = append(b, ',')
				b = strconv.AppendInt(b, r.Uploaded, 10)
				b = alias(b, first, "Up")
				b = append(b, ',')
				b = strconv.AppendInt(b, r.Downloaded, 10)
				return alias(b, first, "Down")
			}}
	}
	return s.exec(ctx, "users", build(len(rows), st, include))
}

// alias names a derived table's column in its first row.
func alias(b []byte, first bool, name string) []byte {
	if !first {
		return b
	}
	b = append(b, " AS "...)
	return append(b, name...)
}

// Torrents.
//
// Seeders and Leechers are overwritten with the live counts, Snatched is
// incremented, Balance is overwritten (it is the tracker's running total
// since it started). last_action moves to the time the swarm was last seen
// seeded, never backwards (rows may be written late, after a retry); a
// torrent without a seeder since the last write keeps its last_action.
//
// ops: an upsert into torrents_leech_stats, INSERT IGNORE so that a
// deleted torrent's row (foreign key error 1452) is a warning. what: an
// UPDATE joined to the batch, for the same reasons as the users.
const (
	torrentsOPSHead = "INSERT IGNORE INTO torrents_leech_stats (TorrentID, Seeders, Leechers, Snatched, Balance, last_action) VALUES "
	torrentsOPSTail = " ON DUPLICATE KEY UPDATE" +
		" Seeders = VALUES(Seeders), Leechers = VALUES(Leechers)," +
		" Snatched = Snatched + VALUES(Snatched), Balance = VALUES(Balance)," +
		" last_action = IF(VALUES(last_action) IS NULL OR last_action > VALUES(last_action), last_action, VALUES(last_action))"
	torrentsWhatHead = "UPDATE torrents t JOIN ("
	torrentsWhatTail = ") d ON t.ID = d.ID SET" +
		" t.Seeders = d.Seeders, t.Leechers = d.Leechers," +
		" t.Snatched = t.Snatched + d.Snatched, t.balance = d.Balance," +
		" t.last_action = IF(d.Seen IS NULL OR t.last_action > d.Seen, t.last_action, d.Seen)"
)

// WriteTorrents writes the torrents' swarm counters. Rows of deleted
// torrents are dropped without error.
func (s *Store) WriteTorrents(ctx context.Context, rows []storage.TorrentStats) error {
	if s.cfg.readonly {
		return nil
	}
	st := statement{head: torrentsOPSHead, sep: ",", tail: torrentsOPSTail,
		row: func(b []byte, i int, _ bool) []byte {
			r := &rows[i]
			b = append(b, '(')
			b = appendTorrentValues(b, r, false)
			return append(b, ')')
		}}
	if s.cfg.dialect == DialectWhat {
		st = statement{head: torrentsWhatHead, sep: " UNION ALL ", tail: torrentsWhatTail,
			row: func(b []byte, i int, first bool) []byte {
				b = append(b, "SELECT "...)
				return appendTorrentValues(b, &rows[i], first)
			}}
	}
	return s.exec(ctx, "torrents", build(len(rows), st, nil))
}

// appendTorrentValues appends id, seeders, leechers, snatches, balance and
// the last-seeded time, named when first is set.
func appendTorrentValues(b []byte, r *storage.TorrentStats, first bool) []byte {
	b = strconv.AppendUint(b, uint64(r.TorrentID), 10)
	b = alias(b, first, "ID")
	b = append(b, ',')
	b = strconv.AppendUint(b, uint64(r.Seeders), 10)
	b = alias(b, first, "Seeders")
	b = append(b, ',')
	b = strconv.AppendUint(b, uint64(r.Leechers), 10)
	b = alias(b, first, "Leechers")
	b = append(b, ',')
	b = strconv.AppendUint(b, uint64(r.Snatches), 10)
	b = alias(b, first, "Snatched")
	b = append(b, ',')
	b = strconv.AppendInt(b, r.Balance, 10)
	b = alias(b, first, "Balance")
	b = append(b, ',')
	switch {
	case !r.Seeded.IsZero() && r.Seeded.Unix() > 0:
		// FROM_UNIXTIME gives the session's time zone, the one NOW()
		// and Gazelle's own DATETIME values use.
		b = append(b, "FROM_UNIXTIME("...)
		b = strconv.AppendInt(b, r.Seeded.Unix(), 10)
		b = append(b, ')')
	case r.Seeders > 0:
		b = append(b, "NOW()"...)
	default:
		b = append(b, "CAST(NULL AS DATETIME)"...)
	}
	return alias(b, first, "Seen")
}

// Peers (xbt_files_users).
//
// A full row (new peer, stopped, moved to seeding, transfer changed)
// overwrites the transfer columns, Ocelot's "heavy" statement; other rows
// only refresh the times and counters, Ocelot's "light" statement. Both
// insert every column when the row does not exist, so a row Gazelle purged
// comes back with the peer's real state rather than as the phantom seeder
// (active=1, remaining=0) Ocelot's light insert creates. useragent is never
// overwritten, as in Ocelot; ip only when it is empty, so a dual-stack peer
// whose first row came from its IPv6 announce (which the 15-character
// column cannot hold) gets its IPv4 address once that announce arrives.
//
// Plain INSERT: the table has no foreign keys, and the values are cut to
// fit, so a failure here is a value the schema cannot hold and is reported.
const (
	peersHead = "INSERT INTO xbt_files_users (uid, fid, peer_id, active, uploaded, downloaded, upspeed, downspeed, remaining, corrupt, timespent, announced, ip, useragent, mtime) VALUES "
	heavyTail = " ON DUPLICATE KEY UPDATE" +
		" active = VALUES(active), uploaded = VALUES(uploaded), downloaded = VALUES(downloaded)," +
		" upspeed = VALUES(upspeed), downspeed = VALUES(downspeed), remaining = VALUES(remaining)," +
		" corrupt = VALUES(corrupt), timespent = VALUES(timespent), announced = VALUES(announced), mtime = VALUES(mtime)," +
		" ip = IF(ip = '', VALUES(ip), ip)"
	lightTail = " ON DUPLICATE KEY UPDATE" +
		" upspeed = 0, downspeed = 0," +
		" timespent = VALUES(timespent), announced = VALUES(announced), mtime = VALUES(mtime)," +
		" ip = IF(ip = '', VALUES(ip), ip)"
)

// WritePeers writes the peers' rows. Full rows and the others go to two
// statements (one transaction when the batch holds both). A stopped peer
// must come as a full row: a light row only refreshes the times.
func (s *Store) WritePeers(ctx context.Context, rows []storage.PeerRow) error {
	if s.cfg.readonly {
		return nil
	}
	now := time.Now()
	row := func(b []byte, i int, _ bool) []byte { return appendPeer(b, &rows[i], now) }
	heavy := func(i int) bool { return rows[i].Full }
	light := func(i int) bool { return !rows[i].Full }
	stmts := build(len(rows), statement{head: peersHead, sep: ",", tail: heavyTail, row: row}, heavy)
	stmts = append(stmts, build(len(rows), statement{head: peersHead, sep: ",", tail: lightTail, row: row}, light)...)
	return s.exec(ctx, "peers", stmts)
}

func appendPeer(b []byte, r *storage.PeerRow, now time.Time) []byte {
	// A light row says the peer is still there, whatever Active holds;
	// it reaches the column only when the row had been purged.
	active := r.Active || !r.Full
	b = append(b, '(')
	b = strconv.AppendUint(b, uint64(r.UserID), 10)
	b = append(b, ',')
	b = strconv.AppendUint(b, uint64(r.TorrentID), 10)
	b = append(b, ',')
	b = appendHex(b, r.PeerID[:])
	b = append(b, ',')
	b = appendBool(b, active)
	for _, v := range [...]uint64{r.Uploaded, r.Downloaded} {
		b = append(b, ',')
		b = strconv.AppendUint(b, min(v, math.MaxInt64), 10)
	}
	for _, v := range [...]uint64{r.UpSpeed, r.DownSpeed} {
		b = append(b, ',')
		b = strconv.AppendUint(b, min(v, math.MaxInt32), 10)
	}
	for _, v := range [...]uint64{r.Left, r.Corrupt} {
		b = append(b, ',')
		b = strconv.AppendUint(b, min(v, math.MaxInt64), 10)
	}
	b = append(b, ',')
	b = strconv.AppendInt(b, min(max(int64(r.TimeSpent/time.Second), 0), math.MaxInt32), 10)
	b = append(b, ',')
	b = strconv.AppendUint(b, min(uint64(r.Announces), math.MaxInt32), 10)
	b = append(b, ',')
	b = appendIP(b, r.Addr)
	b = append(b, ',')
	b = appendHex(b, cleanUserAgent(r.UserAgent))
	b = append(b, ',')
	t := r.Time
	if t.IsZero() {
		t = now
	}
	b = strconv.AppendInt(b, min(max(t.Unix(), 0), math.MaxInt32), 10)
	return append(b, ')')
}

// cleanUserAgent makes the User-Agent header fit useragent in any character
// set: printable ASCII only (anything else becomes '?'), cut to the column
// width. Strict mode fails the whole statement on a value that is too long
// (1406) or not valid in the column's character set (1366).
func cleanUserAgent(ua string) []byte {
	n := min(len(ua), userAgentWidth)
	out := make([]byte, n)
	for i := 0; i < n; i++ {
		c := ua[i]
		if c < 0x20 || c > 0x7e {
			c = '?'
		}
		out[i] = c
	}
	return out
}

// appendIP appends the peer's address as the quoted dotted IPv4 Gazelle's
// varchar(15) columns hold, or ” for a protected user (zero Addr) and for
// IPv6, which does not fit.
func appendIP(b []byte, a netip.Addr) []byte {
	b = append(b, '\'')
	if a = a.Unmap(); a.Is4() {
		// Only digits and dots: nothing to escape.
		b = a.AppendTo(b)
	}
	return append(b, '\'')
}

// appendHex appends v as a hexadecimal string literal, which needs no
// escaping whatever the sql_mode (NO_BACKSLASH_ESCAPES, ANSI_QUOTES).
func appendHex(b []byte, v []byte) []byte {
	if len(v) == 0 {
		return append(b, "''"...)
	}
	b = append(b, "X'"...)
	b = hex.AppendEncode(b, v)
	return append(b, '\'')
}

func appendBool(b []byte, v bool) []byte {
	if v {
		return append(b, '1')
	}
	return append(b, '0')
}

// Snatches (xbt_snatched): an append-only log. INSERT IGNORE, as in Ocelot
// 2, so that a site that added a unique key sees duplicates dropped.
const snatchesHead = "INSERT IGNORE INTO xbt_snatched (uid, fid, tstamp, IP) VALUES "

// WriteSnatches appends the completions to the snatch log.
func (s *Store) WriteSnatches(ctx context.Context, rows []storage.Snatch) error {
	if s.cfg.readonly {
		return nil
	}
	now := time.Now()
	st := statement{head: snatchesHead, sep: ",",
		row: func(b []byte, i int, _ bool) []byte {
			r := &rows[i]
			t := r.Time
			if t.IsZero() {
				t = now
			}
			b = append(b, '(')
			b = strconv.AppendUint(b, uint64(r.UserID), 10)
			b = append(b, ',')
			b = strconv.AppendUint(b, uint64(r.TorrentID), 10)
			b = append(b, ',')
			b = strconv.AppendInt(b, min(max(t.Unix(), 0), math.MaxInt32), 10)
			b = append(b, ',')
			b = appendIP(b, r.Addr)
			return append(b, ')')
		}}
	return s.exec(ctx, "snatches", build(len(rows), st, nil))
}

// Token use (users_freeleeches.Downloaded, which OPS Gazelle reads to
// expire a token once about the torrent's size was spared).
//
// Time is NOT NULL without a default, so the insert supplies NOW() (Ocelot
// does not, and its token statement fails on strict servers even for rows
// that exist). The rows come from a join with users_main and torrents, so a
// row for a deleted user or torrent inserts nothing. A row the site does
// not have is inserted already expired: the tracker records what the token
// spared but never grants a token the site did not.
const (
	tokensHead = "INSERT IGNORE INTO users_freeleeches (UserID, TorrentID, Time, Expired, Downloaded)" +
		" SELECT d.UserID, d.TorrentID, NOW(), 1, d.Downloaded FROM ("
	tokensTail = ") d JOIN users_main u ON u.ID = d.UserID JOIN torrents t ON t.ID = d.TorrentID" +
		" ON DUPLICATE KEY UPDATE Downloaded = users_freeleeches.Downloaded + VALUES(Downloaded)"
)

// WriteTokens adds the download the tokens spared to their rows.
func (s *Store) WriteTokens(ctx context.Context, rows []storage.TokenUse) error {
	if s.cfg.readonly {
		return nil
	}
	include := func(i int) bool { return rows[i].Downloaded > 0 }
	st := statement{head: tokensHead, sep: " UNION ALL ", tail: tokensTail,
		row: func(b []byte, i int, first bool) []byte {
			r := &rows[i]
			b = append(b, "SELECT "...)
			b = strconv.AppendUint(b, uint64(r.UserID), 10)
			b = alias(b, first, "UserID")
			b = append(b, ',')
			b = strconv.AppendUint(b, uint64(r.TorrentID), 10)
			b = alias(b, first, "TorrentID")
			b = append(b, ',')
			b = strconv.AppendInt(b, r.Downloaded, 10)
			return alias(b, first, "Downloaded")
		}}
	return s.exec(ctx, "tokens", build(len(rows), st, include))
}

// expireTokensHead and expireTokensTail mark tokens used up in the database,
// for a tracker configured without site_url.
const (
	expireTokensHead = "UPDATE users_freeleeches f JOIN ("
	expireTokensTail = ") d ON f.UserID = d.UserID AND f.TorrentID = d.TorrentID SET f.Expired = 1"
)

func (s *Store) expireTokensInDB(ctx context.Context, tokens []storage.Token) error {
	st := statement{head: expireTokensHead, sep: " UNION ALL ", tail: expireTokensTail,
		row: func(b []byte, i int, first bool) []byte {
			b = append(b, "SELECT "...)
			b = strconv.AppendUint(b, uint64(tokens[i].UserID), 10)
			b = alias(b, first, "UserID")
			b = append(b, ',')
			b = strconv.AppendUint(b, uint64(tokens[i].TorrentID), 10)
			return alias(b, first, "TorrentID")
		}}
	return s.exec(ctx, "expired tokens", build(len(tokens), st, nil))
}
