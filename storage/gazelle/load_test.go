package gazelle

import (
	"context"
	"slices"
	"strings"
	"testing"

	"github.com/chihaya/chihaya/bittorrent"
	"github.com/chihaya/chihaya/storage"
)

func hashOf(b byte) bittorrent.InfoHash {
	var h bittorrent.InfoHash
	for i := range h {
		h[i] = b
	}
	return h
}

func TestLoad(t *testing.T) {
	dialects(t, func(t *testing.T, dialect string) {
		db := newTestDB(t, dialect, true)
		s := db.open(t, nil)
		snap, err := s.Load(context.Background())
		if err != nil {
			t.Fatal(err)
		}

		slices.SortFunc(snap.Users, func(a, b storage.User) int { return int(a.ID) - int(b.ID) })
		wantUsers := []storage.User{
			{ID: 1, Passkey: "alicealicealicealicealicealice01", CanLeech: true},
			{ID: 3, Passkey: "carolcarolcarolcarolcarolcarol03", CanLeech: false},
			{ID: 4, Passkey: "davedavedavedavedavedavedaveda04", CanLeech: true, Protected: true},
			{ID: 5, Passkey: "erinerinerinerinerinerinerinei05", CanLeech: true, Protected: true},
		}
		if !slices.Equal(snap.Users, wantUsers) {
			t.Errorf("users:\n got %+v\nwant %+v", snap.Users, wantUsers)
		}

		slices.SortFunc(snap.Torrents, func(a, b storage.Torrent) int { return int(a.ID) - int(b.ID) })
		wantTorrents := []storage.Torrent{
			{ID: 1, InfoHash: hashOf(1), Leech: storage.Normal, UpMultiplier: 1, DownMultiplier: 1, Snatches: 10},
			{ID: 2, InfoHash: hashOf(2), Leech: storage.Free, UpMultiplier: 1, DownMultiplier: 1, Snatches: 20},
			{ID: 3, InfoHash: hashOf(3), Leech: storage.Neutral, UpMultiplier: 1, DownMultiplier: 1, Snatches: 30},
		}
		if dialect == DialectWhat {
			// Torrent 5 has no leech-stats row, which only the ops
			// dialect needs.
			wantTorrents = append(wantTorrents, storage.Torrent{ID: 5, InfoHash: hashOf(5), UpMultiplier: 1, DownMultiplier: 1, Snatches: 50})
		}
		if !slices.Equal(snap.Torrents, wantTorrents) {
			t.Errorf("torrents:\n got %+v\nwant %+v", snap.Torrents, wantTorrents)
		}

		if want := []storage.Token{{UserID: 1, TorrentID: 1}}; !slices.Equal(snap.Tokens, want) {
			t.Errorf("tokens: got %+v, want %+v", snap.Tokens, want)
		}
		slices.Sort(snap.Whitelist)
		if want := []string{"-TR", "-qB"}; !slices.Equal(snap.Whitelist, want) {
			t.Errorf("whitelist: got %q, want %q", snap.Whitelist, want)
		}
	})
}

func TestLoadEmptyDatabase(t *testing.T) {
	dialects(t, func(t *testing.T, dialect string) {
		db := newTestDB(t, dialect, false)
		snap, err := db.open(t, nil).Load(context.Background())
		if err != nil {
			t.Fatal(err)
		}
		if len(snap.Users)+len(snap.Torrents)+len(snap.Tokens)+len(snap.Whitelist) != 0 {
			t.Errorf("empty database loaded %+v", snap)
		}
	})
}

func TestLeechState(t *testing.T) {
	for in, want := range map[string]storage.Leech{"0": storage.Normal, "1": storage.Free, "2": storage.Neutral, "": storage.Normal, "3": storage.Normal} {
		if got := leechState(in); got != want {
			t.Errorf("leechState(%q) = %v, want %v", in, got, want)
		}
	}
}

func TestStart(t *testing.T) {
	dialects(t, func(t *testing.T, dialect string) {
		table, _, _ := torrentStats(dialect)
		db := newTestDB(t, dialect, true)

		// Readonly leaves everything as it was.
		if err := db.open(t, map[string]any{"readonly": true}).Start(context.Background()); err != nil {
			t.Fatal(err)
		}
		if n := db.count(t, "SELECT COUNT(*) FROM xbt_files_users"); n != 1 {
			t.Errorf("readonly start: %d peers left, want the 1 there was", n)
		}
		if n := db.count(t, "SELECT SUM(Seeders + Leechers) FROM "+table); n != 14 {
			t.Errorf("readonly start: seeders+leechers = %d, want 14", n)
		}

		if err := db.open(t, nil).Start(context.Background()); err != nil {
			t.Fatal(err)
		}
		if n := db.count(t, "SELECT COUNT(*) FROM xbt_files_users"); n != 0 {
			t.Errorf("start left %d peers", n)
		}
		if n := db.count(t, "SELECT SUM(Seeders + Leechers) FROM "+table); n != 0 {
			t.Errorf("start left seeders+leechers = %d", n)
		}
		if n := db.count(t, "SELECT SUM(Snatched) FROM "+table); n < 60 {
			t.Errorf("start changed the snatch counts: sum %d", n)
		}
	})
}

func TestOpenChecksDialect(t *testing.T) {
	db := newTestDB(t, DialectWhat, false)
	_, err := Driver{}.Open([]byte(`{"dsn": "` + db.dsn + `", "dialect": "ops"}`))
	if err == nil || !strings.Contains(err.Error(), "dialect") || !strings.Contains(err.Error(), `"dialect": "what"`) {
		t.Fatalf("opening a What schema as ops: %v, want an error naming the dialect", err)
	}
}

// BenchmarkLoad loads a million users and torrents, the size of a large
// Gazelle site. Run with -bench Load -benchtime 1x.
func BenchmarkLoad(b *testing.B) {
	db := newTestDB(b, DialectOPS, false)
	db.exec(b, `INSERT INTO users_main (ID, Username, Email, torrent_pass, Enabled)
		SELECT seq, CONCAT('u', seq), '', LPAD(seq, 32, 'k'), '1' FROM seq_1_to_1000000`)
	db.exec(b, `INSERT INTO torrents (ID, GroupID, info_hash, Size)
		SELECT seq, seq, UNHEX(SHA1(seq)), 1 FROM seq_1_to_1000000`)
	db.exec(b, `INSERT INTO torrents_leech_stats (TorrentID) SELECT seq FROM seq_1_to_1000000`)
	s := db.open(b, nil)
	b.ResetTimer()
	for b.Loop() {
		snap, err := s.Load(context.Background())
		if err != nil {
			b.Fatal(err)
		}
		if len(snap.Users) != 1000000 || len(snap.Torrents) != 1000000 {
			b.Fatalf("loaded %d users, %d torrents", len(snap.Users), len(snap.Torrents))
		}
	}
}
