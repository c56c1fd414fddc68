//go:build linux

package e2e

import (
	"context"
	"crypto/rand"
	"database/sql"
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/go-sql-driver/mysql"
)

// TestTransferPrivateGazelle runs the tracker the way a Gazelle site runs
// Ocelot: private mode with the gazelle storage driver on a fresh MariaDB
// database in the ops (Orpheus) schema, each client announcing with its
// user's passkey in the URL path. Every torrent is registered as Gazelle
// registers an upload: rows in torrents and torrents_leech_stats, then an
// add_torrent call sent as raw bytes without a Host header, as What.CD-era
// Gazelle sends it. After each transfer the test waits for the flusher and
// checks what Gazelle reads: the users' transfer totals, the torrent's
// snatch count, the snatch log and the peer rows.
//
// HTTP runs over IPv4 and IPv6 in both directions between aria2 and
// libtorrent; UDP runs libtorrent to libtorrent, with the passkey in the
// BEP 41 URL data. The UDP transfers' accounts are created after the
// tracker has started and registered with add_user, as Gazelle does on
// sign-up; the others are loaded from the database at start.
func TestTransferPrivateGazelle(t *testing.T) {
	pairs := []pair{
		{seeder: aria2{}, leecher: libtorrent{}, seederScheme: "http", leecherScheme: "http"},
		{seeder: libtorrent{}, leecher: aria2{}, seederScheme: "http", leecherScheme: "http"},
		{seeder: libtorrent{}, leecher: libtorrent{}, seederScheme: "udp", leecherScheme: "udp"},
	}
	requireE2E(t, pairs)
	db := newGazelleDB(t)

	type run struct {
		seeder, leecher gzUser
		late            bool // account created after the tracker started
	}
	runs := map[string]*run{}
	for _, f := range families {
		for _, p := range pairs {
			r := &run{late: p.seederScheme == "udp"}
			if !r.late {
				r.seeder, r.leecher = db.addUser(t), db.addUser(t)
			}
			runs[f.name+"/"+p.String()] = r
		}
	}

	site := gzSite{sitePassword: gzSecret(), reportPassword: gzSecret()}
	tr := startTracker(t, func(cfg map[string]any, _ int) {
		cfg["storage"] = map[string]any{
			"driver": "gazelle",
			"config": map[string]any{
				"dsn":             db.dsn,
				"dialect":         "ops",
				"site_password":   site.sitePassword,
				"report_password": site.reportPassword,
			},
			"flush_interval": "1s",
		}
	})
	site.addr = net.JoinHostPort("127.0.0.1", strconv.Itoa(tr.port))

	// Not parallel: done before the transfers start.
	t.Run("refusals", func(t *testing.T) {
		gzCheckRefusals(t, tr, site, db)
	})

	for _, f := range families {
		t.Run(f.name, func(t *testing.T) {
			t.Parallel()
			for _, p := range pairs {
				t.Run(p.String(), func(t *testing.T) {
					t.Parallel()
					r := runs[f.name+"/"+p.String()]
					if r.late {
						r.seeder, r.leecher = db.addUser(t), db.addUser(t)
						for _, u := range []gzUser{r.seeder, r.leecher} {
							site.update(t, fmt.Sprintf("action=add_user&passkey=%s&id=%d&visible=1", u.passkey, u.id))
						}
					}
					seederURL := tr.url(p.seederScheme, f.host, "/"+r.seeder.passkey+"/announce")
					leecherURL := tr.url(p.leecherScheme, f.host, "/"+r.leecher.passkey+"/announce")
					var torrentID int64
					tt := transfer(t, seederURL, leecherURL, p.seeder, p.leecher, func(tt *testTorrent) {
						torrentID = db.addTorrent(t, site, tt)
					})
					ip := ""
					if f.host == "127.0.0.1" {
						// IPv6 addresses do not fit Gazelle's varchar(15).
						ip = f.host
					}
					_, leecherIsAria2 := p.leecher.(aria2)
					s := db.waitForStats(t, gzExpect{
						torrentID: torrentID, size: tt.size, ip: ip,
						seeder: r.seeder, leecher: r.leecher,
						// See gzExpect for why these depend on
						// the clients.
						seederReports: p.seederScheme == "http",
						snatch:        !leecherIsAria2,
					})
					site.checkUserReport(t, r.seeder, 1, 0)
					// A leecher that did not get its stop through is
					// still seeding.
					site.checkUserReport(t, r.leecher, s.leecherActive(r.leecher), 0)
				})
			}
		})
	}
}

// gzCheckRefusals checks Ocelot's failure reasons for a wrong passkey and an
// unregistered torrent, over HTTP and over UDP (BEP 41), and the site
// interface's answer to a wrong secret.
func gzCheckRefusals(t *testing.T, tr *tracker, site gzSite, db *gazelleDB) {
	user := db.addUser(t)
	site.update(t, fmt.Sprintf("action=add_user&passkey=%s&id=%d&visible=1", user.passkey, user.id))
	tt := &testTorrent{}
	rand.Read(tt.infoHash[:])
	tt.size = 1 << 20
	db.addTorrent(t, site, tt)
	var unregistered [20]byte
	rand.Read(unregistered[:])
	stranger := gzSecret()

	for _, c := range []struct {
		name, passkey string
		ih            [20]byte
		want          string
	}{
		{"wrong passkey", stranger, tt.infoHash, "Passkey not found"},
		{"no passkey", "", tt.infoHash, "Passkey not found"},
		{"unregistered torrent", user.passkey, unregistered, "Unregistered torrent"},
	} {
		path := "/announce"
		if c.passkey != "" {
			path = "/" + c.passkey + "/announce"
		}
		u := tr.url("http", "127.0.0.1", path) + "?info_hash=" + escapeBytes(c.ih[:]) +
			"&peer_id=-E2E001-gazelle00001&port=40001&uploaded=0&downloaded=0&left=1000&compact=1&event=started"
		if got := gzFailureReason(t, u); got != c.want {
			t.Errorf("HTTP announce, %s: failure reason %q, want %q", c.name, got, c.want)
		}
		if got := gzUDPFailure(t, net.JoinHostPort("127.0.0.1", strconv.Itoa(tr.port)), path, c.ih); got != c.want {
			t.Errorf("UDP announce, %s: error %q, want %q", c.name, got, c.want)
		}
	}
	// The registered torrent is known to a known passkey: the same
	// announce succeeds.
	u := tr.url("http", "127.0.0.1", "/"+user.passkey+"/announce") + "?info_hash=" + escapeBytes(tt.infoHash[:]) +
		"&peer_id=-E2E001-gazelle00001&port=40001&uploaded=0&downloaded=0&left=1000&compact=1&event=started"
	if got := gzFailureReason(t, u); got != "" {
		t.Errorf("announce of a registered torrent with a known passkey failed: %q", got)
	}

	// A wrong site secret is refused, and changes nothing.
	status, payload := gzRawGet(t, site.addr, "/"+stranger+"/update?action=add_torrent&info_hash="+escapeBytes(unregistered[:])+"&id=999999&freetorrent=0")
	if !strings.HasPrefix(status, "HTTP/1.1 200") || !strings.Contains(payload, "Authentication failure") {
		t.Errorf("update with a wrong secret: %s %q, want a 200 with the failure Authentication failure", status, payload)
	}
	status, payload = gzRawGet(t, site.addr, "/"+site.reportPassword+"/report?get=torrent&info_hash="+escapeBytes(unregistered[:]))
	if !strings.Contains(payload, "Info hash not found") {
		t.Errorf("after an update with a wrong secret, the torrent report says %s %q, want Info hash not found", status, payload)
	}
}

// gazelleDB is a throwaway database in the ops schema of
// storage/gazelle/testdata, dropped when the test ends.
type gazelleDB struct {
	db  *sql.DB
	dsn string // for the tracker
}

// gzStrictMode is MySQL 8's default sql_mode, the one OPS runs; both the
// test and the tracker connect with it, so statements that only pass in a
// lax mode fail here.
const gzStrictMode = "ONLY_FULL_GROUP_BY,STRICT_TRANS_TABLES,NO_ZERO_IN_DATE,NO_ZERO_DATE,ERROR_FOR_DIVISION_BY_ZERO,NO_ENGINE_SUBSTITUTION"

// newGazelleDB creates the database on CHIHAYA_MYSQL_DSN's server (default:
// the MariaDB of scripts/start-services, root without a password) and loads
// the schema, but not the driver tests' fixtures: their client whitelist
// would refuse aria2 and libtorrent.
func newGazelleDB(t *testing.T) *gazelleDB {
	t.Helper()
	dsn := os.Getenv("CHIHAYA_MYSQL_DSN")
	if dsn == "" {
		dsn = "root@tcp(127.0.0.1:3306)/"
	}
	cfg, err := mysql.ParseDSN(dsn)
	if err != nil {
		t.Fatalf("CHIHAYA_MYSQL_DSN: %v", err)
	}
	cfg.DBName = ""
	cfg.Timeout = 3 * time.Second
	cfg.MultiStatements = true
	if cfg.Params == nil {
		cfg.Params = map[string]string{}
	}
	cfg.Params["sql_mode"] = "'" + gzStrictMode + "'"
	root := gzOpen(t, cfg)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	err = root.PingContext(ctx)
	cancel()
	if err != nil {
		root.Close()
		msg := fmt.Sprintf("MariaDB/MySQL at %s is not answering (%v)", cfg.Addr, err)
		if os.Getenv("CI") != "" {
			t.Fatal(msg + "; CI must provide it (scripts/start-services)")
		}
		t.Skip(msg + "; run scripts/start-services (or set CHIHAYA_MYSQL_DSN) to enable this test")
	}
	var rnd [6]byte
	rand.Read(rnd[:])
	name := "chihaya_e2e_" + hex.EncodeToString(rnd[:])
	if _, err := root.Exec("CREATE DATABASE " + name + " CHARACTER SET utf8mb4"); err != nil {
		root.Close()
		t.Fatalf("create database: %v", err)
	}
	// Registered before startTracker's cleanup, so it runs after the
	// tracker has stopped and written what it had pending.
	t.Cleanup(func() {
		defer root.Close()
		if _, err := root.Exec("DROP DATABASE " + name); err != nil {
			t.Errorf("drop database %s: %v", name, err)
		}
	})
	cfg.DBName = name
	db := gzOpen(t, cfg)
	t.Cleanup(func() { db.Close() })
	schema, err := os.ReadFile(filepath.Join("..", "storage", "gazelle", "testdata", "schema_ops.sql"))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := db.Exec(string(schema)); err != nil {
		t.Fatalf("schema_ops.sql: %v", err)
	}
	tcfg := cfg.Clone()
	tcfg.MultiStatements = false
	return &gazelleDB{db: db, dsn: tcfg.FormatDSN()}
}

func gzOpen(t *testing.T, cfg *mysql.Config) *sql.DB {
	t.Helper()
	c, err := mysql.NewConnector(cfg)
	if err != nil {
		t.Fatal(err)
	}
	return sql.OpenDB(c)
}

// gzUser is an enabled account that may leech.
type gzUser struct {
	id      int64
	passkey string
}

// addUser creates an account as Gazelle's sign-up does: users_main and its
// users_leech_stats row.
func (d *gazelleDB) addUser(t *testing.T) gzUser {
	t.Helper()
	u := gzUser{passkey: gzSecret()}
	res, err := d.db.Exec("INSERT INTO users_main (Username, Email, torrent_pass, can_leech, Visible, IP, Enabled) VALUES (?, ?, ?, 1, '1', '10.0.0.1', '1')",
		"u"+u.passkey[:10], u.passkey[:10]+"@example.org", u.passkey)
	if err == nil {
		u.id, err = res.LastInsertId()
	}
	if err == nil {
		_, err = d.db.Exec("INSERT INTO users_leech_stats (UserID, Uploaded, Downloaded) VALUES (?, 0, 0)", u.id)
	}
	if err != nil {
		t.Fatalf("adding a user: %v", err)
	}
	return u
}

// addTorrent registers tt as Gazelle registers an upload: a torrents row
// with the raw 20-byte info hash and its torrents_leech_stats row, then an
// add_torrent call. It returns the torrent's id.
func (d *gazelleDB) addTorrent(t *testing.T, site gzSite, tt *testTorrent) int64 {
	t.Helper()
	res, err := d.db.Exec("INSERT INTO torrents (GroupID, UserID, info_hash, FreeTorrent, FreeLeechType, Size) VALUES (1, NULL, ?, '0', '0', ?)",
		tt.infoHash[:], tt.size)
	var id int64
	if err == nil {
		id, err = res.LastInsertId()
	}
	if err == nil {
		_, err = d.db.Exec("INSERT INTO torrents_leech_stats (TorrentID) VALUES (?)", id)
	}
	if err != nil {
		t.Fatalf("adding torrent %x: %v", tt.infoHash, err)
	}
	site.update(t, fmt.Sprintf("action=add_torrent&info_hash=%s&id=%d&freetorrent=0", escapeBytes(tt.infoHash[:]), id))
	return id
}

// gzExpect is what the database must show once a transfer's statistics
// are written.
//
// Two things depend on the clients rather than on the tracker:
//
//   - seederReports: the seeder reports its upload only in its next
//     announce. Over HTTP both clients announce again within the test
//     tracker's 5 s interval. libtorrent takes a minimum interval of 60 s
//     for UDP trackers whatever the tracker says (BEP 15 replies have no
//     min interval field), and the test's libtorrent script dies on
//     SIGTERM without a "stopped" announce, so over UDP the seeder's
//     upload never reaches the tracker during the test.
//   - snatch: libtorrent announces "completed" when the download finishes.
//     aria2 with --seed-time=0 halts in the same step, and a halt makes
//     its next announce "stopped" (with left=0) instead of "completed". As
//     in Ocelot, only "completed" counts a snatch, so an aria2 leecher
//     leaves Snatched at 0 and no xbt_snatched row.
//
// Whether the leecher's "stopped" arrives is left open as well: aria2 sends
// it before exiting, but libtorrent's script destroys its session right
// after the download and its stop announce is often cut off. The counts
// must then agree with the leecher's peer row.
type gzExpect struct {
	torrentID       int64
	size            int64
	ip              string // as stored for the peers: IPv4, or "" for IPv6
	seeder, leecher gzUser
	seederReports   bool
	snatch          bool
}

// gzState is what the database shows for one transfer.
type gzState struct {
	seederUp, seederDown, leecherUp, leecherDown int64
	seeders, leechers, snatched                  int64
	snatches                                     []string // the snatch log's uid/IP for the torrent
	peers                                        map[int64][]gzPeerRow
}

type gzPeerRow struct {
	active                          bool
	remaining, uploaded, downloaded int64
	ip                              string
}

func (s gzState) String() string {
	return fmt.Sprintf("users_leech_stats seeder up %d down %d, leecher up %d down %d; torrents_leech_stats Seeders %d Leechers %d Snatched %d; xbt_snatched %v; xbt_files_users %+v",
		s.seederUp, s.seederDown, s.leecherUp, s.leecherDown, s.seeders, s.leechers, s.snatched, s.snatches, s.peers)
}

// leecherActive is 1 when the leecher's peer row is active, else 0.
func (s gzState) leecherActive(u gzUser) int {
	if rows := s.peers[u.id]; len(rows) == 1 && rows[0].active {
		return 1
	}
	return 0
}

func (d *gazelleDB) state(e gzExpect) (gzState, error) {
	s := gzState{peers: map[int64][]gzPeerRow{}}
	q := "SELECT Uploaded, Downloaded FROM users_leech_stats WHERE UserID = ?"
	if err := d.db.QueryRow(q, e.seeder.id).Scan(&s.seederUp, &s.seederDown); err != nil {
		return s, err
	}
	if err := d.db.QueryRow(q, e.leecher.id).Scan(&s.leecherUp, &s.leecherDown); err != nil {
		return s, err
	}
	if err := d.db.QueryRow("SELECT Seeders, Leechers, Snatched FROM torrents_leech_stats WHERE TorrentID = ?", e.torrentID).
		Scan(&s.seeders, &s.leechers, &s.snatched); err != nil {
		return s, err
	}
	rows, err := d.db.Query("SELECT uid, IP FROM xbt_snatched WHERE fid = ? ORDER BY xbt_snatched_id", e.torrentID)
	if err != nil {
		return s, err
	}
	for rows.Next() {
		var uid int64
		var ip string
		if err := rows.Scan(&uid, &ip); err != nil {
			rows.Close()
			return s, err
		}
		s.snatches = append(s.snatches, fmt.Sprintf("%d/%q", uid, ip))
	}
	rows.Close()
	if err := rows.Err(); err != nil {
		return s, err
	}
	rows, err = d.db.Query("SELECT uid, active, remaining, uploaded, downloaded, ip FROM xbt_files_users WHERE fid = ?", e.torrentID)
	if err != nil {
		return s, err
	}
	defer rows.Close()
	for rows.Next() {
		var uid int64
		var p gzPeerRow
		if err := rows.Scan(&uid, &p.active, &p.remaining, &p.uploaded, &p.downloaded, &p.ip); err != nil {
			return s, err
		}
		s.peers[uid] = append(s.peers[uid], p)
	}
	return s, rows.Err()
}

// problems lists how s falls short of e; empty when it matches.
//
// The clients report payload bytes, so a credited transfer is at least the
// payload's size; it may exceed it by a little (a block received twice)
// but never reaches twice the size, which would mean a transfer credited
// twice.
func (e gzExpect) problems(s gzState) []string {
	var p []string
	check := func(ok bool, format string, args ...any) {
		if !ok {
			p = append(p, fmt.Sprintf(format, args...))
		}
	}
	inRange := func(n int64) bool { return n >= e.size && n < 2*e.size }
	if e.seederReports {
		check(inRange(s.seederUp), "seeder's Uploaded %d, want the payload size %d", s.seederUp, e.size)
	}
	check(s.seederDown == 0, "seeder's Downloaded %d, want 0", s.seederDown)
	check(inRange(s.leecherDown), "leecher's Downloaded %d, want the payload size %d", s.leecherDown, e.size)
	check(s.leecherUp == 0, "leecher's Uploaded %d, want 0 (its only peer is a seeder)", s.leecherUp)

	wantSnatched, wantSnatches := int64(0), []string(nil)
	if e.snatch {
		wantSnatched, wantSnatches = 1, []string{fmt.Sprintf("%d/%q", e.leecher.id, e.ip)}
	}
	check(s.snatched == wantSnatched, "torrent's Snatched %d, want %d", s.snatched, wantSnatched)
	check(slices.Equal(s.snatches, wantSnatches), "xbt_snatched rows (uid/IP) %v, want %v", s.snatches, wantSnatches)

	seeder, leecher := s.peers[e.seeder.id], s.peers[e.leecher.id]
	check(len(s.peers) == 2 && len(seeder) == 1 && len(leecher) == 1,
		"xbt_files_users has rows %+v, want one for the seeder (uid %d) and one for the leecher (uid %d)", s.peers, e.seeder.id, e.leecher.id)
	if len(seeder) == 1 {
		r := seeder[0]
		check(r.active && r.remaining == 0 && r.downloaded == 0 && r.ip == e.ip && (!e.seederReports || inRange(r.uploaded)),
			"seeder's peer row %+v, want active, remaining 0, downloaded 0, uploaded the payload size %d (if reported), ip %q", r, e.size, e.ip)
	}
	if len(leecher) == 1 {
		r := leecher[0]
		check(r.remaining == 0 && r.uploaded == 0 && inRange(r.downloaded) && r.ip == e.ip,
			"leecher's peer row %+v, want remaining 0, uploaded 0, downloaded the payload size %d, ip %q", r, e.size, e.ip)
	}
	// The seeder, and the leecher if it has not stopped (its row is
	// still active), now seeding.
	wantSeeders := 1 + int64(s.leecherActive(e.leecher))
	check(s.seeders == wantSeeders, "torrent's Seeders %d, want %d (the seeder, plus the leecher while its peer row is active)", s.seeders, wantSeeders)
	check(s.leechers == 0, "torrent's Leechers %d, want 0", s.leechers)
	return p
}

// gzStatsTimeout bounds the wait for the statistics. The seeder reports its
// upload in its next regular announce (the test tracker asks for one every
// 5 s); the flusher writes every second.
const gzStatsTimeout = 15 * time.Second

// gzSettle is how long the statistics must stay as expected once they
// are: the flusher writes its queues (users, torrents, peers, snatches)
// independently, so a row that must not exist, or a total that must not
// grow, could still be on its way. Two flush intervals.
const gzSettle = 2 * time.Second

// waitForStats polls the database until it shows what e expects, and
// still does gzSettle later. It returns the final state.
func (d *gazelleDB) waitForStats(t *testing.T, e gzExpect) gzState {
	t.Helper()
	begin := time.Now()
	deadline := begin.Add(gzStatsTimeout)
	var matched time.Time
	for {
		s, err := d.state(e)
		var problems []string
		if err != nil {
			problems = []string{err.Error()}
		} else {
			problems = e.problems(s)
		}
		switch {
		case len(problems) > 0 && !matched.IsZero():
			t.Fatalf("the database matched after %v, then changed to %v:\n  %s",
				matched.Sub(begin).Round(time.Millisecond), s, strings.Join(problems, "\n  "))
		case len(problems) > 0 && time.Now().After(deadline):
			t.Fatalf("after %v the database shows %v:\n  %s", gzStatsTimeout, s, strings.Join(problems, "\n  "))
		case len(problems) > 0:
			time.Sleep(250 * time.Millisecond)
		case matched.IsZero():
			matched = time.Now()
			time.Sleep(gzSettle)
		default:
			t.Logf("statistics written after %v: %v", matched.Sub(begin).Round(time.Millisecond), s)
			return s
		}
	}
}

// gzSite calls the tracker as the Gazelle site does.
type gzSite struct {
	addr                         string // the tracker's HTTP port on 127.0.0.1
	sitePassword, reportPassword string
}

// update sends an update call and checks that Gazelle would take the
// answer for success.
func (s gzSite) update(t *testing.T, query string) {
	t.Helper()
	status, payload := gzRawGet(t, s.addr, "/"+s.sitePassword+"/update?"+query)
	// Gazelle cuts what follows the header at its last newline: the part
	// before is the body, the part after the status. What.CD wants the
	// status "success", OPS accepts a 200 status line instead. A reply of
	// exactly "success" with a 200 satisfies both.
	if payload != "success" || !strings.HasPrefix(status, "HTTP/1.1 200 ") {
		t.Fatalf("update %s: %s with body %q, want HTTP/1.1 200 with the body success", query, status, payload)
	}
}

// checkUserReport asks for the user report (OPS's JSON form) and checks the
// counts of torrents the user seeds and leeches.
func (s gzSite) checkUserReport(t *testing.T, u gzUser, seeding, leeching int) {
	t.Helper()
	status, payload := gzRawGet(t, s.addr, "/"+s.reportPassword+"/report?get=user&key="+u.passkey)
	// JSON reports end in a newline, so that Gazelle's body (up to the
	// last newline) is the whole object.
	body, ok := strings.CutSuffix(payload, "\n")
	var r struct {
		ID       int64 `json:"id"`
		Seeding  int   `json:"seeding"`
		Leeching int   `json:"leeching"`
	}
	if !ok || !strings.HasPrefix(status, "HTTP/1.1 200 ") || json.Unmarshal([]byte(body), &r) != nil {
		t.Fatalf("user report: %s %q, want a 200 with a JSON object and a newline", status, payload)
	}
	if r.ID != u.id || r.Seeding != seeding || r.Leeching != leeching {
		t.Errorf("user report for user %d: %s, want seeding %d, leeching %d", u.id, body, seeding, leeching)
	}
}

// gzRawGet sends a GET for target the way What.CD's Gazelle does: raw bytes
// on a fresh connection, HTTP/1.1 without a Host header, then reads until
// the server closes. It returns the status line and everything after the
// header.
func gzRawGet(t *testing.T, addr, target string) (status, payload string) {
	t.Helper()
	conn, err := net.DialTimeout("tcp", addr, 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	_ = conn.SetDeadline(time.Now().Add(5 * time.Second))
	if _, err := io.WriteString(conn, "GET "+target+" HTTP/1.1\r\nConnection: Close\r\n\r\n"); err != nil {
		t.Fatal(err)
	}
	raw, err := io.ReadAll(conn)
	if err != nil {
		t.Fatalf("GET %s: reading the reply: %v (so far %q)", gzRedact(target), err, raw)
	}
	head, payload, ok := strings.Cut(string(raw), "\r\n\r\n")
	if !ok {
		t.Fatalf("GET %s: reply without the end of a header: %q", gzRedact(target), raw)
	}
	status, _, _ = strings.Cut(head, "\r\n")
	return status, payload
}

// gzRedact shortens a path's leading secret for messages.
func gzRedact(target string) string {
	if len(target) > 9 {
		return target[:9] + "…" + target[min(len(target), 33):]
	}
	return target
}

// gzFailureReason announces over HTTP and returns the bencoded failure
// reason, or "" for a successful announce.
func gzFailureReason(t *testing.T, u string) string {
	t.Helper()
	body, err := httpGet(u)
	if err != nil {
		t.Fatal(err)
	}
	v, err := bdecode(body)
	if err != nil {
		t.Fatalf("announce response %q: %v", body, err)
	}
	d, ok := v.(map[string]any)
	if !ok {
		t.Fatalf("announce response %q is not a dictionary", body)
	}
	reason, _ := d["failure reason"].(string)
	return reason
}

// gzUDPFailure announces over UDP (BEP 15) with path as BEP 41 URL data
// and returns the error message, or "" for a successful announce.
func gzUDPFailure(t *testing.T, addr, path string, ih [20]byte) string {
	t.Helper()
	conn, err := net.Dial("udp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	_ = conn.SetDeadline(time.Now().Add(5 * time.Second))
	exchange := func(req []byte, action uint32) []byte {
		t.Helper()
		txID := binary.BigEndian.Uint32(req[12:16])
		if _, err := conn.Write(req); err != nil {
			t.Fatal(err)
		}
		buf := make([]byte, 2048)
		n, err := conn.Read(buf)
		if err != nil {
			t.Fatalf("UDP tracker: %v", err)
		}
		buf = buf[:n]
		if n < 8 || binary.BigEndian.Uint32(buf[4:8]) != txID {
			t.Fatalf("UDP tracker: reply %x does not match transaction %08x", buf, txID)
		}
		if got := binary.BigEndian.Uint32(buf[:4]); got != action && got != 3 {
			t.Fatalf("UDP tracker: reply %x has action %d, want %d", buf, got, action)
		}
		return buf
	}
	var txID [4]byte
	rand.Read(txID[:])
	connect := binary.BigEndian.AppendUint64(nil, 0x41727101980)
	connect = binary.BigEndian.AppendUint32(connect, 0)
	connect = append(connect, txID[:]...)
	reply := exchange(connect, 0)
	if binary.BigEndian.Uint32(reply[:4]) != 0 || len(reply) < 16 {
		t.Fatalf("UDP connect refused: %q", reply[8:])
	}

	rand.Read(txID[:])
	req := append([]byte{}, reply[8:16]...) // connection id
	req = binary.BigEndian.AppendUint32(req, 1)
	req = append(req, txID[:]...)
	req = append(req, ih[:]...)
	req = append(req, "-E2E001-gazelleudp01"...)
	req = binary.BigEndian.AppendUint64(req, 0)    // downloaded
	req = binary.BigEndian.AppendUint64(req, 1000) // left
	req = binary.BigEndian.AppendUint64(req, 0)    // uploaded
	req = binary.BigEndian.AppendUint32(req, 2)    // started
	req = binary.BigEndian.AppendUint32(req, 0)    // ip
	req = binary.BigEndian.AppendUint32(req, 0)    // key
	req = binary.BigEndian.AppendUint32(req, 50)   // numwant
	req = binary.BigEndian.AppendUint16(req, 40002)
	for rest := path; rest != ""; {
		n := min(len(rest), 255)
		req = append(req, 2, byte(n))
		req = append(req, rest[:n]...)
		rest = rest[n:]
	}
	req = append(req, 0)
	reply = exchange(req, 1)
	if binary.BigEndian.Uint32(reply[:4]) == 3 {
		return string(reply[8:])
	}
	return ""
}

// gzSecret returns a random 32-character key of the kind Gazelle uses for
// passkeys and the tracker secrets.
func gzSecret() string {
	const letters = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789"
	var b [32]byte
	rand.Read(b[:])
	for i := range b {
		b[i] = letters[int(b[i])%len(letters)]
	}
	return string(b[:])
}
