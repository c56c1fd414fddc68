package gazelle_test

// Helpers of the external tests (integration_test.go, fault_test.go): they
// wire the driver the way cmd/chihaya does (storage.Open → Start → Load →
// tracker.New with the memory cache → NewPrivate + Replace → Flusher) and
// read back what it wrote. They repeat the few conventions of the in-package
// db_test.go (strict SQL mode, CHIHAYA_MYSQL_DSN, a throwaway database per
// test, skip locally and fail in CI without a server), since an external
// test package cannot call its helpers.

import (
	"context"
	"crypto/rand"
	"database/sql"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/go-sql-driver/mysql"

	"github.com/chihaya/chihaya/bittorrent"
	"github.com/chihaya/chihaya/cache"
	_ "github.com/chihaya/chihaya/cache/memory"
	"github.com/chihaya/chihaya/storage"
	"github.com/chihaya/chihaya/storage/gazelle"
	"github.com/chihaya/chihaya/tracker"
)

// extStrictMode is MySQL 8's default sql_mode, which OPS runs; every
// connection of these tests uses it.
const extStrictMode = "ONLY_FULL_GROUP_BY,STRICT_TRANS_TABLES,NO_ZERO_IN_DATE,NO_ZERO_DATE,ERROR_FOR_DIVISION_BY_ZERO,NO_ENGINE_SUBSTITUTION"

const (
	extSitePassword   = "s1tepassw0rds1tepassw0rds1tepass"
	extReportPassword = "rep0rtpassw0rdrep0rtpassw0rdrep0"
)

// Fixture users (testdata/fixtures.sql) and the one the tests add.
const (
	alice = 1 // enabled, may leech, holds an active token on torrent 1 and an expired one on torrent 2
	bob   = 2 // disabled
	carol = 3 // leeching disabled
	dave  = 4 // Visible='0': protected
	erin  = 5 // IP 127.0.0.1: protected
	frank = 6 // unconfirmed
	gina  = 7 // added by extraFixtures: enabled, may leech, no token
)

var passkeys = map[uint32]string{
	alice: "alicealicealicealicealicealice01",
	bob:   "bobbobbobbobbobbobbobbobbobbob02",
	carol: "carolcarolcarolcarolcarolcarol03",
	dave:  "davedavedavedavedavedavedaveda04",
	erin:  "erinerinerinerinerinerinerinei05",
	frank: "frankfrankfrankfrankfrankfrank06",
	gina:  "ginaginaginaginaginaginaginagi07",
}

// passkeyOf is a user's passkey: the fixtures' for users 1-7, a generated
// one for the users the tests add (see loadUsers).
func passkeyOf(id uint32) string {
	if k, ok := passkeys[id]; ok {
		return k
	}
	return fmt.Sprintf("generatedpasskey%016d", id)
}

// loadUsers returns SQL adding enabled users with these ids, and their
// leech-stats rows in the ops dialect.
func loadUsers(dialect string, ids ...uint32) string {
	var sb strings.Builder
	for _, id := range ids {
		fmt.Fprintf(&sb, "INSERT INTO users_main (ID, Username, Email, torrent_pass, can_leech, Visible, IP, Enabled) VALUES (%d, 'user%d', 'u%d@example.org', '%s', 1, '1', '10.0.0.%d', '1');",
			id, id, id, passkeyOf(id), id%256)
		if dialect == gazelle.DialectOPS {
			fmt.Fprintf(&sb, "INSERT INTO users_leech_stats (UserID, Uploaded, Downloaded) VALUES (%d, 0, 0);", id)
		}
	}
	return sb.String()
}

// Fixture torrents: 1 normal, 2 freeleech, 3 neutral, 4 without a hash, 5
// normal but without a leech-stats row (not loaded in ops), and 6, normal,
// added by extraFixtures.
const (
	normalT  = 1
	freeT    = 2
	neutralT = 3
	noStatsT = 5
	extraT   = 6
)

// hashOf is the info hash of fixture torrent n: 20 bytes of n.
func hashOf(n byte) bittorrent.InfoHash {
	var h bittorrent.InfoHash
	for i := range h {
		h[i] = n
	}
	return h
}

// extraFixtures adds user 7 (gina) and torrent 6 the way Gazelle creates
// them: with their leech-stats rows in the ops dialect.
func extraFixtures(dialect string) string {
	s := "INSERT INTO users_main (ID, Username, Email, torrent_pass, can_leech, Visible, IP, Enabled) VALUES" +
		" (7, 'gina', 'gina@example.org', '" + passkeys[gina] + "', 1, '1', '10.0.0.7', '1');" +
		"INSERT INTO torrents (ID, GroupID, info_hash, FreeTorrent, FreeLeechType, Size) VALUES" +
		" (6, 13, UNHEX(REPEAT('06', 20)), '0', '0', 6000000);"
	if dialect == gazelle.DialectOPS {
		s += "INSERT INTO users_leech_stats (UserID, Uploaded, Downloaded) VALUES (7, 0, 0);" +
			"INSERT INTO torrents_leech_stats (TorrentID, Seeders, Leechers, Snatched, Balance) VALUES (6, 0, 0, 0, 0);"
	}
	return s
}

// mysqlBase is the shared test server: CHIHAYA_MYSQL_DSN, or the MariaDB
// scripts/start-services runs.
func mysqlBase(t testing.TB) *mysql.Config {
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
	return cfg
}

var (
	sharedOnce sync.Once
	sharedErr  error
)

// requireSharedMySQL skips the test when the shared server does not answer,
// or fails it in CI.
func requireSharedMySQL(t testing.TB) *mysql.Config {
	t.Helper()
	base := mysqlBase(t)
	sharedOnce.Do(func() { sharedErr = ping(base, 5*time.Second) })
	if sharedErr != nil {
		if os.Getenv("CI") != "" {
			t.Fatalf("MySQL/MariaDB unreachable (CI is set, so this fails): %v", sharedErr)
		}
		t.Skipf("MySQL/MariaDB unreachable, run scripts/start-services (or set CHIHAYA_MYSQL_DSN): %v", sharedErr)
	}
	return base
}

func ping(base *mysql.Config, timeout time.Duration) error {
	cfg := base.Clone()
	cfg.Timeout = timeout
	c, err := mysql.NewConnector(cfg)
	if err != nil {
		return err
	}
	db := sql.OpenDB(c)
	defer db.Close()
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	return db.PingContext(ctx)
}

// extDB is a throwaway database on a server, holding one dialect's schema
// and the fixtures.
type extDB struct {
	admin   *sql.DB // strict mode, several statements at once
	dsn     string  // for the store under test, strict mode
	dialect string
}

// createDB creates a database with a random name on the server base names,
// loads the dialect's schema, the fixtures, extraFixtures and extra, and
// drops it when the test ends.
func createDB(t testing.TB, base *mysql.Config, dialect, extra string) *extDB {
	t.Helper()
	cfg := base.Clone()
	cfg.DBName = ""
	cfg.MultiStatements = true
	cfg.Params = map[string]string{"sql_mode": "'" + extStrictMode + "'"}
	root := openDB(t, cfg)
	var rnd [6]byte
	_, _ = rand.Read(rnd[:])
	name := "chihaya_test_" + hex.EncodeToString(rnd[:])
	if _, err := root.Exec("CREATE DATABASE " + name + " CHARACTER SET utf8mb4"); err != nil {
		root.Close()
		t.Fatalf("create database: %v", err)
	}
	t.Cleanup(func() {
		// The fault tests may leave the server stopped: best effort.
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		_, _ = root.ExecContext(ctx, "DROP DATABASE "+name)
		root.Close()
	})
	cfg.DBName = name
	admin := openDB(t, cfg)
	t.Cleanup(func() { admin.Close() })
	for _, f := range []string{"schema_" + dialect + ".sql", "fixtures.sql", "fixtures_" + dialect + ".sql"} {
		b, err := os.ReadFile(filepath.Join("testdata", f))
		if err != nil {
			t.Fatal(err)
		}
		if _, err := admin.Exec(string(b)); err != nil {
			t.Fatalf("%s: %v", f, err)
		}
	}
	if _, err := admin.Exec(extraFixtures(dialect) + extra); err != nil {
		t.Fatalf("extra fixtures: %v", err)
	}
	cfg.MultiStatements = false
	return &extDB{admin: admin, dsn: cfg.FormatDSN(), dialect: dialect}
}

func openDB(t testing.TB, cfg *mysql.Config) *sql.DB {
	t.Helper()
	c, err := mysql.NewConnector(cfg)
	if err != nil {
		t.Fatal(err)
	}
	return sql.OpenDB(c)
}

// ints runs a query returning one row of integers (NULL reads as -1).
func (d *extDB) ints(t testing.TB, q string, args ...any) []int64 {
	t.Helper()
	rows, err := d.admin.Query(q, args...)
	if err != nil {
		t.Fatalf("%s: %v", q, err)
	}
	defer rows.Close()
	cols, _ := rows.Columns()
	if !rows.Next() {
		t.Fatalf("%s %v: no row", q, args)
	}
	vals := make([]sql.NullInt64, len(cols))
	ptrs := make([]any, len(cols))
	for i := range vals {
		ptrs[i] = &vals[i]
	}
	if err := rows.Scan(ptrs...); err != nil {
		t.Fatalf("%s: %v", q, err)
	}
	out := make([]int64, len(cols))
	for i, v := range vals {
		out[i] = -1
		if v.Valid {
			out[i] = v.Int64
		}
	}
	return out
}

func (d *extDB) count(t testing.TB, q string, args ...any) int64 {
	t.Helper()
	return d.ints(t, q, args...)[0]
}

func (d *extDB) exec(t testing.TB, q string, args ...any) {
	t.Helper()
	if _, err := d.admin.Exec(q, args...); err != nil {
		t.Fatalf("%s: %v", q, err)
	}
}

// userTotals reads a user's Uploaded and Downloaded where the dialect keeps
// them.
func (d *extDB) userTotals(t testing.TB, id uint32) (up, down int64) {
	t.Helper()
	q := "SELECT Uploaded, Downloaded FROM users_leech_stats WHERE UserID = ?"
	if d.dialect == gazelle.DialectWhat {
		q = "SELECT Uploaded, Downloaded FROM users_main WHERE ID = ?"
	}
	v := d.ints(t, q, id)
	return v[0], v[1]
}

// torrentCounters are a torrent's stored counters; LastAction is Unix
// seconds, -1 for NULL.
type torrentCounters struct {
	Seeders, Leechers, Snatched, Balance, LastAction int64
}

func (d *extDB) torrent(t testing.TB, id uint32) torrentCounters {
	t.Helper()
	q := "SELECT Seeders, Leechers, Snatched, Balance, UNIX_TIMESTAMP(last_action) FROM torrents_leech_stats WHERE TorrentID = ?"
	if d.dialect == gazelle.DialectWhat {
		q = "SELECT Seeders, Leechers, Snatched, balance, UNIX_TIMESTAMP(last_action) FROM torrents WHERE ID = ?"
	}
	v := d.ints(t, q, id)
	return torrentCounters{v[0], v[1], v[2], v[3], v[4]}
}

// peerRow is a row of xbt_files_users.
type peerRow struct {
	Active, Uploaded, Downloaded, Remaining, Corrupt, UpSpeed, DownSpeed, TimeSpent, Announced, Mtime int64
	IP, UserAgent                                                                                     string
}

// peer reads the row of a peer; ok is false when there is none.
func (d *extDB) peer(t testing.TB, uid, fid uint32, peerID string) (peerRow, bool) {
	t.Helper()
	var r peerRow
	err := d.admin.QueryRow("SELECT active, uploaded, downloaded, remaining, corrupt, upspeed, downspeed, timespent, announced, mtime, ip, useragent"+
		" FROM xbt_files_users WHERE uid = ? AND fid = ? AND peer_id = ?", uid, fid, peerID).
		Scan(&r.Active, &r.Uploaded, &r.Downloaded, &r.Remaining, &r.Corrupt, &r.UpSpeed, &r.DownSpeed, &r.TimeSpent, &r.Announced, &r.Mtime, &r.IP, &r.UserAgent)
	if errors.Is(err, sql.ErrNoRows) {
		return r, false
	}
	if err != nil {
		t.Fatalf("xbt_files_users %d/%d/%s: %v", uid, fid, peerID, err)
	}
	return r, true
}

// snatch is a row of xbt_snatched.
type snatch struct {
	UID, FID, Tstamp int64
	IP               string
}

func (d *extDB) snatches(t testing.TB, fid uint32) []snatch {
	t.Helper()
	rows, err := d.admin.Query("SELECT uid, fid, tstamp, IP FROM xbt_snatched WHERE fid = ? ORDER BY uid, tstamp", fid)
	if err != nil {
		t.Fatal(err)
	}
	defer rows.Close()
	var out []snatch
	for rows.Next() {
		var s snatch
		if err := rows.Scan(&s.UID, &s.FID, &s.Tstamp, &s.IP); err != nil {
			t.Fatal(err)
		}
		out = append(out, s)
	}
	if err := rows.Err(); err != nil {
		t.Fatal(err)
	}
	return out
}

// clock is the injected clock of the tracker and the cache.
type clock struct {
	mu  sync.Mutex
	now time.Time
}

func (c *clock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

func (c *clock) add(d time.Duration) {
	c.mu.Lock()
	c.now = c.now.Add(d)
	c.mu.Unlock()
}

// rig is a private tracker wired to a Gazelle database as cmd/chihaya wires
// it.
type rig struct {
	t       testing.TB
	db      *extDB
	store   storage.Storage
	tr      *tracker.Tracker
	policy  *tracker.Private
	flusher *storage.Flusher
	clock   *clock
	site    http.Handler

	closeOnce sync.Once
	closeErr  error
}

type rigOptions struct {
	// siteURL is the driver's site_url (the token callback); empty
	// expires tokens in the database.
	siteURL string
	// timeout is the driver's statement timeout.
	timeout string
	flusher storage.FlusherConfig
	// start runs the flusher's periodic writes; without it the test
	// calls Flush.
	start bool
	// realClock uses time.Now instead of the injected clock.
	realClock bool
	log       *slog.Logger
	// wrap, if set, wraps the store before the flusher gets it.
	wrap func(storage.Writer) storage.Writer
}

// t0 is the injected clock's start, a Unix time that fits Gazelle's int
// columns.
var t0 = time.Unix(1_800_000_000, 0)

func newRig(t testing.TB, db *extDB, o rigOptions) *rig {
	t.Helper()
	conf := map[string]any{
		"dsn":             db.dsn,
		"dialect":         db.dialect,
		"timeout":         "20s",
		"site_password":   extSitePassword,
		"report_password": extReportPassword,
	}
	if o.timeout != "" {
		conf["timeout"] = o.timeout
	}
	if o.siteURL != "" {
		conf["site_url"] = o.siteURL
	}
	raw, err := json.Marshal(conf)
	if err != nil {
		t.Fatal(err)
	}
	store, err := storage.Open("gazelle", raw)
	if err != nil {
		t.Fatalf("storage.Open: %v", err)
	}
	t.Cleanup(func() { store.Close() })
	ctx := context.Background()
	if s, ok := store.(storage.Starter); ok {
		if err := s.Start(ctx); err != nil {
			t.Fatalf("Start: %v", err)
		}
	} else {
		t.Fatal("the gazelle store is not a storage.Starter")
	}
	snap, err := store.Load(ctx)
	if err != nil {
		t.Fatalf("Load: %v", err)
	}

	clk := &clock{now: t0}
	now := clk.Now
	if o.realClock {
		now = time.Now
	}
	swarms, err := cache.Open("memory", nil, cache.Options{PeerLifetime: time.Hour, Now: now})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { swarms.Close() })
	tr := tracker.New(tracker.Config{
		AnnounceInterval: 30 * time.Minute, MinAnnounceInterval: 15 * time.Minute,
		DefaultNumWant: 50, MaxNumWant: 50, MaxScrapeInfoHashes: 50,
	}, swarms)

	fc := o.flusher
	if fc.Interval == 0 {
		fc.Interval = time.Hour
	}
	if fc.Timeout == 0 {
		fc.Timeout = 20 * time.Second
	}
	if fc.MaxBackoff == 0 {
		fc.MaxBackoff = fc.Interval
	}
	log := o.log
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	var w storage.Writer = store
	if o.wrap != nil {
		w = o.wrap(store)
	}
	fl := storage.NewFlusher(w, fc, log)
	pc := tracker.PrivateConfig{PeerLifetime: time.Hour, DeletionMemory: 24 * time.Hour, Now: now}
	if m, ok := store.(interface{ DeletionMessage(int) string }); ok {
		pc.DeletionMessage = m.DeletionMessage
	} else {
		t.Fatal("the gazelle store gives no deletion messages")
	}
	p := tracker.NewPrivate(tr, pc, fl)
	p.Replace(snap)
	if o.start {
		fl.Start()
	}
	r := &rig{t: t, db: db, store: store, tr: tr, policy: p, flusher: fl, clock: clk}
	// Registered after the store's Close, so it runs before it.
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
		defer cancel()
		_ = r.close(ctx)
	})
	if h, ok := store.(storage.SiteHandler); ok {
		r.site = h.SiteHandler(p)
	} else {
		t.Fatal("the gazelle store has no site handler")
	}
	return r
}

// close closes the flusher once (Flusher.Close may not be called twice).
func (r *rig) close(ctx context.Context) error {
	r.closeOnce.Do(func() { r.closeErr = r.flusher.Close(ctx) })
	return r.closeErr
}

// ann is one announce of a test client.
type ann struct {
	user  uint32
	t     byte   // fixture torrent
	peer  string // peer id, padded to 20 bytes
	up    uint64
	down  uint64
	left  uint64
	event bittorrent.Event
	v6    bool // over IPv6 only
	ua    string
}

func (a ann) request() *bittorrent.AnnounceRequest {
	req := &bittorrent.AnnounceRequest{
		InfoHash: hashOf(a.t), Port: uint16(50000 + a.user), Uploaded: a.up, Downloaded: a.down, Left: a.left,
		Event: a.event, NumWant: -1, Compact: true, Passkey: passkeyOf(a.user), UserAgent: a.ua,
	}
	if req.UserAgent == "" {
		req.UserAgent = "Transmission/4.0.5"
	}
	copy(req.PeerID[:], padPeer(a.peer))
	if a.v6 {
		req.IPv6 = netip.AddrFrom16([16]byte{0x20, 0x01, 0x0d, 0xb8, 15: byte(a.user)})
	} else {
		req.IPv4 = netip.AddrFrom4([4]byte{10, 0, 0, byte(a.user)})
	}
	req.Source = req.IPv4
	return req
}

// padPeer makes a 20-byte peer id.
func padPeer(p string) string {
	if len(p) >= 20 {
		return p[:20]
	}
	return p + strings.Repeat("0", 20-len(p))
}

func (r *rig) announce(a ann) (*bittorrent.AnnounceResponse, error) {
	var resp bittorrent.AnnounceResponse
	err := r.tr.Announce(context.Background(), a.request(), &resp)
	return &resp, err
}

func (r *rig) ok(a ann) *bittorrent.AnnounceResponse {
	r.t.Helper()
	resp, err := r.announce(a)
	if err != nil {
		r.t.Fatalf("announce %+v: %v", a, err)
	}
	return resp
}

func (r *rig) refused(a ann, want string) {
	r.t.Helper()
	_, err := r.announce(a)
	if err == nil || err.Error() != want {
		r.t.Fatalf("announce %+v: error %v, want %q", a, err, want)
	}
}

func (r *rig) flush() {
	r.t.Helper()
	if err := r.flusher.Flush(context.Background()); err != nil {
		r.t.Fatalf("flush: %v", err)
	}
	if p := r.flusher.Pending(); p != (storage.Pending{}) {
		r.t.Fatalf("pending after a flush: %+v", p)
	}
}

// update makes one of Gazelle's update calls through the driver's site
// handler; q is the raw query after "action=".
func (r *rig) update(q string) {
	r.t.Helper()
	req := httptest.NewRequest(http.MethodGet, "/"+extSitePassword+"/update?action="+q, nil)
	rec := httptest.NewRecorder()
	r.site.ServeHTTP(rec, req)
	if rec.Code != http.StatusOK || rec.Body.String() != "success" {
		r.t.Fatalf("update %s: %d %q", q, rec.Code, rec.Body.String())
	}
}

// report makes one of Gazelle's report calls and returns the body.
func (r *rig) report(q string) string {
	r.t.Helper()
	req := httptest.NewRequest(http.MethodGet, "/"+extReportPassword+"/report?"+q, nil)
	rec := httptest.NewRecorder()
	r.site.ServeHTTP(rec, req)
	if rec.Code != http.StatusOK {
		r.t.Fatalf("report %s: %d %q", q, rec.Code, rec.Body.String())
	}
	return rec.Body.String()
}

// rawurlencode encodes bytes as PHP's rawurlencode, as Gazelle sends info
// hashes.
func rawurlencode(b []byte) string {
	var sb strings.Builder
	for _, c := range b {
		if 'a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' || c == '-' || c == '_' || c == '.' || c == '~' {
			sb.WriteByte(c)
			continue
		}
		fmt.Fprintf(&sb, "%%%02X", c)
	}
	return sb.String()
}

func netipAddr(s string) netip.Addr { return netip.MustParseAddr(s) }

// encodedHash is fixture torrent n's info hash as Gazelle puts it in an
// update call.
func encodedHash(n byte) string {
	h := hashOf(n)
	return rawurlencode(h[:])
}

// str returns the single string a query selects.
func (d *extDB) str(t testing.TB, q string, args ...any) string {
	t.Helper()
	var s string
	if err := d.admin.QueryRow(q, args...).Scan(&s); err != nil {
		t.Fatalf("%s: %v", q, err)
	}
	return s
}
