package gazelle_test

// Integration tests: the gazelle driver wired as cmd/chihaya wires it,
// announce sequences for each fixture case, and every table the driver
// writes read back with SQL, in both dialects and in strict SQL mode.

import (
	"context"
	"net/http"
	"net/http/httptest"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/chihaya/chihaya/bittorrent"
	"github.com/chihaya/chihaya/storage"
	"github.com/chihaya/chihaya/storage/gazelle"
)

// eachDialect runs f once per dialect, in parallel, each on its own
// database of the shared server.
func eachDialect(t *testing.T, extra string, f func(t *testing.T, db *extDB)) {
	base := requireSharedMySQL(t)
	for _, dialect := range []string{gazelle.DialectOPS, gazelle.DialectWhat} {
		t.Run(dialect, func(t *testing.T) {
			t.Parallel()
			f(t, createDB(t, base, dialect, extra))
		})
	}
}

func wantUser(t *testing.T, db *extDB, id uint32, up, down int64) {
	t.Helper()
	if gotUp, gotDown := db.userTotals(t, id); gotUp != up || gotDown != down {
		t.Errorf("user %d: Uploaded/Downloaded %d/%d, want %d/%d", id, gotUp, gotDown, up, down)
	}
}

func wantTorrent(t *testing.T, db *extDB, id uint32, want torrentCounters) {
	t.Helper()
	if got := db.torrent(t, id); got != want {
		t.Errorf("torrent %d: %+v, want %+v", id, got, want)
	}
}

func wantPeer(t *testing.T, db *extDB, uid, fid uint32, peerID string, want peerRow) {
	t.Helper()
	got, ok := db.peer(t, uid, fid, padPeer(peerID))
	if !ok {
		t.Errorf("xbt_files_users has no row for user %d torrent %d peer %s", uid, fid, peerID)
		return
	}
	if got != want {
		t.Errorf("xbt_files_users user %d torrent %d peer %s:\n got %+v\nwant %+v", uid, fid, peerID, got, want)
	}
}

func wantSnatches(t *testing.T, db *extDB, fid uint32, want ...snatch) {
	t.Helper()
	if got := db.snatches(t, fid); !slices.Equal(got, want) {
		t.Errorf("xbt_snatched for torrent %d: %+v, want %+v", fid, got, want)
	}
}

func unix(d time.Duration) int64 { return t0.Add(d).Unix() }

// A seeder and a leecher on a normal torrent, from their first announce to
// the leecher's stop: the users' totals move by exactly the deltas, the
// torrent's counters follow the swarm, the peer rows go heavy then light,
// a completion is one snatch however often it is sent, and a stop leaves
// an inactive row.
func TestIntegrationSwarm(t *testing.T) {
	eachDialect(t, "", func(t *testing.T, db *extDB) {
		r := newRig(t, db, rigOptions{})
		const (
			alicePeer = "-TR4050-alice"
			ginaPeer  = "-qB4630-gina"
			aliceUA   = "Transmission/4.0.5"
			ginaUA    = "qBittorrent/4.6.3"
		)
		// Start cleared the previous run's peers and counters.
		if n := db.count(t, "SELECT COUNT(*) FROM xbt_files_users"); n != 0 {
			t.Fatalf("xbt_files_users holds %d rows after Start", n)
		}
		wantTorrent(t, db, normalT, torrentCounters{0, 0, 10, 0, -1})

		// The first announces set the baselines: no credit.
		r.ok(ann{user: alice, t: normalT, peer: alicePeer, up: 7777, down: 0, left: 0, event: bittorrent.Started, ua: aliceUA})
		resp := r.ok(ann{user: gina, t: normalT, peer: ginaPeer, up: 0, down: 0, left: 1_000_000, event: bittorrent.Started, ua: ginaUA})
		if resp.Complete != 1 || resp.Incomplete != 1 || resp.Peers4.Len() != 1 || resp.Peers4.At(0).Addr() != netipAddr("10.0.0.1") || resp.Snatches != 10 {
			t.Fatalf("the leecher's first reply: %+v", resp)
		}
		r.flush()
		wantUser(t, db, alice, 1000, 500)
		wantUser(t, db, gina, 0, 0)
		wantTorrent(t, db, normalT, torrentCounters{1, 1, 10, 0, unix(0)})
		wantPeer(t, db, alice, normalT, alicePeer, peerRow{Active: 1, Uploaded: 7777, Announced: 1, Mtime: unix(0), IP: "10.0.0.1", UserAgent: aliceUA})
		wantPeer(t, db, gina, normalT, ginaPeer, peerRow{Active: 1, Remaining: 1_000_000, Announced: 1, Mtime: unix(0), IP: "10.0.0.7", UserAgent: ginaUA})
		wantSnatches(t, db, normalT)

		// Progress: exactly the deltas, heavy rows with speeds. The
		// user agent of an existing row is kept, as in Ocelot.
		r.clock.add(100 * time.Second)
		r.ok(ann{user: alice, t: normalT, peer: alicePeer, up: 307_777, left: 0, ua: "Transmission/4.0.6"})
		r.ok(ann{user: gina, t: normalT, peer: ginaPeer, up: 20_000, down: 300_000, left: 700_000, ua: ginaUA})
		r.flush()
		wantUser(t, db, alice, 1000+300_000, 500)
		wantUser(t, db, gina, 20_000, 300_000)
		wantTorrent(t, db, normalT, torrentCounters{1, 1, 10, 300_000 + 20_000 - 300_000, unix(100 * time.Second)})
		wantPeer(t, db, alice, normalT, alicePeer, peerRow{Active: 1, Uploaded: 307_777, UpSpeed: 3000, TimeSpent: 100, Announced: 2, Mtime: unix(100 * time.Second), IP: "10.0.0.1", UserAgent: aliceUA})
		wantPeer(t, db, gina, normalT, ginaPeer, peerRow{Active: 1, Uploaded: 20_000, Downloaded: 300_000, Remaining: 700_000, UpSpeed: 200, DownSpeed: 3000, TimeSpent: 100, Announced: 2, Mtime: unix(100 * time.Second), IP: "10.0.0.7", UserAgent: ginaUA})

		// Nothing moved: a light row, speeds back to 0, transfer
		// columns untouched, no credit.
		r.clock.add(100 * time.Second)
		r.ok(ann{user: alice, t: normalT, peer: alicePeer, up: 307_777, left: 0, ua: aliceUA})
		r.flush()
		wantUser(t, db, alice, 1000+300_000, 500)
		wantPeer(t, db, alice, normalT, alicePeer, peerRow{Active: 1, Uploaded: 307_777, TimeSpent: 200, Announced: 3, Mtime: unix(200 * time.Second), IP: "10.0.0.1", UserAgent: aliceUA})
		wantTorrent(t, db, normalT, torrentCounters{1, 1, 10, 20_000, unix(200 * time.Second)})

		// Completed: one snatch, the leecher becomes a seeder.
		r.clock.add(50 * time.Second)
		resp = r.ok(ann{user: gina, t: normalT, peer: ginaPeer, up: 20_000, down: 1_000_000, left: 0, event: bittorrent.Completed, ua: ginaUA})
		if resp.Snatches != 11 || resp.Complete != 2 || resp.Incomplete != 0 {
			t.Errorf("the completing announce's reply: %+v, want downloaded 11 (10 stored + 1)", resp)
		}
		r.flush()
		wantUser(t, db, gina, 20_000, 1_000_000)
		wantTorrent(t, db, normalT, torrentCounters{2, 0, 11, 20_000 - 700_000, unix(250 * time.Second)})
		wantSnatches(t, db, normalT, snatch{UID: gina, FID: normalT, Tstamp: unix(250 * time.Second), IP: "10.0.0.7"})
		wantPeer(t, db, gina, normalT, ginaPeer, peerRow{Active: 1, Uploaded: 20_000, Downloaded: 1_000_000, DownSpeed: 700_000 / 150, TimeSpent: 250, Announced: 3, Mtime: unix(250 * time.Second), IP: "10.0.0.7", UserAgent: ginaUA})

		// Completed again: no second snatch.
		r.clock.add(10 * time.Second)
		if resp := r.ok(ann{user: gina, t: normalT, peer: ginaPeer, up: 20_000, down: 1_000_000, left: 0, event: bittorrent.Completed, ua: ginaUA}); resp.Snatches != 11 {
			t.Errorf("a second completed: downloaded %d, want 11", resp.Snatches)
		}
		r.flush()
		// Scrapes and the site's torrent report tell the same count.
		var sr bittorrent.ScrapeResponse
		if err := r.tr.Scrape(context.Background(), &bittorrent.ScrapeRequest{Passkey: passkeys[alice], InfoHashes: []bittorrent.InfoHash{hashOf(normalT), hashOf(freeT)}}, &sr); err != nil {
			t.Fatal(err)
		}
		if len(sr.Files) != 2 || sr.Files[0].Snatches != 11 || sr.Files[0].Complete != 2 || sr.Files[1].Snatches != 20 || sr.Files[1].Complete != 0 {
			t.Errorf("scrape: %+v, want downloaded 11 (2 seeders) and 20 (no swarm)", sr.Files)
		}
		if rep := r.report("get=torrent&info_hash=" + encodedHash(normalT)); !strings.Contains(rep, `"completed":11,`) {
			t.Errorf("torrent report %s, want completed 11", rep)
		}
		wantTorrent(t, db, normalT, torrentCounters{2, 0, 11, 20_000 - 700_000, unix(260 * time.Second)})
		wantSnatches(t, db, normalT, snatch{UID: gina, FID: normalT, Tstamp: unix(250 * time.Second), IP: "10.0.0.7"})

		// Stopped: the stop's transfer is credited, the row stays,
		// inactive.
		r.clock.add(40 * time.Second)
		r.ok(ann{user: gina, t: normalT, peer: ginaPeer, up: 50_000, down: 1_000_000, left: 0, event: bittorrent.Stopped, ua: ginaUA})
		r.flush()
		wantUser(t, db, gina, 50_000, 1_000_000)
		wantUser(t, db, alice, 1000+300_000, 500)
		wantTorrent(t, db, normalT, torrentCounters{1, 0, 11, 20_000 - 700_000 + 30_000, unix(300 * time.Second)})
		wantPeer(t, db, gina, normalT, ginaPeer, peerRow{Active: 0, Uploaded: 50_000, Downloaded: 1_000_000, UpSpeed: 750, TimeSpent: 300, Announced: 5, Mtime: unix(300 * time.Second), IP: "10.0.0.7", UserAgent: ginaUA})
		if n := db.count(t, "SELECT COUNT(*) FROM xbt_files_users"); n != 2 {
			t.Errorf("xbt_files_users holds %d rows, want 2", n)
		}
		// Nothing else was touched: the other torrents keep the counters
		// Start left, the token row its bytes.
		wantTorrent(t, db, freeT, torrentCounters{0, 0, 20, 0, -1})
		wantTorrent(t, db, neutralT, torrentCounters{0, 0, 30, 0, -1})
		if n := db.count(t, "SELECT Downloaded FROM users_freeleeches WHERE UserID = 1 AND TorrentID = 1"); n != 100 {
			t.Errorf("alice's token row: Downloaded %d, want 100 (a seeder spares nothing)", n)
		}
		if st := r.flusher.Stats(); slices.ContainsFunc(st, func(q storage.QueueStats) bool { return q.Dropped != 0 || q.Retries != 0 }) {
			t.Errorf("flusher dropped or retried rows: %+v", st)
		}
	})
}

// Users, torrents and clients the tracker does not serve are refused with
// Ocelot's words, and nothing they send is written.
func TestIntegrationRefusals(t *testing.T) {
	eachDialect(t, "", func(t *testing.T, db *extDB) {
		r := newRig(t, db, rigOptions{})
		r.refused(ann{user: bob, t: normalT, peer: "-TR4050-bob", up: 5, left: 10, event: bittorrent.Started}, "Passkey not found")
		r.refused(ann{user: bob, t: normalT, peer: "-TR4050-bob", up: 500, left: 10}, "Passkey not found")
		r.refused(ann{user: frank, t: normalT, peer: "-TR4050-frank", left: 10}, "Passkey not found")
		r.refused(ann{user: 99, t: normalT, peer: "-TR4050-nobody", left: 10}, "Passkey not found")
		r.refused(ann{user: alice, t: 0x77, peer: "-TR4050-alice", left: 10}, "Unregistered torrent")
		// Torrent 5 has no torrents_leech_stats row: the ops loader
		// skips it, as Ocelot does; the what schema has no such table.
		if db.dialect == gazelle.DialectOPS {
			r.refused(ann{user: alice, t: noStatsT, peer: "-TR4050-alice", left: 10}, "Unregistered torrent")
		} else {
			r.ok(ann{user: alice, t: noStatsT, peer: "-TR4050-alice", left: 10, event: bittorrent.Started})
		}
		// The whitelist holds -TR and -qB.
		r.refused(ann{user: alice, t: normalT, peer: "-XX1000-alice", left: 10}, "Your client is not on the whitelist")
		r.refused(ann{user: gina, t: normalT, peer: "M7-4-0--gina", left: 10}, "Your client is not on the whitelist")
		r.ok(ann{user: gina, t: normalT, peer: "-qB4630-gina", left: 10, event: bittorrent.Started})

		// A torrent the site deletes with a reason: its announces are
		// told why; without a reason, the plain message.
		r.ok(ann{user: alice, t: extraT, peer: "-TR4050-alice", left: 0, event: bittorrent.Started})
		r.ok(ann{user: gina, t: extraT, peer: "-qB4630-gina", left: 100, event: bittorrent.Started})
		r.flush()
		wantTorrent(t, db, extraT, torrentCounters{1, 1, 0, 0, unix(0)})
		r.update("delete_torrent&info_hash=" + encodedHash(extraT) + "&id=6&reason=1")
		r.refused(ann{user: gina, t: extraT, peer: "-qB4630-gina", up: 10, down: 50, left: 50}, "Unregistered torrent: Trump")
		r.refused(ann{user: alice, t: extraT, peer: "-TR4050-alice", up: 60, left: 0}, "Unregistered torrent: Trump")
		r.update("delete_torrent&info_hash=" + encodedHash(neutralT) + "&id=3&reason=14")
		r.refused(ann{user: gina, t: neutralT, peer: "-qB4630-gina", left: 50, event: bittorrent.Started}, "Unregistered torrent: Specifically Banned")
		r.update("delete_torrent&info_hash=" + encodedHash(freeT) + "&id=2")
		r.refused(ann{user: gina, t: freeT, peer: "-qB4630-gina", left: 50, event: bittorrent.Started}, "Unregistered torrent")
		r.flush()

		// Nothing refused reached the database.
		if n := db.count(t, "SELECT COUNT(*) FROM xbt_files_users WHERE uid IN (2, 6, 99) OR fid IN (2, 3, 119) OR LEFT(peer_id, 3) NOT IN ('-TR', '-qB')"); n != 0 {
			t.Errorf("%d peer rows written for refused announces", n)
		}
		wantPeer(t, db, gina, extraT, "-qB4630-gina", peerRow{Active: 1, Remaining: 100, Announced: 1, Mtime: unix(0), IP: "10.0.0.7", UserAgent: "Transmission/4.0.5"})
		wantPeer(t, db, alice, extraT, "-TR4050-alice", peerRow{Active: 1, Announced: 1, Mtime: unix(0), IP: "10.0.0.1", UserAgent: "Transmission/4.0.5"})
		wantUser(t, db, bob, 0, 0)
		wantUser(t, db, alice, 1000, 500)
		wantUser(t, db, gina, 0, 0)
		wantTorrent(t, db, extraT, torrentCounters{1, 1, 0, 0, unix(0)})
		wantTorrent(t, db, freeT, torrentCounters{0, 0, 20, 0, -1})
		wantTorrent(t, db, neutralT, torrentCounters{0, 0, 30, 0, -1})
		wantSnatches(t, db, normalT)
		peersOn5 := int64(0)
		if db.dialect == gazelle.DialectWhat {
			peersOn5 = 1
		}
		if n := db.count(t, "SELECT COUNT(*) FROM xbt_files_users WHERE fid = 5"); n != peersOn5 {
			t.Errorf("%d peer rows on torrent 5, want %d", n, peersOn5)
		}
	})
}

// A user who may not leech is refused when it has something left, and its
// peer is handed to nobody; the refused announces' transfer is still
// credited (the peer row stays active, as in Ocelot); seeding is allowed.
func TestIntegrationLeechForbidden(t *testing.T) {
	eachDialect(t, "", func(t *testing.T, db *extDB) {
		r := newRig(t, db, rigOptions{})
		r.ok(ann{user: alice, t: normalT, peer: "-TR4050-alice", left: 0, event: bittorrent.Started})
		r.refused(ann{user: carol, t: normalT, peer: "-TR4050-carol-a", left: 500, event: bittorrent.Started}, "Access denied, leeching forbidden")
		resp := r.ok(ann{user: gina, t: normalT, peer: "-qB4630-gina", left: 1000, event: bittorrent.Started})
		if resp.Complete != 1 || resp.Incomplete != 1 || resp.Peers4.Len() != 1 || resp.Peers4.At(0).Addr() != netipAddr("10.0.0.1") {
			t.Fatalf("the refused leecher was handed out: %+v", resp)
		}
		r.flush()
		wantTorrent(t, db, normalT, torrentCounters{1, 1, 10, 0, unix(0)})
		wantPeer(t, db, carol, normalT, "-TR4050-carol-a", peerRow{Active: 1, Remaining: 500, Announced: 1, Mtime: unix(0), IP: "10.0.0.3", UserAgent: "Transmission/4.0.5"})

		// Seeding is allowed, and credited.
		r.clock.add(time.Minute)
		r.ok(ann{user: carol, t: normalT, peer: "-TR4050-carol-b", up: 1000, left: 0, event: bittorrent.Started})
		r.clock.add(time.Minute)
		r.ok(ann{user: carol, t: normalT, peer: "-TR4050-carol-b", up: 5000, left: 0})
		resp = r.ok(ann{user: gina, t: normalT, peer: "-qB4630-gina", left: 1000})
		if resp.Complete != 2 || resp.Peers4.Len() != 2 {
			t.Fatalf("the seeding user without leech rights was not handed out: %+v", resp)
		}
		r.flush()
		wantUser(t, db, carol, 4000, 0)

		// The seeder finds data missing and asks to leech: refused, the
		// announce's transfer still credited, the peer out of the
		// swarm.
		r.clock.add(time.Minute)
		r.refused(ann{user: carol, t: normalT, peer: "-TR4050-carol-b", up: 7000, down: 100, left: 300}, "Access denied, leeching forbidden")
		resp = r.ok(ann{user: gina, t: normalT, peer: "-qB4630-gina", left: 1000})
		if resp.Complete != 1 || resp.Peers4.Len() != 1 || resp.Peers4.At(0).Addr() != netipAddr("10.0.0.1") {
			t.Fatalf("the refused peer stayed in the swarm: %+v", resp)
		}
		r.flush()
		wantUser(t, db, carol, 6000, 100)
		wantTorrent(t, db, normalT, torrentCounters{1, 1, 10, 4000 + 2000 - 100, unix(3 * time.Minute)})
		wantPeer(t, db, carol, normalT, "-TR4050-carol-b", peerRow{Active: 1, Uploaded: 7000, Downloaded: 100, Remaining: 300, UpSpeed: 33, DownSpeed: 1, TimeSpent: 120, Announced: 3, Mtime: unix(3 * time.Minute), IP: "10.0.0.3", UserAgent: "Transmission/4.0.5"})

		// Later refused announces of the session are credited too:
		// a user on ratio watch keeps earning upload.
		r.clock.add(time.Minute)
		r.refused(ann{user: carol, t: normalT, peer: "-TR4050-carol-b", up: 9000, down: 100, left: 300}, "Access denied, leeching forbidden")
		r.flush()
		wantUser(t, db, carol, 8000, 100)
	})
}

// Protected users (Visible='0', IP='127.0.0.1') are served and handed out,
// but their address is written as the empty string in both tables that
// hold one.
func TestIntegrationProtected(t *testing.T) {
	eachDialect(t, "", func(t *testing.T, db *extDB) {
		r := newRig(t, db, rigOptions{})
		r.ok(ann{user: alice, t: normalT, peer: "-TR4050-alice", left: 0, event: bittorrent.Started})
		for _, u := range []uint32{dave, erin} {
			r.ok(ann{user: u, t: normalT, peer: "-qB4630-p", left: 1000, event: bittorrent.Started})
		}
		if resp := r.ok(ann{user: alice, t: normalT, peer: "-TR4050-alice", left: 0}); resp.Peers4.Len() != 2 {
			t.Fatalf("protected users' peers are not handed out: %+v", resp)
		}
		r.clock.add(time.Minute)
		for _, u := range []uint32{dave, erin} {
			r.ok(ann{user: u, t: normalT, peer: "-qB4630-p", down: 1000, left: 0, event: bittorrent.Completed})
		}
		r.flush()
		for _, u := range []uint32{dave, erin} {
			wantPeer(t, db, u, normalT, "-qB4630-p", peerRow{Active: 1, Downloaded: 1000, DownSpeed: 16, TimeSpent: 60, Announced: 2, Mtime: unix(time.Minute), UserAgent: "Transmission/4.0.5"})
			wantUser(t, db, u, 0, 1000)
		}
		wantPeer(t, db, alice, normalT, "-TR4050-alice", peerRow{Active: 1, Announced: 2, Mtime: unix(0), IP: "10.0.0.1", UserAgent: "Transmission/4.0.5"})
		wantSnatches(t, db, normalT,
			snatch{UID: dave, FID: normalT, Tstamp: unix(time.Minute), IP: ""},
			snatch{UID: erin, FID: normalT, Tstamp: unix(time.Minute), IP: ""})
		wantTorrent(t, db, normalT, torrentCounters{3, 0, 12, -2000, unix(time.Minute)})
	})
}

// tokenSite stands in for Gazelle's tools.php: it checks the call as
// Gazelle does and expires the tokens in the database, as Gazelle's
// handler does.
type tokenSite struct {
	db *extDB

	mu    sync.Mutex
	calls []url.Values
	paths []string
}

func (s *tokenSite) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	s.mu.Lock()
	s.calls = append(s.calls, q)
	s.paths = append(s.paths, r.URL.Path)
	s.mu.Unlock()
	if q.Get("key") != extSitePassword || q.Get("type") != "expiretoken" || q.Get("action") != "ocelot" {
		w.WriteHeader(http.StatusForbidden)
		return
	}
	for _, item := range strings.Split(q.Get("tokens"), ",") {
		u, tor, ok := strings.Cut(item, ":")
		uid, err1 := strconv.Atoi(u)
		tid, err2 := strconv.Atoi(tor)
		if !ok || err1 != nil || err2 != nil {
			w.WriteHeader(http.StatusBadRequest)
			return
		}
		if _, err := s.db.admin.Exec("UPDATE users_freeleeches SET Expired = 1 WHERE UserID = ? AND TorrentID = ?", uid, tid); err != nil {
			w.WriteHeader(http.StatusInternalServerError)
			return
		}
	}
	_, _ = w.Write([]byte("ok"))
}

func (s *tokenSite) tokens() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	var out []string
	for i, c := range s.calls {
		out = append(out, s.paths[i]+" "+c.Get("tokens"))
	}
	return out
}

func tokenDownloaded(t *testing.T, db *extDB, uid, tid uint32) (downloaded, expired int64) {
	t.Helper()
	v := db.ints(t, "SELECT Downloaded, Expired FROM users_freeleeches WHERE UserID = ? AND TorrentID = ?", uid, tid)
	return v[0], v[1]
}

// Freeleech, neutral leech and tokens: what is credited, what the tokens
// spare, and a completion that uses a token up through the site's
// callback.
func TestIntegrationLeechStates(t *testing.T) {
	// gina holds an expired token for the normal torrent.
	const expiredToken = "INSERT INTO users_freeleeches (UserID, TorrentID, Time, Expired, Downloaded) VALUES (7, 1, '2024-01-01 00:00:00', 1, 0);"
	eachDialect(t, expiredToken, func(t *testing.T, db *extDB) {
		site := &tokenSite{db: db}
		srv := httptest.NewServer(site)
		t.Cleanup(srv.Close)
		r := newRig(t, db, rigOptions{siteURL: srv.URL + "/gazelle/"})

		// Freeleech: upload credited, download not. alice's token for
		// it is expired: nothing is added to it.
		r.ok(ann{user: gina, t: freeT, peer: "-qB4630-gina", left: 2_000_000, event: bittorrent.Started})
		r.ok(ann{user: gina, t: freeT, peer: "-qB4630-gina", up: 1000, down: 5000, left: 2_000_000})
		r.ok(ann{user: alice, t: freeT, peer: "-TR4050-alice", left: 2_000_000, event: bittorrent.Started})
		r.ok(ann{user: alice, t: freeT, peer: "-TR4050-alice", up: 10, down: 7000, left: 2_000_000})
		// Neutral: nothing credited.
		r.ok(ann{user: gina, t: neutralT, peer: "-qB4630-gina", left: 3_000_000, event: bittorrent.Started})
		r.ok(ann{user: gina, t: neutralT, peer: "-qB4630-gina", up: 1000, down: 5000, left: 3_000_000})
		r.flush()
		wantUser(t, db, gina, 1000, 0)
		wantUser(t, db, alice, 1000+10, 500)
		if d, e := tokenDownloaded(t, db, alice, freeT); d != 200 || e != 1 {
			t.Errorf("alice's expired token on the freeleech torrent: Downloaded %d Expired %d, want 200 1", d, e)
		}
		// The torrents' balance counts raw transfer whatever the state.
		wantTorrent(t, db, freeT, torrentCounters{0, 2, 20, 1000 - 5000 + 10 - 7000, -1})
		wantTorrent(t, db, neutralT, torrentCounters{0, 1, 30, 1000 - 5000, -1})
		if n := db.count(t, "SELECT COUNT(*) FROM users_freeleeches"); n != 4 {
			t.Errorf("users_freeleeches holds %d rows, want the 4 fixtures", n)
		}

		// An active token on a normal torrent: download not charged,
		// the spared bytes added to the token's row.
		r.ok(ann{user: alice, t: normalT, peer: "-TR4050-alice", left: 1_000_000, event: bittorrent.Started})
		r.ok(ann{user: alice, t: normalT, peer: "-TR4050-alice", up: 100, down: 400_000, left: 600_000})
		r.flush()
		wantUser(t, db, alice, 1000+10+100, 500)
		if d, e := tokenDownloaded(t, db, alice, normalT); d != 100+400_000 || e != 0 {
			t.Errorf("alice's token: Downloaded %d Expired %d, want %d 0", d, e, 100+400_000)
		}
		if calls := site.tokens(); len(calls) != 0 {
			t.Fatalf("token callback before completion: %v", calls)
		}

		// Completing uses the token up: the site is called with
		// tokens=1:1 and expires it.
		r.ok(ann{user: alice, t: normalT, peer: "-TR4050-alice", up: 100, down: 1_000_000, left: 0, event: bittorrent.Completed})
		r.flush()
		wantUser(t, db, alice, 1000+10+100, 500)
		if d, e := tokenDownloaded(t, db, alice, normalT); d != 100+1_000_000 || e != 1 {
			t.Errorf("alice's used token: Downloaded %d Expired %d, want %d 1", d, e, 100+1_000_000)
		}
		if calls := site.tokens(); !slices.Equal(calls, []string{"/gazelle/tools.php 1:1"}) {
			t.Fatalf("token callbacks %q, want one for 1:1", calls)
		}
		wantSnatches(t, db, normalT, snatch{UID: alice, FID: normalT, Tstamp: unix(0), IP: "10.0.0.1"})
		// The token is gone: a new download of the torrent is charged.
		r.ok(ann{user: alice, t: normalT, peer: "-TR4050-alice2", left: 1_000_000, event: bittorrent.Started})
		r.ok(ann{user: alice, t: normalT, peer: "-TR4050-alice2", down: 1000, left: 999_000})
		// gina's token is expired: charged.
		r.ok(ann{user: gina, t: normalT, peer: "-qB4630-gina", left: 1_000_000, event: bittorrent.Started})
		r.ok(ann{user: gina, t: normalT, peer: "-qB4630-gina", down: 3000, left: 997_000})
		r.flush()
		wantUser(t, db, alice, 1000+10+100, 500+1000)
		wantUser(t, db, gina, 1000, 3000)
		if d, _ := tokenDownloaded(t, db, alice, normalT); d != 100+1_000_000 {
			t.Errorf("alice's used token still counts: Downloaded %d", d)
		}
		if d, _ := tokenDownloaded(t, db, gina, normalT); d != 0 {
			t.Errorf("gina's expired token counted %d bytes", d)
		}
		if calls := site.tokens(); len(calls) != 1 {
			t.Errorf("token callbacks %q, want only the first", calls)
		}
		// A reload sees what the site did.
		snap, err := r.store.Load(context.Background())
		if err != nil {
			t.Fatal(err)
		}
		if len(snap.Tokens) != 0 {
			t.Errorf("tokens after the expiry: %+v", snap.Tokens)
		}
	})
}

// A dual-stack client reports one session over IPv4 and IPv6: credited
// once. A client whose totals go backwards gets a new baseline and no
// credit, and its row shows the new totals.
func TestIntegrationDualStackAndReset(t *testing.T) {
	eachDialect(t, "", func(t *testing.T, db *extDB) {
		r := newRig(t, db, rigOptions{})
		const peer = "-qB4630-gina"
		r.ok(ann{user: gina, t: normalT, peer: peer, left: 1_000_000, event: bittorrent.Started})
		r.clock.add(10 * time.Second)
		r.ok(ann{user: gina, t: normalT, peer: peer, up: 500, down: 3000, left: 997_000})
		r.flush()
		r.ok(ann{user: gina, t: normalT, peer: peer, up: 500, down: 3000, left: 997_000, v6: true})
		r.flush()
		wantUser(t, db, gina, 500, 3000)
		wantTorrent(t, db, normalT, torrentCounters{0, 1, 10, 500 - 3000, -1})
		r.clock.add(10 * time.Second)
		r.ok(ann{user: gina, t: normalT, peer: peer, up: 800, down: 3500, left: 996_500, v6: true})
		r.ok(ann{user: gina, t: normalT, peer: peer, up: 800, down: 3500, left: 996_500})
		r.flush()
		wantUser(t, db, gina, 800, 3500)
		wantTorrent(t, db, normalT, torrentCounters{0, 1, 10, 800 - 3500, -1})
		// One row, with the IPv4 address it was created with.
		if n := db.count(t, "SELECT COUNT(*) FROM xbt_files_users WHERE uid = 7"); n != 1 {
			t.Errorf("%d rows for one dual-stack peer", n)
		}
		wantPeer(t, db, gina, normalT, peer, peerRow{Active: 1, Uploaded: 800, Downloaded: 3500, Remaining: 996_500, TimeSpent: 20, Announced: 5, Mtime: unix(20 * time.Second), IP: "10.0.0.7", UserAgent: "Transmission/4.0.5"})

		// The client restarted its counters without a started event.
		r.clock.add(10 * time.Second)
		r.ok(ann{user: gina, t: normalT, peer: peer, up: 100, down: 0, left: 996_500})
		r.flush()
		wantUser(t, db, gina, 800, 3500)
		wantPeer(t, db, gina, normalT, peer, peerRow{Active: 1, Uploaded: 100, Downloaded: 0, Remaining: 996_500, TimeSpent: 30, Announced: 6, Mtime: unix(30 * time.Second), IP: "10.0.0.7", UserAgent: "Transmission/4.0.5"})
		r.clock.add(10 * time.Second)
		r.ok(ann{user: gina, t: normalT, peer: peer, up: 250, down: 1000, left: 995_500})
		r.flush()
		wantUser(t, db, gina, 950, 4500)
		wantTorrent(t, db, normalT, torrentCounters{0, 1, 10, 500 - 3000 + 300 - 500 + 150 - 1000, -1})
		// Going backwards in one counter only is a reset too.
		r.ok(ann{user: gina, t: normalT, peer: peer, up: 50, down: 2000, left: 994_500})
		r.ok(ann{user: gina, t: normalT, peer: peer, up: 60, down: 2500, left: 994_000})
		r.flush()
		wantUser(t, db, gina, 960, 5000)
	})
}

// A peer that turns seeder or leecher without moving a byte (a client that
// rechecked its data) has its row's remaining follow, which is what Gazelle
// counts seeding by.
func TestIntegrationSeedingStateChanges(t *testing.T) {
	eachDialect(t, "", func(t *testing.T, db *extDB) {
		r := newRig(t, db, rigOptions{})
		const peer = "-qB4630-gina"
		r.ok(ann{user: gina, t: normalT, peer: peer, up: 10, down: 20, left: 1000, event: bittorrent.Started})
		r.flush()
		r.clock.add(time.Minute)
		r.ok(ann{user: gina, t: normalT, peer: peer, up: 10, down: 20, left: 0})
		r.flush()
		wantTorrent(t, db, normalT, torrentCounters{1, 0, 10, 0, unix(time.Minute)})
		wantPeer(t, db, gina, normalT, peer, peerRow{Active: 1, Uploaded: 10, Downloaded: 20, Remaining: 0, TimeSpent: 60, Announced: 2, Mtime: unix(time.Minute), IP: "10.0.0.7", UserAgent: "Transmission/4.0.5"})
		r.clock.add(time.Minute)
		r.ok(ann{user: gina, t: normalT, peer: peer, up: 10, down: 20, left: 300})
		r.flush()
		wantTorrent(t, db, normalT, torrentCounters{0, 1, 10, 0, unix(time.Minute)})
		wantPeer(t, db, gina, normalT, peer, peerRow{Active: 1, Uploaded: 10, Downloaded: 20, Remaining: 300, TimeSpent: 120, Announced: 3, Mtime: unix(2 * time.Minute), IP: "10.0.0.7", UserAgent: "Transmission/4.0.5"})
		wantUser(t, db, gina, 0, 0)
	})
}

// A dual-stack peer whose row was created by its IPv6 announce (the ip
// column holds IPv4 only, so it was written empty) gets its IPv4 address
// from its next IPv4 announce.
func TestIntegrationDualStackIPv6First(t *testing.T) {
	eachDialect(t, "", func(t *testing.T, db *extDB) {
		r := newRig(t, db, rigOptions{})
		const peer = "-qB4630-six"
		r.ok(ann{user: gina, t: normalT, peer: peer, left: 1000, event: bittorrent.Started, v6: true})
		r.flush()
		if ip := db.str(t, "SELECT ip FROM xbt_files_users WHERE uid = 7"); ip != "" {
			t.Fatalf("ip after the IPv6 announce = %q, want empty", ip)
		}
		r.clock.add(10 * time.Second)
		r.ok(ann{user: gina, t: normalT, peer: peer, left: 1000})
		r.flush()
		if ip := db.str(t, "SELECT ip FROM xbt_files_users WHERE uid = 7"); ip != "10.0.0.7" {
			t.Fatalf("ip after the IPv4 announce = %q, want 10.0.0.7", ip)
		}
	})
}
