package postgres

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"

	"github.com/chihaya/chihaya/bittorrent"
	"github.com/chihaya/chihaya/storage"
)

// writeModes runs f against the fixtures once with the built-in bulk
// writes and once with rowStatements as custom per-row SQL, in parallel.
func writeModes(t *testing.T, f func(t *testing.T, db *TestDB, s *Store)) {
	RequirePostgres(t)
	for _, mode := range []string{"bulk", "per-row"} {
		t.Run(mode, func(t *testing.T) {
			t.Parallel()
			db := NewTestDB(t, BaseDSN(), true, true)
			var extra map[string]any
			if mode == "per-row" {
				extra = map[string]any{"queries": rowStatements}
			}
			s := db.Open(t, extra)
			if err := s.check(ctx); err != nil {
				t.Fatal(err)
			}
			f(t, db, s)
		})
	}
}

func TestWriteUsers(t *testing.T) {
	writeModes(t, func(t *testing.T, db *TestDB, s *Store) {
		db.Exec(t, "INSERT INTO users (id, passkey) VALUES (50, 'gone'); DELETE FROM users WHERE id = 50")
		totals := func(user int) []int64 {
			return db.Ints(t, "SELECT uploaded, downloaded FROM user_stats WHERE user_id = $1", user)
		}
		err := s.WriteUsers(ctx, []storage.UserDelta{
			{UserID: 1, Uploaded: 100, Downloaded: 50},
			{UserID: 3, Uploaded: 7},
			{UserID: 4},                               // nothing to add: skipped
			{UserID: 50, Uploaded: 5, Downloaded: 5},  // deleted
			{UserID: 999, Uploaded: 5, Downloaded: 5}, // never existed
		})
		if err != nil {
			t.Fatal(err)
		}
		if v := totals(1); v[0] != 1100 || v[1] != 550 {
			t.Errorf("user 1: %v, want 1100/550 (fixture 1000/500 plus the delta)", v)
		}
		if v := totals(3); v[0] != 7 || v[1] != 0 {
			t.Errorf("user 3: %v, want a new row 7/0", v)
		}
		if n := db.Int(t, "SELECT count(*) FROM user_stats"); n != 2 {
			t.Errorf("%d user_stats rows, want 2: a skipped or unknown user got one", n)
		}
		// A second batch adds to the first.
		if err := s.WriteUsers(ctx, []storage.UserDelta{{UserID: 1, Uploaded: 1, Downloaded: 2}, {UserID: 3, Uploaded: 3}}); err != nil {
			t.Fatal(err)
		}
		if v := totals(1); v[0] != 1101 || v[1] != 552 {
			t.Errorf("user 1 after two batches: %v, want 1101/552", v)
		}
		if v := totals(3); v[0] != 10 {
			t.Errorf("user 3 after two batches: %v, want 10", v)
		}
	})
}

func TestWriteTorrents(t *testing.T) {
	writeModes(t, func(t *testing.T, db *TestDB, s *Store) {
		row := func(torrent int) []int64 {
			return db.Ints(t, `SELECT seeders, leechers, snatches, balance, floor(extract(epoch FROM last_seeded))::bigint
				FROM torrent_stats WHERE torrent_id = $1`, torrent)
		}
		seeded := time.Date(2024, 5, 6, 7, 8, 9, 0, time.UTC)
		start := time.Now().Unix()
		err := s.WriteTorrents(ctx, []storage.TorrentStats{
			{TorrentID: 1, Seeders: 3, Leechers: 4, Snatches: 2, Balance: -500}, // seeders but no Seeded time: now
			{TorrentID: 2, Seeders: 0, Leechers: 1, Balance: 10},                // no seeder: NULL
			{TorrentID: 3, Seeders: 0, Leechers: 0, Snatches: 1, Seeded: seeded},
			{TorrentID: 99, Seeders: 1, Leechers: 1, Snatches: 1}, // no such torrent
		})
		if err != nil {
			t.Fatal(err)
		}
		end := time.Now().Unix()
		v := row(1)
		if v[0] != 3 || v[1] != 4 || v[2] != 12 || v[3] != -500 || v[4] < start || v[4] > end {
			t.Errorf("torrent 1: %v, want 3 seeders, 4 leechers, 12 snatches (10+2), balance -500, seeded now", v)
		}
		if v := row(2); v[2] != 0 || v[3] != 10 || v[4] != -1 {
			t.Errorf("torrent 2: %v, want a new row, balance 10, last_seeded NULL", v)
		}
		if v := row(3); v[2] != 31 || v[4] != seeded.Unix() {
			t.Errorf("torrent 3: %v, want 31 snatches and last_seeded %d", v, seeded.Unix())
		}
		la := row(1)[4]
		// Counters and balance are overwritten, snatches added, and
		// last_seeded never goes back.
		err = s.WriteTorrents(ctx, []storage.TorrentStats{
			{TorrentID: 1, Seeders: 0, Leechers: 1, Snatches: 1, Balance: 7},
			{TorrentID: 3, Seeders: 1, Seeded: seeded.Add(-time.Hour)},
		})
		if err != nil {
			t.Fatal(err)
		}
		if v := row(1); v[0] != 0 || v[1] != 1 || v[2] != 13 || v[3] != 7 || v[4] != la {
			t.Errorf("torrent 1 after the second batch: %v, want 0/1/13/7 and last_seeded %d", v, la)
		}
		if v := row(3); v[4] != seeded.Unix() {
			t.Errorf("torrent 3: last_seeded went back to %d", v[4])
		}
		if n := db.Int(t, "SELECT count(*) FROM torrent_stats WHERE torrent_id = 99"); n != 0 {
			t.Error("a row for the unknown torrent was written")
		}
	})
}

func peerID(s string) bittorrent.PeerID {
	var id bittorrent.PeerID
	copy(id[:], s)
	return id
}

// peerRow reads one peers row as text, nil if there is none.
func peerRow(t *testing.T, db *TestDB, torrent, user int, peer string) map[string]string {
	t.Helper()
	rows, err := db.Admin.Query(ctx, `SELECT coalesce(host(ip), 'NULL') AS ip, port, uploaded, downloaded, remaining, corrupt,
			up_speed, down_speed, time_spent, announces, active, user_agent, extract(epoch FROM updated_at)::bigint AS updated_at
		FROM peers WHERE torrent_id = $1 AND user_id = $2 AND peer_id = $3`, torrent, user, []byte(peer))
	if err != nil {
		t.Fatal(err)
	}
	m, err := pgx.CollectOneRow(rows, pgx.RowToMap)
	if errors.Is(err, pgx.ErrNoRows) {
		return nil
	}
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]string{}
	for k, v := range m {
		out[k] = fmt.Sprint(v)
	}
	return out
}

func TestWritePeers(t *testing.T) {
	writeModes(t, func(t *testing.T, db *TestDB, s *Store) {
		longUA := "Mozilla/5.0 \xff" + strings.Repeat("x", 300)
		when := time.Unix(1700000100, 0)
		full := []storage.PeerRow{
			{TorrentID: 1, UserID: 1, PeerID: peerID("-TR3000-aaaaaaaaaaaa"), Full: true, Active: true,
				Uploaded: 1000, Downloaded: 2000, Left: 3000, Corrupt: 4, UpSpeed: 50, DownSpeed: 60,
				TimeSpent: 90 * time.Second, Announces: 2, Addr: netip.MustParseAddr("10.1.2.3"), Port: 6881,
				UserAgent: longUA, Time: when},
			// Protected user: the tracker passes the zero Addr.
			{TorrentID: 1, UserID: 4, PeerID: peerID("-TR3000-bbbbbbbbbbbb"), Full: true, Active: true, Time: when},
			// IPv6 fits inet.
			{TorrentID: 1, UserID: 2, PeerID: peerID("-qB4500-cccccccccccc"), Full: true, Active: true,
				Addr: netip.MustParseAddr("2001:db8::1"), Port: 51413, Time: when},
			// IPv4-mapped IPv6 is IPv4.
			{TorrentID: 2, UserID: 1, PeerID: peerID("-qB4500-dddddddddddd"), Full: true, Active: true,
				Addr: netip.MustParseAddr("::ffff:192.0.2.7"), Time: when},
			// Unknown user, unknown torrent: left out, no failure.
			{TorrentID: 1, UserID: 999, PeerID: peerID("-TR3000-eeeeeeeeeeee"), Full: true, Active: true, Time: when},
			{TorrentID: 99, UserID: 1, PeerID: peerID("-TR3000-eeeeeeeeeeee"), Full: true, Active: true, Time: when},
		}
		if err := s.WritePeers(ctx, full); err != nil {
			t.Fatal(err)
		}
		r := peerRow(t, db, 1, 1, "-TR3000-aaaaaaaaaaaa")
		want := map[string]string{"ip": "10.1.2.3", "port": "6881", "uploaded": "1000", "downloaded": "2000", "remaining": "3000",
			"corrupt": "4", "up_speed": "50", "down_speed": "60", "time_spent": "90", "announces": "2", "active": "true",
			"updated_at": "1700000100"}
		for k, v := range want {
			if r[k] != v {
				t.Errorf("full row %s = %q, want %q", k, r[k], v)
			}
		}
		if ua := r["user_agent"]; len(ua) > 255 || !strings.HasPrefix(ua, "Mozilla/5.0 \uFFFDxxx") {
			t.Errorf("user_agent %q (%d bytes), want valid UTF-8 of at most 255 bytes", ua, len(ua))
		}
		for _, c := range []struct {
			torrent, user int
			peer, ip      string
		}{{1, 4, "-TR3000-bbbbbbbbbbbb", "NULL"}, {1, 2, "-qB4500-cccccccccccc", "2001:db8::1"}, {2, 1, "-qB4500-dddddddddddd", "192.0.2.7"}} {
			if r := peerRow(t, db, c.torrent, c.user, c.peer); r == nil || r["ip"] != c.ip {
				t.Errorf("peer %d/%d: row %v, want ip %s", c.torrent, c.user, r, c.ip)
			}
		}
		if n := db.Int(t, "SELECT count(*) FROM peers"); n != 4 {
			t.Errorf("%d peers, want 4 (rows of unknown users and torrents left out)", n)
		}

		// A light row refreshes the times and counters only; a stopped
		// peer (a full row) turns inactive with its final totals; a
		// light row whose row is gone inserts the peer's state.
		when2 := when.Add(30 * time.Minute)
		err := s.WritePeers(ctx, []storage.PeerRow{
			{TorrentID: 1, UserID: 1, PeerID: peerID("-TR3000-aaaaaaaaaaaa"), Active: true,
				Uploaded: 1, Downloaded: 1, Left: 1, UpSpeed: 9, TimeSpent: 1890 * time.Second, Announces: 3,
				Addr: netip.MustParseAddr("10.9.9.9"), Port: 1, UserAgent: "other", Time: when2},
			{TorrentID: 1, UserID: 4, PeerID: peerID("-TR3000-bbbbbbbbbbbb"), Full: true, Active: false,
				Uploaded: 77, Announces: 5, Time: when2},
			{TorrentID: 3, UserID: 3, PeerID: peerID("-TR3000-ffffffffffff"), Active: false,
				Uploaded: 5, Left: 1234, TimeSpent: time.Minute, Announces: 9, Addr: netip.MustParseAddr("10.0.0.3"),
				UserAgent: "Transmission/4.0", Time: when2},
		})
		if err != nil {
			t.Fatal(err)
		}
		r = peerRow(t, db, 1, 1, "-TR3000-aaaaaaaaaaaa")
		for k, v := range map[string]string{"uploaded": "1000", "downloaded": "2000", "remaining": "3000", "up_speed": "0", "down_speed": "0",
			"time_spent": "1890", "announces": "3", "updated_at": fmt.Sprint(when2.Unix()), "ip": "10.1.2.3", "port": "6881", "active": "true"} {
			if r[k] != v {
				t.Errorf("after a light row, %s = %q, want %q", k, r[k], v)
			}
		}
		if r := peerRow(t, db, 1, 4, "-TR3000-bbbbbbbbbbbb"); r["active"] != "false" || r["uploaded"] != "77" || r["announces"] != "5" {
			t.Errorf("stopped peer: %v, want active false, uploaded 77, announces 5", r)
		}
		r = peerRow(t, db, 3, 3, "-TR3000-ffffffffffff")
		if r == nil || r["active"] != "true" || r["remaining"] != "1234" || r["ip"] != "10.0.0.3" || r["user_agent"] != "Transmission/4.0" {
			t.Errorf("light row for a missing peer: %v, want the peer's state, active", r)
		}
	})
}

func TestWriteSnatches(t *testing.T) {
	writeModes(t, func(t *testing.T, db *TestDB, s *Store) {
		when := time.Unix(1700000000, 0)
		err := s.WriteSnatches(ctx, []storage.Snatch{
			{UserID: 1, TorrentID: 1, Time: when, Addr: netip.MustParseAddr("10.0.0.1")},
			{UserID: 4, TorrentID: 1, Time: when},                                           // protected
			{UserID: 2, TorrentID: 2, Time: when, Addr: netip.MustParseAddr("2001:db8::5")}, // IPv6
			{UserID: 999, TorrentID: 1, Time: when, Addr: netip.MustParseAddr("10.0.0.9")},  // unknown user
			{UserID: 1, TorrentID: 99, Time: when},                                          // unknown torrent
		})
		if err != nil {
			t.Fatal(err)
		}
		if n := db.Int(t, "SELECT count(*) FROM snatches"); n != 3 {
			t.Errorf("%d snatches, want 3", n)
		}
		if n := db.Int(t, "SELECT count(*) FROM snatches WHERE user_id = 1 AND torrent_id = 1 AND at = to_timestamp(1700000000) AND ip = '10.0.0.1'"); n != 1 {
			t.Error("alice's snatch not written as expected")
		}
		if got := db.Text(t, "SELECT coalesce(host(ip), 'NULL') FROM snatches WHERE user_id = 4"); got != "NULL" {
			t.Errorf("protected user's snatch ip %s, want NULL", got)
		}
		if got := db.Text(t, "SELECT host(ip) FROM snatches WHERE user_id = 2"); got != "2001:db8::5" {
			t.Errorf("IPv6 snatch ip %s", got)
		}
		// A user can snatch a torrent again.
		if err := s.WriteSnatches(ctx, []storage.Snatch{{UserID: 1, TorrentID: 1, Time: when}}); err != nil {
			t.Fatal(err)
		}
		if n := db.Int(t, "SELECT count(*) FROM snatches WHERE user_id = 1 AND torrent_id = 1"); n != 2 {
			t.Errorf("%d snatches of alice, want 2", n)
		}
	})
}

func TestWriteTokens(t *testing.T) {
	writeModes(t, func(t *testing.T, db *TestDB, s *Store) {
		err := s.WriteTokens(ctx, []storage.TokenUse{
			{UserID: 2, TorrentID: 1, Downloaded: 300},
			{UserID: 1, TorrentID: 2, Downloaded: 50}, // expired already: still recorded
			{UserID: 4, TorrentID: 3, Downloaded: 50}, // no token row: nothing
			{UserID: 999, TorrentID: 1, Downloaded: 1},
			{UserID: 3, TorrentID: 1}, // nothing spared: skipped
		})
		if err != nil {
			t.Fatal(err)
		}
		if v := db.Ints(t, "SELECT downloaded, expired::int FROM tokens WHERE user_id = 2 AND torrent_id = 1"); v[0] != 300 || v[1] != 0 {
			t.Errorf("bob's token: %v, want 300 spared, not expired", v)
		}
		if n := db.Int(t, "SELECT downloaded FROM tokens WHERE user_id = 1 AND torrent_id = 2"); n != 150 {
			t.Errorf("alice's used token: %d, want 150", n)
		}
		if n := db.Int(t, "SELECT count(*) FROM tokens"); n != 2 {
			t.Errorf("%d token rows, want 2: token use must never create one", n)
		}
		if err := s.WriteTokens(ctx, []storage.TokenUse{{UserID: 2, TorrentID: 1, Downloaded: 1}}); err != nil {
			t.Fatal(err)
		}
		if n := db.Int(t, "SELECT downloaded FROM tokens WHERE user_id = 2 AND torrent_id = 1"); n != 301 {
			t.Errorf("bob's token after two batches: %d", n)
		}
	})
}

func TestExpireTokens(t *testing.T) {
	writeModes(t, func(t *testing.T, db *TestDB, s *Store) {
		if err := s.ExpireTokens(ctx, []storage.Token{{UserID: 2, TorrentID: 1}, {UserID: 7, TorrentID: 7}}); err != nil {
			t.Fatal(err)
		}
		if n := db.Int(t, "SELECT expired::int FROM tokens WHERE user_id = 2 AND torrent_id = 1"); n != 1 {
			t.Error("token not expired")
		}
		if n := db.Int(t, "SELECT count(*) FROM tokens"); n != 2 {
			t.Error("expiring an unknown token inserted a row")
		}
	})
}

func TestReadonlyWritesNothing(t *testing.T) {
	RequirePostgres(t)
	db := NewTestDB(t, BaseDSN(), true, true)
	s := db.Open(t, map[string]any{"readonly": true})
	checksum := func() string {
		var sums []string
		for _, table := range []string{"users", "torrents", "tokens", "user_stats", "torrent_stats", "peers", "snatches"} {
			sums = append(sums, db.Text(t, "SELECT coalesce(md5(string_agg(t::text, ',' ORDER BY t::text)), '') FROM "+table+" t"))
		}
		return strings.Join(sums, " ")
	}
	before := checksum()
	err := errors.Join(
		s.WriteUsers(ctx, []storage.UserDelta{{UserID: 1, Uploaded: 1}}),
		s.WriteTorrents(ctx, []storage.TorrentStats{{TorrentID: 1, Seeders: 9}}),
		s.WritePeers(ctx, []storage.PeerRow{{TorrentID: 1, UserID: 1, Full: true, Active: true}}),
		s.WriteSnatches(ctx, []storage.Snatch{{UserID: 1, TorrentID: 1}}),
		s.WriteTokens(ctx, []storage.TokenUse{{UserID: 2, TorrentID: 1, Downloaded: 1}}),
		s.ExpireTokens(ctx, []storage.Token{{UserID: 2, TorrentID: 1}}),
		s.Start(ctx),
	)
	if err != nil {
		t.Fatal(err)
	}
	if after := checksum(); after != before {
		t.Errorf("readonly store changed the database: %s → %s", before, after)
	}
}

func TestPermanentErrors(t *testing.T) {
	writeModes(t, func(t *testing.T, db *TestDB, s *Store) {
		db.Exec(t, "ALTER TABLE user_stats ADD CONSTRAINT sane CHECK (uploaded < 1000000000000000)")
		err := s.WriteUsers(ctx, []storage.UserDelta{{UserID: 2, Uploaded: 5}, {UserID: 3, Uploaded: 1 << 60}})
		var pe *pgconn.PgError
		if !storage.IsPermanent(err) || !errors.As(err, &pe) || pe.Code != "23514" {
			t.Fatalf("check violation: %v, want a permanent error 23514", err)
		}
		// The batch applied whole or not at all.
		if n := db.Int(t, "SELECT count(*) FROM user_stats WHERE user_id = 2"); n != 0 {
			t.Error("a failed batch left a row")
		}
		// A lost connection is not permanent.
		s.Close()
		err = s.WriteUsers(ctx, []storage.UserDelta{{UserID: 1, Uploaded: 1}})
		if err == nil || storage.IsPermanent(err) {
			t.Fatalf("write on a closed store: %v, want a plain error", err)
		}
	})
}

// An id that does not fit a custom statement's integer parameter is the
// row's fault: permanent, so the flusher drops that row alone.
func TestPermanentRowError(t *testing.T) {
	RequirePostgres(t)
	db := NewTestDB(t, BaseDSN(), true, true)
	s := db.Open(t, map[string]any{"queries": rowStatements})
	f := storage.NewFlusher(s, storage.FlusherConfig{Interval: time.Hour, Timeout: time.Minute, MaxBackoff: time.Hour, MaxPeerRows: 100},
		slog.New(slog.NewTextHandler(io.Discard, nil)))
	f.AddUser(storage.UserDelta{UserID: 1, Uploaded: 10})
	f.AddUser(storage.UserDelta{UserID: 3_000_000_000, Uploaded: 10})
	f.AddUser(storage.UserDelta{UserID: 2, Uploaded: 20})
	if err := f.Flush(ctx); err != nil {
		t.Fatal(err)
	}
	if v := db.Ints(t, "SELECT (SELECT uploaded FROM user_stats WHERE user_id = 1), (SELECT uploaded FROM user_stats WHERE user_id = 2)"); v[0] != 1010 || v[1] != 20 {
		t.Errorf("the good rows: %v, want 1010 and 20", v)
	}
	if st := f.Stats()[0]; st.Dropped != 1 || st.Written != 2 {
		t.Errorf("users queue: %+v, want 2 written and the bad row dropped", st)
	}
}

func TestClassify(t *testing.T) {
	for code, permanent := range map[string]bool{"23505": true, "23503": true, "23514": true, "22003": true, "22021": true,
		"40001": false, "40P01": false, "57P01": false, "42P01": false, "08006": false} {
		err := classify(fmt.Errorf("wrapped: %w", &pgconn.PgError{Code: code}))
		if storage.IsPermanent(err) != permanent {
			t.Errorf("SQLSTATE %s: permanent = %v, want %v", code, !permanent, permanent)
		}
	}
	if storage.IsPermanent(classify(io.ErrUnexpectedEOF)) || storage.IsPermanent(classify(context.DeadlineExceeded)) {
		t.Error("connection errors classified permanent")
	}
}

func TestCommitUncertain(t *testing.T) {
	for _, c := range []struct {
		err  error
		want bool
	}{
		{&pgconn.PgError{Code: "40001"}, false},
		{pgx.ErrTxCommitRollback, false},
		{io.ErrUnexpectedEOF, true},
		{fmt.Errorf("commit: %w", context.DeadlineExceeded), true},
	} {
		if got := commitUncertain(c.err); got != c.want {
			t.Errorf("commitUncertain(%v) = %v, want %v", c.err, got, c.want)
		}
	}
}

// resolveCommit asks the server what became of a transaction whose COMMIT
// got no answer: by its id alone (marker 0), or, with a write marker, by
// the marker, since after a crash of the server the id of a transaction
// that never reached the WAL can be handed to another, which commits.
func TestResolveCommit(t *testing.T) {
	RequirePostgres(t)
	db := NewTestDB(t, BaseDSN(), true, false)
	s := db.Open(t, map[string]any{"timeout": "1s"})
	lost := errors.New("connection lost during COMMIT")
	for _, c := range []struct {
		name                string
		committed, rollback int64 // the markers written, 0: none
	}{{"by id", 0, 0}, {"by marker", 11, 12}} {
		if err := s.resolveCommit(ctx, "test", finishedTx(t, db, true, c.committed), c.committed, lost); err != nil {
			t.Errorf("%s: committed transaction: %v, want success", c.name, err)
		}
		if err := s.resolveCommit(ctx, "test", finishedTx(t, db, false, c.rollback), c.rollback, lost); !errors.Is(err, lost) {
			t.Errorf("%s: rolled back transaction: %v, want the commit error", c.name, err)
		}
	}
	// The id is of a committed transaction, but not the one that
	// carried marker 13: the batch was not written.
	if err := s.resolveCommit(ctx, "test", finishedTx(t, db, true, 14), 13, lost); !errors.Is(err, lost) {
		t.Errorf("reused transaction id: %v, want the commit error", err)
	}
	// A transaction still open stays "in progress" until the timeout.
	tx, err := db.Admin.Begin(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer tx.Rollback(ctx)
	var open int64
	if err := tx.QueryRow(ctx, "SELECT txid_current()").Scan(&open); err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	if err := s.resolveCommit(ctx, "test", open, 0, lost); !errors.Is(err, lost) || !strings.Contains(err.Error(), "outcome unknown") {
		t.Errorf("open transaction: %v, want an unknown outcome", err)
	}
	if d := time.Since(start); d < 900*time.Millisecond || d > 3*time.Second {
		t.Errorf("gave up after %v, want the 1s timeout", d)
	}
}

// finishedTx runs a transaction that writes marker token (none for 0),
// commits or rolls it back, and returns its id.
func finishedTx(t *testing.T, db *TestDB, commit bool, token int64) int64 {
	t.Helper()
	tx, err := db.Admin.Begin(ctx)
	if err != nil {
		t.Fatal(err)
	}
	var x int64
	if err := tx.QueryRow(ctx, "SELECT txid_current()").Scan(&x); err != nil {
		t.Fatal(err)
	}
	if token != 0 {
		if _, err := tx.Exec(ctx, "INSERT INTO write_markers (token) VALUES ($1)", token); err != nil {
			t.Fatal(err)
		}
	}
	if commit {
		err = tx.Commit(ctx)
	} else {
		err = tx.Rollback(ctx)
	}
	if err != nil {
		t.Fatal(err)
	}
	return x
}
