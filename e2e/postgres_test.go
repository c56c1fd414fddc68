//go:build linux

package e2e

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
)

// TestTransferPrivatePostgres runs the tracker in private mode with the
// postgres storage driver: `chihaya migrate` creates the default schema in
// a fresh database (and, run again, applies nothing), the users are rows
// of users, and each torrent is registered while the tracker runs, by an
// INSERT whose trigger notifies the tracker — no reload, no site call.
// Each client announces with its user's passkey in the URL; after the
// transfer the test waits for the flusher and checks user_stats, the
// snatch log and the peers.
func TestTransferPrivatePostgres(t *testing.T) {
	pairs := []pair{{seeder: aria2{}, leecher: libtorrent{}, seederScheme: "http", leecherScheme: "http"}}
	requireE2E(t, pairs)
	db := newPostgresDB(t)

	// The storage block, for migrate and for the tracker.
	storageCfg := map[string]any{"driver": "postgres", "config": map[string]any{"dsn": db.dsn}, "flush_interval": "1s"}
	cfgJSON, err := json.Marshal(map[string]any{"storage": storageCfg})
	if err != nil {
		t.Fatal(err)
	}
	cfgPath := filepath.Join(t.TempDir(), "chihaya.json")
	if err := os.WriteFile(cfgPath, cfgJSON, 0o644); err != nil {
		t.Fatal(err)
	}
	bin := trackerBinary(t)
	for _, want := range []string{"applied 0001_schema\napplied 0002_notify\napplied 0003_write_markers\n", "the schema is up to date; nothing to apply\n"} {
		out, err := exec.Command(bin, "migrate", "-config", cfgPath).CombinedOutput()
		if err != nil || string(out) != want {
			t.Fatalf("chihaya migrate: %v, output %q, want %q", err, out, want)
		}
	}

	type run struct{ seeder, leecher pgUser }
	runs := map[string]run{}
	for _, f := range families {
		runs[f.name] = run{db.addUser(t), db.addUser(t)}
	}
	tr := startTracker(t, func(cfg map[string]any, _ int) { cfg["storage"] = storageCfg })

	p := pairs[0]
	for _, f := range families {
		t.Run(f.name+"/"+p.String(), func(t *testing.T) {
			t.Parallel()
			r := runs[f.name]
			seederURL := tr.url(p.seederScheme, f.host, "/"+r.seeder.passkey+"/announce")
			leecherURL := tr.url(p.leecherScheme, f.host, "/"+r.leecher.passkey+"/announce")
			var torrentID int64
			tt := transfer(t, seederURL, leecherURL, p.seeder, p.leecher, func(tt *testTorrent) {
				torrentID = db.addTorrent(t, tt)
				// The INSERT's notification must have reached the
				// tracker before the seeder's first announce.
				pgWaitForRegistration(t, seederURL, tt)
			})
			db.waitForStats(t, r.seeder, r.leecher, torrentID, tt.size)
		})
	}
}

// postgresDB is a throwaway database, dropped when the test ends.
type postgresDB struct {
	pool *pgxpool.Pool
	dsn  string // for the tracker
}

type pgUser struct {
	id      int64
	passkey string
}

// newPostgresDB creates an empty database on CHIHAYA_POSTGRES_DSN's server
// (default: the PostgreSQL of scripts/start-services, postgres with trust
// authentication). Without a server the test fails under CI and is
// skipped elsewhere.
func newPostgresDB(t *testing.T) *postgresDB {
	t.Helper()
	base := os.Getenv("CHIHAYA_POSTGRES_DSN")
	if base == "" {
		base = "postgres://postgres@127.0.0.1:5432/postgres?sslmode=disable"
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	root, err := pgx.Connect(ctx, base)
	if err != nil {
		msg := fmt.Sprintf("PostgreSQL is not answering (%v)", err)
		if os.Getenv("CI") != "" {
			t.Fatal(msg + "; CI must provide it (scripts/start-services)")
		}
		t.Skip(msg + "; run scripts/start-services to start it")
	}
	defer root.Close(context.Background())
	var b [6]byte
	rand.Read(b[:])
	name := "chihaya_e2e_" + hex.EncodeToString(b[:])
	if _, err := root.Exec(ctx, "CREATE DATABASE "+name); err != nil {
		t.Fatal(err)
	}
	u, err := url.Parse(base)
	if err != nil || u.Scheme == "" {
		t.Fatalf("CHIHAYA_POSTGRES_DSN must be a postgres:// URL here, not %q", base)
	}
	u.Path = "/" + name
	d := &postgresDB{dsn: u.String()}
	t.Cleanup(func() {
		if d.pool != nil {
			d.pool.Close()
		}
		root, err := pgx.Connect(context.Background(), base)
		if err != nil {
			t.Errorf("drop database %s: %v", name, err)
			return
		}
		defer root.Close(context.Background())
		if _, err := root.Exec(context.Background(), "DROP DATABASE "+name+" WITH (FORCE)"); err != nil {
			t.Errorf("drop database %s: %v", name, err)
		}
	})
	if d.pool, err = pgxpool.New(ctx, d.dsn); err != nil {
		t.Fatal(err)
	}
	return d
}

// addUser inserts a user with a random passkey.
func (d *postgresDB) addUser(t *testing.T) pgUser {
	t.Helper()
	var b [16]byte
	rand.Read(b[:])
	u := pgUser{passkey: hex.EncodeToString(b[:])}
	if err := d.pool.QueryRow(context.Background(), "INSERT INTO users (passkey) VALUES ($1) RETURNING id", u.passkey).Scan(&u.id); err != nil {
		t.Fatal(err)
	}
	return u
}

// addTorrent registers tt the way a site would: one INSERT.
func (d *postgresDB) addTorrent(t *testing.T, tt *testTorrent) int64 {
	t.Helper()
	var id int64
	if err := d.pool.QueryRow(context.Background(), "INSERT INTO torrents (info_hash) VALUES ($1) RETURNING id", tt.infoHash[:]).Scan(&id); err != nil {
		t.Fatal(err)
	}
	return id
}

// pgWaitForRegistration polls the tracker's scrape with the announce URL's
// passkey until the torrent is listed: a private tracker leaves
// unregistered torrents out of a scrape.
func pgWaitForRegistration(t *testing.T, announceURL string, tt *testTorrent) {
	t.Helper()
	scrapeURL, ok := scrapeURLFor(announceURL)
	if !ok {
		t.Fatalf("no scrape URL for %s", announceURL)
	}
	scrapeURL += sep(scrapeURL) + "info_hash=" + escapeBytes(tt.infoHash[:])
	begin := time.Now()
	for {
		_, err := scrapeSeeders(scrapeURL, tt.infoHash)
		if err == nil {
			t.Logf("the tracker knew the torrent %v after its INSERT", time.Since(begin).Round(time.Millisecond))
			return
		}
		if time.Since(begin) > 5*time.Second {
			t.Fatalf("the tracker did not learn of the inserted torrent within 5s: %v", err)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// pgStats is what the database shows for one transfer.
type pgStats struct {
	seederUp, seederDown, leecherUp, leecherDown int64
	snatches                                     string // user ids of the torrent's snatch rows
	peers                                        string // user id:remaining of its peer rows
}

func (d *postgresDB) stats(seeder, leecher pgUser, torrentID int64) (pgStats, error) {
	ctx := context.Background()
	var s pgStats
	q := "SELECT coalesce((SELECT uploaded FROM user_stats WHERE user_id = $1), -1), coalesce((SELECT downloaded FROM user_stats WHERE user_id = $1), -1)"
	if err := d.pool.QueryRow(ctx, q, seeder.id).Scan(&s.seederUp, &s.seederDown); err != nil {
		return s, err
	}
	if err := d.pool.QueryRow(ctx, q, leecher.id).Scan(&s.leecherUp, &s.leecherDown); err != nil {
		return s, err
	}
	if err := d.pool.QueryRow(ctx, "SELECT coalesce(string_agg(user_id::text, ',' ORDER BY id), '') FROM snatches WHERE torrent_id = $1", torrentID).Scan(&s.snatches); err != nil {
		return s, err
	}
	err := d.pool.QueryRow(ctx, "SELECT coalesce(string_agg(user_id || ':' || remaining, ',' ORDER BY user_id), '') FROM peers WHERE torrent_id = $1", torrentID).Scan(&s.peers)
	return s, err
}

// waitForStats polls until the database shows the transfer: the payload
// credited once as the seeder's upload (reported at its next regular
// announce, every 5 s here) and the leecher's download, and one snatch by
// the leecher (libtorrent announces "completed"). A credit is at least the
// payload's size and less than twice it: clients report payload bytes,
// which a block received twice can push a little over.
func (d *postgresDB) waitForStats(t *testing.T, seeder, leecher pgUser, torrentID, size int64) {
	t.Helper()
	inRange := func(n int64) bool { return n >= size && n < 2*size }
	want := func(s pgStats) []string {
		var p []string
		if !inRange(s.seederUp) || s.seederDown != 0 {
			p = append(p, fmt.Sprintf("seeder up/down %d/%d, want %d/0", s.seederUp, s.seederDown, size))
		}
		if !inRange(s.leecherDown) || s.leecherUp > 0 {
			p = append(p, fmt.Sprintf("leecher up/down %d/%d, want 0/%d", s.leecherUp, s.leecherDown, size))
		}
		if s.snatches != fmt.Sprint(leecher.id) {
			p = append(p, fmt.Sprintf("snatch rows by user %q, want one by the leecher (%d)", s.snatches, leecher.id))
		}
		if !strings.Contains(s.peers, fmt.Sprintf("%d:0", seeder.id)) || !strings.Contains(s.peers, fmt.Sprintf("%d:0", leecher.id)) {
			p = append(p, fmt.Sprintf("peer rows (user:remaining) %q, want both users with nothing left", s.peers))
		}
		return p
	}
	begin := time.Now()
	for {
		s, err := d.stats(seeder, leecher, torrentID)
		if err != nil {
			t.Fatal(err)
		}
		p := want(s)
		if len(p) == 0 {
			t.Logf("statistics in the database %v after the transfer: %+v", time.Since(begin).Round(time.Millisecond), s)
			return
		}
		if time.Since(begin) > 20*time.Second {
			t.Fatalf("statistics not as expected after 20s:\n%s", strings.Join(p, "\n"))
		}
		time.Sleep(250 * time.Millisecond)
	}
}
