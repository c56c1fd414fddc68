package gazelle

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/go-sql-driver/mysql"

	"github.com/chihaya/chihaya/bittorrent"
	"github.com/chihaya/chihaya/storage"
)

var ctx = context.Background()

func TestWriteUsers(t *testing.T) {
	dialects(t, func(t *testing.T, dialect string) {
		db := newTestDB(t, dialect, true)
		s := db.open(t, nil)
		table, id := userStats(dialect)
		totals := func(user int) (int64, int64) {
			v := db.int64s(t, fmt.Sprintf("SELECT Uploaded, Downloaded FROM %s WHERE %s = ?", table, id), user)
			return v[0], v[1]
		}
		usersBefore := db.count(t, "SELECT COUNT(*) FROM users_main")

		err := s.WriteUsers(ctx, []storage.UserDelta{
			{UserID: 1, Uploaded: 100, Downloaded: 50},
			{UserID: 3, Uploaded: 7},
			{UserID: 4},                                     // nothing to add: skipped
			{UserID: 999, Uploaded: 5, Downloaded: 5},       // deleted user
			{UserID: 1 << 30, Uploaded: 5, Downloaded: 500}, // never existed
		})
		if err != nil {
			t.Fatal(err)
		}
		if up, down := totals(1); up != 1100 || down != 550 {
			t.Errorf("user 1: %d/%d, want 1100/550 (fixture 1000/500 plus the delta)", up, down)
		}
		if up, down := totals(3); up != 7 || down != 0 {
			t.Errorf("user 3: %d/%d, want 7/0", up, down)
		}

		// A second batch adds to the first. A negative delta never
		// takes a total below zero (What's columns are unsigned).
		if err := s.WriteUsers(ctx, []storage.UserDelta{{UserID: 1, Uploaded: 1, Downloaded: 2}, {UserID: 3, Uploaded: -100}}); err != nil {
			t.Fatal(err)
		}
		if up, down := totals(1); up != 1101 || down != 552 {
			t.Errorf("user 1 after two batches: %d/%d, want 1101/552", up, down)
		}
		if up, _ := totals(3); up != 0 {
			t.Errorf("user 3 after a negative delta: %d, want 0", up)
		}

		if n := db.count(t, "SELECT COUNT(*) FROM "+table); n != usersBefore {
			t.Errorf("%s has %d rows, want %d: rows for unknown users were inserted", table, n, usersBefore)
		}
	})
}

func TestWriteUsersManyStatements(t *testing.T) {
	dialects(t, func(t *testing.T, dialect string) {
		db := newTestDB(t, dialect, true)
		s := db.open(t, nil)
		table, id := userStats(dialect)
		// 2,500 rows are three statements in one transaction; all but
		// one name users that do not exist.
		rows := []storage.UserDelta{{UserID: 1, Uploaded: 10}}
		for i := range 2499 {
			rows = append(rows, storage.UserDelta{UserID: uint32(10000 + i), Uploaded: 1})
		}
		if err := s.WriteUsers(ctx, rows); err != nil {
			t.Fatal(err)
		}
		if up := db.count(t, fmt.Sprintf("SELECT Uploaded FROM %s WHERE %s = 1", table, id)); up != 1010 {
			t.Errorf("user 1 uploaded %d, want 1010", up)
		}
		if n := db.count(t, "SELECT COUNT(*) FROM "+table+" WHERE "+id+" >= 10000"); n != 0 {
			t.Errorf("%d junk rows", n)
		}
	})
}

func TestWriteTorrents(t *testing.T) {
	dialects(t, func(t *testing.T, dialect string) {
		db := newTestDB(t, dialect, true)
		s := db.open(t, nil)
		table, id, balance := torrentStats(dialect)
		row := func(torrent int) (seeders, leechers, snatched, bal, lastAction int64) {
			v := db.int64s(t, fmt.Sprintf("SELECT Seeders, Leechers, Snatched, %s, UNIX_TIMESTAMP(last_action) FROM %s WHERE %s = ?", balance, table, id), torrent)
			return v[0], v[1], v[2], v[3], v[4]
		}
		rowsBefore := db.count(t, "SELECT COUNT(*) FROM torrents")
		seeded := time.Date(2024, 5, 6, 7, 8, 9, 0, time.UTC)

		start := db.count(t, "SELECT UNIX_TIMESTAMP(NOW())")
		err := s.WriteTorrents(ctx, []storage.TorrentStats{
			{TorrentID: 1, Seeders: 3, Leechers: 4, Snatches: 2, Balance: -500}, // seeded now
			{TorrentID: 2, Seeders: 0, Leechers: 1, Balance: 10},                // no seeder: last_action stays
			{TorrentID: 3, Seeders: 0, Leechers: 0, Snatches: 1, Seeded: seeded},
			{TorrentID: 99, Seeders: 1, Leechers: 1, Snatches: 1}, // deleted torrent
		})
		if err != nil {
			t.Fatal(err)
		}
		end := db.count(t, "SELECT UNIX_TIMESTAMP(NOW())")

		sd, lc, sn, bal, la := row(1)
		if sd != 3 || lc != 4 || sn != 12 || bal != -500 {
			t.Errorf("torrent 1: %d/%d/%d/%d, want 3 seeders, 4 leechers, 12 snatched (10+2), balance -500", sd, lc, sn, bal)
		}
		if la < start || la > end {
			t.Errorf("torrent 1: last_action %d, want NOW() (%d..%d)", la, start, end)
		}
		if _, _, _, bal, la := row(2); bal != 10 || la != -1 {
			t.Errorf("torrent 2: balance %d, last_action %d, want 10 and NULL", bal, la)
		}
		if _, _, sn, _, la := row(3); sn != 31 || la != seeded.Unix() {
			t.Errorf("torrent 3: snatched %d, last_action %d, want 31 and %d (the Seeded time)", sn, la, seeded.Unix())
		}

		// Counters are overwritten, snatches added, and last_action
		// never goes back.
		err = s.WriteTorrents(ctx, []storage.TorrentStats{
			{TorrentID: 1, Seeders: 0, Leechers: 1, Snatches: 1, Balance: 7},
			{TorrentID: 3, Seeders: 1, Seeded: seeded.Add(-time.Hour)},
		})
		if err != nil {
			t.Fatal(err)
		}
		if sd, lc, sn, bal, la2 := row(1); sd != 0 || lc != 1 || sn != 13 || bal != 7 || la2 != la {
			t.Errorf("torrent 1 after the second batch: %d/%d/%d/%d last_action %d, want 0/1/13/7 and %d", sd, lc, sn, bal, la2, la)
		}
		if _, _, _, _, la := row(3); la != seeded.Unix() {
			t.Errorf("torrent 3: last_action went back to %d", la)
		}

		if n := db.count(t, "SELECT COUNT(*) FROM torrents"); n != rowsBefore {
			t.Errorf("torrents has %d rows, want %d", n, rowsBefore)
		}
		if n := db.count(t, "SELECT COUNT(*) FROM "+table+" WHERE "+id+" = 99"); n != 0 {
			t.Errorf("a row for the deleted torrent was written")
		}
		if dialect == DialectOPS {
			// Torrent 5 exists but had no leech-stats row: the upsert
			// creates it.
			if err := s.WriteTorrents(ctx, []storage.TorrentStats{{TorrentID: 5, Seeders: 2, Snatches: 1}}); err != nil {
				t.Fatal(err)
			}
			if sd, _, sn, _, _ := row(5); sd != 2 || sn != 1 {
				t.Errorf("torrent 5: %d seeders, %d snatched, want 2 and 1", sd, sn)
			}
		}
	})
}

// peerRow reads one xbt_files_users row as text.
func peerRow(t *testing.T, db *testDB, uid, fid int, peerID string) map[string]string {
	t.Helper()
	rows, err := db.admin.Query(`SELECT active, uploaded, downloaded, upspeed, downspeed, remaining, corrupt,
		timespent, announced, ip, useragent, mtime, HEX(peer_id) FROM xbt_files_users WHERE uid = ? AND fid = ? AND peer_id = ?`, uid, fid, peerID)
	if err != nil {
		t.Fatal(err)
	}
	defer rows.Close()
	cols, _ := rows.Columns()
	if !rows.Next() {
		return nil
	}
	vals := make([]string, len(cols))
	ptrs := make([]any, len(cols))
	for i := range vals {
		ptrs[i] = &vals[i]
	}
	if err := rows.Scan(ptrs...); err != nil {
		t.Fatal(err)
	}
	m := make(map[string]string, len(cols))
	for i, c := range cols {
		m[c] = vals[i]
	}
	return m
}

func peerID(s string) bittorrent.PeerID {
	var id bittorrent.PeerID
	copy(id[:], s)
	return id
}

func TestWritePeers(t *testing.T) {
	dialects(t, func(t *testing.T, dialect string) {
		db := newTestDB(t, dialect, true)
		s := db.open(t, nil)
		db.exec(t, "TRUNCATE xbt_files_users")
		longUA := "Mozilla/5.0 (X11; Linux x86_64) libtorrent/2.0.9 \xff with a very long tail"
		mtime := time.Unix(1700000100, 0)

		heavy := []storage.PeerRow{
			{TorrentID: 1, UserID: 1, PeerID: peerID("-TR3000-aaaaaaaaaaaa"), Full: true, Active: true,
				Uploaded: 1000, Downloaded: 2000, Left: 3000, Corrupt: 4, UpSpeed: 50, DownSpeed: 60,
				TimeSpent: 90 * time.Second, Announces: 2, Addr: netip.MustParseAddr("10.1.2.3"), Port: 6881,
				UserAgent: longUA, Time: mtime},
			// Protected user: the tracker passes the zero Addr.
			{TorrentID: 1, UserID: 4, PeerID: peerID("-TR3000-bbbbbbbbbbbb"), Full: true, Active: true, Time: mtime},
			// IPv6 does not fit varchar(15).
			{TorrentID: 1, UserID: 5, PeerID: peerID("-qB4500-cccccccccccc"), Full: true, Active: true,
				Addr: netip.MustParseAddr("2001:db8::1"), Time: mtime},
			// IPv4-mapped IPv6 is IPv4.
			{TorrentID: 2, UserID: 1, PeerID: peerID("-qB4500-dddddddddddd"), Full: true, Active: true,
				Addr: netip.MustParseAddr("::ffff:192.0.2.7"), Time: mtime},
			// Deleted user and torrent: kept, as Ocelot does (no
			// foreign keys; Gazelle purges old rows).
			{TorrentID: 99, UserID: 999, PeerID: peerID("-TR3000-eeeeeeeeeeee"), Full: true, Active: true, Time: mtime},
		}
		if err := s.WritePeers(ctx, heavy); err != nil {
			t.Fatal(err)
		}
		r := peerRow(t, db, 1, 1, "-TR3000-aaaaaaaaaaaa")
		want := map[string]string{"active": "1", "uploaded": "1000", "downloaded": "2000", "upspeed": "50", "downspeed": "60",
			"remaining": "3000", "corrupt": "4", "timespent": "90", "announced": "2", "ip": "10.1.2.3",
			"useragent": "Mozilla/5.0 (X11; Linux x86_64) libtorrent/2.0.9 ? ", "mtime": "1700000100",
			"HEX(peer_id)": strings.ToUpper(fmt.Sprintf("%x", "-TR3000-aaaaaaaaaaaa"))}
		for k, v := range want {
			if r[k] != v {
				t.Errorf("heavy row %s = %q, want %q", k, r[k], v)
			}
		}
		if len(r["useragent"]) != 51 {
			t.Errorf("useragent is %d characters, want the column's 51", len(r["useragent"]))
		}
		for _, c := range []struct {
			uid, fid int
			peer, ip string
		}{{4, 1, "-TR3000-bbbbbbbbbbbb", ""}, {5, 1, "-qB4500-cccccccccccc", ""}, {1, 2, "-qB4500-dddddddddddd", "192.0.2.7"}, {999, 99, "-TR3000-eeeeeeeeeeee", ""}} {
			r := peerRow(t, db, c.uid, c.fid, c.peer)
			if r == nil || r["ip"] != c.ip {
				t.Errorf("peer %d/%d: row %v, want ip %q", c.uid, c.fid, r, c.ip)
			}
		}

		// A light row refreshes the times and counters only; the
		// speeds drop to zero. A stopped peer (a full row) turns
		// inactive with its final totals. A light row for a peer
		// whose row is gone recreates it with the peer's state.
		mtime2 := mtime.Add(30 * time.Minute)
		err := s.WritePeers(ctx, []storage.PeerRow{
			{TorrentID: 1, UserID: 1, PeerID: peerID("-TR3000-aaaaaaaaaaaa"), Active: true,
				Uploaded: 1, Downloaded: 1, Left: 1, UpSpeed: 9, TimeSpent: 1890 * time.Second, Announces: 3,
				Addr: netip.MustParseAddr("10.9.9.9"), UserAgent: "other", Time: mtime2},
			{TorrentID: 1, UserID: 4, PeerID: peerID("-TR3000-bbbbbbbbbbbb"), Full: true, Active: false,
				Uploaded: 77, Left: 0, Announces: 5, Time: mtime2},
			{TorrentID: 3, UserID: 3, PeerID: peerID("-TR3000-ffffffffffff"), Active: true,
				Uploaded: 5, Left: 1234, TimeSpent: time.Minute, Announces: 9, Addr: netip.MustParseAddr("10.0.0.3"),
				UserAgent: "Transmission/4.0", Time: mtime2},
		})
		if err != nil {
			t.Fatal(err)
		}
		r = peerRow(t, db, 1, 1, "-TR3000-aaaaaaaaaaaa")
		for k, v := range map[string]string{"uploaded": "1000", "downloaded": "2000", "remaining": "3000", "upspeed": "0", "downspeed": "0",
			"timespent": "1890", "announced": "3", "mtime": fmt.Sprint(mtime2.Unix()), "ip": "10.1.2.3", "active": "1"} {
			if r[k] != v {
				t.Errorf("after a light row, %s = %q, want %q", k, r[k], v)
			}
		}
		r = peerRow(t, db, 4, 1, "-TR3000-bbbbbbbbbbbb")
		if r["active"] != "0" || r["uploaded"] != "77" || r["announced"] != "5" {
			t.Errorf("stopped peer: %v, want active 0, uploaded 77, announced 5", r)
		}
		r = peerRow(t, db, 3, 3, "-TR3000-ffffffffffff")
		if r == nil || r["active"] != "1" || r["remaining"] != "1234" || r["ip"] != "10.0.0.3" || r["useragent"] != "Transmission/4.0" {
			t.Errorf("light row for a purged peer: %v, want the peer's state (active, remaining 1234)", r)
		}
	})
}

func TestWriteSnatches(t *testing.T) {
	dialects(t, func(t *testing.T, dialect string) {
		db := newTestDB(t, dialect, true)
		s := db.open(t, nil)
		when := time.Unix(1700000000, 0)
		err := s.WriteSnatches(ctx, []storage.Snatch{
			{UserID: 1, TorrentID: 1, Time: when, Addr: netip.MustParseAddr("10.0.0.1")},
			{UserID: 4, TorrentID: 1, Time: when},                                           // protected
			{UserID: 5, TorrentID: 2, Time: when, Addr: netip.MustParseAddr("2001:db8::5")}, // IPv6
			{UserID: 999, TorrentID: 99, Time: when, Addr: netip.MustParseAddr("10.0.0.9")}, // deleted: a log row, kept
		})
		if err != nil {
			t.Fatal(err)
		}
		if n := db.count(t, "SELECT COUNT(*) FROM xbt_snatched"); n != 4 {
			t.Errorf("%d snatches, want 4", n)
		}
		if n := db.count(t, "SELECT COUNT(*) FROM xbt_snatched WHERE uid = 1 AND fid = 1 AND tstamp = 1700000000 AND IP = '10.0.0.1'"); n != 1 {
			t.Errorf("alice's snatch not written as expected")
		}
		if n := db.count(t, "SELECT COUNT(*) FROM xbt_snatched WHERE uid IN (4, 5) AND IP = ''"); n != 2 {
			t.Errorf("protected and IPv6 snatches: %d with an empty IP, want 2", n)
		}
		// A user can snatch a torrent again.
		if err := s.WriteSnatches(ctx, []storage.Snatch{{UserID: 1, TorrentID: 1, Time: when}}); err != nil {
			t.Fatal(err)
		}
		if n := db.count(t, "SELECT COUNT(*) FROM xbt_snatched WHERE uid = 1 AND fid = 1"); n != 2 {
			t.Errorf("%d snatches of alice, want 2", n)
		}
	})
}

func TestWriteTokens(t *testing.T) {
	dialects(t, func(t *testing.T, dialect string) {
		db := newTestDB(t, dialect, true)
		s := db.open(t, nil)
		rowsBefore := db.count(t, "SELECT COUNT(*) FROM users_freeleeches")
		err := s.WriteTokens(ctx, []storage.TokenUse{
			{UserID: 1, TorrentID: 1, Downloaded: 300},
			{UserID: 4, TorrentID: 3, Downloaded: 50}, // no row: recorded, expired
			{UserID: 1, TorrentID: 99, Downloaded: 1}, // deleted torrent
			{UserID: 999, TorrentID: 1, Downloaded: 1},
			{UserID: 5, TorrentID: 1}, // nothing spared: skipped
		})
		if err != nil {
			t.Fatal(err)
		}
		v := db.int64s(t, "SELECT Downloaded, Expired, UNIX_TIMESTAMP(Time) FROM users_freeleeches WHERE UserID = 1 AND TorrentID = 1")
		if v[0] != 400 || v[1] != 0 || v[2] != db.count(t, "SELECT UNIX_TIMESTAMP('2024-01-01 00:00:00')") {
			t.Errorf("alice's token: Downloaded %d, Expired %d, Time %d; want 400, 0 and the original time", v[0], v[1], v[2])
		}
		v = db.int64s(t, "SELECT Downloaded, Expired, UNIX_TIMESTAMP(Time) > 0 FROM users_freeleeches WHERE UserID = 4 AND TorrentID = 3")
		if v[0] != 50 || v[1] != 1 || v[2] != 1 {
			t.Errorf("dave's new row: %v, want Downloaded 50, Expired 1, a Time", v)
		}
		if n := db.count(t, "SELECT COUNT(*) FROM users_freeleeches"); n != rowsBefore+1 {
			t.Errorf("%d token rows, want %d: junk for a deleted user or torrent", n, rowsBefore+1)
		}
	})
}

func TestExpireTokensInDatabase(t *testing.T) {
	dialects(t, func(t *testing.T, dialect string) {
		db := newTestDB(t, dialect, true)
		if err := db.open(t, map[string]any{"readonly": true}).ExpireTokens(ctx, []storage.Token{{UserID: 1, TorrentID: 1}}); err != nil {
			t.Fatal(err)
		}
		if n := db.count(t, "SELECT Expired FROM users_freeleeches WHERE UserID = 1 AND TorrentID = 1"); n != 0 {
			t.Fatal("readonly store expired a token")
		}
		s := db.open(t, nil)
		if err := s.ExpireTokens(ctx, []storage.Token{{UserID: 1, TorrentID: 1}, {UserID: 7, TorrentID: 7}}); err != nil {
			t.Fatal(err)
		}
		if n := db.count(t, "SELECT Expired FROM users_freeleeches WHERE UserID = 1 AND TorrentID = 1"); n != 1 {
			t.Error("token not expired")
		}
		if n := db.count(t, "SELECT COUNT(*) FROM users_freeleeches WHERE UserID = 7"); n != 0 {
			t.Error("expiring an unknown token inserted a row")
		}
	})
}

func TestReadonlyWritesNothing(t *testing.T) {
	dialects(t, func(t *testing.T, dialect string) {
		db := newTestDB(t, dialect, true)
		s := db.open(t, map[string]any{"readonly": true})
		// CHECKSUM TABLE answers (name, checksum).
		checksum := func() []int64 {
			var sums []int64
			for _, table := range []string{"users_main", "torrents", "users_freeleeches", "xbt_files_users", "xbt_snatched"} {
				var name string
				var sum int64
				if err := db.admin.QueryRow("CHECKSUM TABLE "+table+" EXTENDED").Scan(&name, &sum); err != nil {
					t.Fatal(err)
				}
				sums = append(sums, sum)
			}
			return sums
		}
		before := fmt.Sprint(checksum())
		errs := []error{
			s.WriteUsers(ctx, []storage.UserDelta{{UserID: 1, Uploaded: 1}}),
			s.WriteTorrents(ctx, []storage.TorrentStats{{TorrentID: 1, Seeders: 9}}),
			s.WritePeers(ctx, []storage.PeerRow{{TorrentID: 1, UserID: 1, Full: true, Active: true}}),
			s.WriteSnatches(ctx, []storage.Snatch{{UserID: 1, TorrentID: 1}}),
			s.WriteTokens(ctx, []storage.TokenUse{{UserID: 1, TorrentID: 1, Downloaded: 1}}),
			s.Start(ctx),
		}
		if err := errors.Join(errs...); err != nil {
			t.Fatal(err)
		}
		if after := fmt.Sprint(checksum()); after != before {
			t.Errorf("readonly store changed the database: %s → %s", before, after)
		}
	})
}

func TestPermanentErrors(t *testing.T) {
	dialects(t, func(t *testing.T, dialect string) {
		db := newTestDB(t, dialect, true)
		s := db.open(t, nil)
		// fid is a signed int: an id above 2³¹−1 cannot be stored.
		err := s.WritePeers(ctx, []storage.PeerRow{
			{TorrentID: 1, UserID: 1, PeerID: peerID("-TR3000-aaaaaaaaaaaa"), Full: true, Active: true},
			{TorrentID: 3_000_000_000, UserID: 1, PeerID: peerID("-TR3000-aaaaaaaaaaaa"), Full: true, Active: true},
		})
		var me *mysql.MySQLError
		if !storage.IsPermanent(err) || !errors.As(err, &me) || me.Number != 1264 {
			t.Fatalf("out-of-range fid: %v, want a permanent error 1264", err)
		}
		// The batch applied whole or not at all.
		if n := db.count(t, "SELECT COUNT(*) FROM xbt_files_users WHERE peer_id = '-TR3000-aaaaaaaaaaaa'"); n != 0 {
			t.Errorf("a failed batch left %d rows", n)
		}

		// A lost connection is not permanent.
		s.Close()
		err = s.WriteUsers(ctx, []storage.UserDelta{{UserID: 1, Uploaded: 1}})
		if err == nil || storage.IsPermanent(err) {
			t.Fatalf("write on a closed store: %v, want a plain error", err)
		}
	})
}

func TestPermanentErrorAcrossStatements(t *testing.T) {
	db := newTestDB(t, DialectOPS, true)
	s := db.open(t, nil)
	// 1,001 full rows are two statements; the bad row is in the second,
	// and the first is rolled back with it.
	var rows []storage.PeerRow
	for i := range 1000 {
		rows = append(rows, storage.PeerRow{TorrentID: 1, UserID: uint32(100 + i), Full: true, Active: true})
	}
	rows = append(rows, storage.PeerRow{TorrentID: 3_000_000_000, UserID: 1, Full: true, Active: true})
	if err := s.WritePeers(ctx, rows); !storage.IsPermanent(err) {
		t.Fatalf("got %v, want a permanent error", err)
	}
	if n := db.count(t, "SELECT COUNT(*) FROM xbt_files_users WHERE uid >= 100"); n != 0 {
		t.Errorf("%d rows of the failed batch were committed", n)
	}
}

func TestClassify(t *testing.T) {
	for number, permanent := range map[uint16]bool{1062: true, 1406: true, 1364: true, 1452: true, 1366: true, 1264: true, 1213: false, 1205: false, 2006: false, 1146: false} {
		err := classify(fmt.Errorf("wrapped: %w", &mysql.MySQLError{Number: number}))
		if storage.IsPermanent(err) != permanent {
			t.Errorf("error %d: permanent = %v, want %v", number, !permanent, permanent)
		}
	}
	if storage.IsPermanent(classify(mysql.ErrInvalidConn)) || storage.IsPermanent(classify(context.DeadlineExceeded)) {
		t.Error("connection errors classified permanent")
	}
}

func TestBuildSplitsStatements(t *testing.T) {
	row := func(b []byte, i int, first bool) []byte { return fmt.Appendf(b, "(%d)", i) }
	st := statement{head: "H ", sep: ",", tail: " T", row: row}
	stmts := build(2500, st, nil)
	if len(stmts) != 3 || !strings.HasPrefix(stmts[2], "H (2000),") || !strings.HasSuffix(stmts[2], "(2499) T") {
		t.Fatalf("2,500 rows: %d statements, last %.40q", len(stmts), stmts[len(stmts)-1])
	}
	if got := build(5, st, func(i int) bool { return i%2 == 0 }); len(got) != 1 || got[0] != "H (0),(2),(4) T" {
		t.Errorf("filtered: %q", got)
	}
	if got := build(3, st, func(int) bool { return false }); len(got) != 0 {
		t.Errorf("nothing included: %q", got)
	}
	big := statement{head: "H ", sep: ",", row: func(b []byte, i int, _ bool) []byte { return append(b, strings.Repeat("x", 300<<10)...) }}
	if got := build(10, big, nil); len(got) != 3 {
		t.Errorf("300 KiB rows: %d statements, want 3 (a statement ends once it passes 1 MiB)", len(got))
	}
}

func TestCleanUserAgent(t *testing.T) {
	for in, want := range map[string]string{
		"":                             "",
		"Transmission/4.0":             "Transmission/4.0",
		"qBittorrent/4.6 \xe2\x9c\x93": "qBittorrent/4.6 ???",
		"tab\there":                    "tab?here",
		strings.Repeat("a", 60):        strings.Repeat("a", 51),
	} {
		if got := string(cleanUserAgent(in)); got != want {
			t.Errorf("cleanUserAgent(%q) = %q, want %q", in, got, want)
		}
	}
}
