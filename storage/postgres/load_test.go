package postgres

import (
	"context"
	"slices"
	"strings"
	"testing"

	"github.com/chihaya/chihaya/bittorrent"
	"github.com/chihaya/chihaya/storage"
)

var ctx = context.Background()

func hash(b byte) bittorrent.InfoHash {
	var h bittorrent.InfoHash
	for i := range h {
		h[i] = b
	}
	return h
}

func TestLoad(t *testing.T) {
	RequirePostgres(t)
	db := NewTestDB(t, BaseDSN(), true, true)
	db.Exec(t, "INSERT INTO client_whitelist (prefix) VALUES ('-TR'), ('-qB4')")
	s := db.Open(t, nil)
	snap, err := s.Load(ctx)
	if err != nil {
		t.Fatal(err)
	}
	wantUsers := []storage.User{
		{ID: 1, Passkey: "alice000000000000000000000000000", CanLeech: true},
		{ID: 2, Passkey: "bob00000000000000000000000000000", CanLeech: true},
		{ID: 3, Passkey: "noleech0000000000000000000000000"},
		{ID: 4, Passkey: "protected00000000000000000000000", CanLeech: true, Protected: true},
	}
	slices.SortFunc(snap.Users, func(a, b storage.User) int { return int(a.ID) - int(b.ID) })
	if !slices.Equal(snap.Users, wantUsers) {
		t.Errorf("users (the disabled one left out):\n got %+v\nwant %+v", snap.Users, wantUsers)
	}
	slices.SortFunc(snap.Torrents, func(a, b storage.Torrent) int { return int(a.ID) - int(b.ID) })
	wantTorrents := []storage.Torrent{
		{ID: 1, InfoHash: hash(1), UpMultiplier: 1, DownMultiplier: 1, Snatches: 10},
		{ID: 2, InfoHash: hash(2), Leech: storage.Free, UpMultiplier: 1, DownMultiplier: 1},
		{ID: 3, InfoHash: hash(3), Leech: storage.Neutral, UpMultiplier: 1, DownMultiplier: 1, Snatches: 30},
		// The 32-byte v2 hash is cut to the 20 bytes clients announce.
		{ID: 4, InfoHash: hash(4), InfoHashV2: hash(5), UpMultiplier: 1, DownMultiplier: 1},
		{ID: 5, InfoHash: hash(6), UpMultiplier: 2, DownMultiplier: 0.5},
	}
	if !slices.Equal(snap.Torrents, wantTorrents) {
		t.Errorf("torrents:\n got %+v\nwant %+v", snap.Torrents, wantTorrents)
	}
	if !slices.Equal(snap.Tokens, []storage.Token{{UserID: 2, TorrentID: 1}}) {
		t.Errorf("tokens (the expired one left out): %+v", snap.Tokens)
	}
	slices.Sort(snap.Whitelist)
	if !slices.Equal(snap.Whitelist, []string{"-TR", "-qB4"}) {
		t.Errorf("whitelist %q", snap.Whitelist)
	}
}

func TestLoadEmptyDatabase(t *testing.T) {
	RequirePostgres(t)
	db := NewTestDB(t, BaseDSN(), true, false)
	snap, err := db.Open(t, nil).Load(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if len(snap.Users)+len(snap.Torrents)+len(snap.Tokens)+len(snap.Whitelist) != 0 {
		t.Errorf("snapshot of an empty database: %+v", snap)
	}
}

// Custom reads may return their columns in any order, with other integer
// and boolean types, text hashes, and leave optional columns out; rows
// that cannot be used are skipped.
func TestLoadCustomColumns(t *testing.T) {
	RequirePostgres(t)
	db := NewTestDB(t, BaseDSN(), false, false)
	db.Exec(t, `CREATE TABLE members (uid bigint, key varchar(32), flags smallint);
		INSERT INTO members VALUES (7, 'k7', 1), (8, NULL, 0), (9, '', 0), (5000000000, 'huge', 0), (10, 'k10', 0);
		CREATE TABLE files (fid int, hex text, free int, up numeric, v2 bytea);
		INSERT INTO files VALUES (1, repeat('ab', 20), 1, 1.5, NULL), (2, 'zz', 0, 1, NULL), (3, repeat('cd', 20), 2, NULL, decode(repeat('ef', 20), 'hex')),
			(4, repeat('00', 20), 0, 1, NULL)`)
	none := "SELECT 1 AS user_id, 1 AS torrent_id WHERE false"
	s := db.Open(t, map[string]any{"queries": map[string]string{
		"start":          "",
		"load_users":     "SELECT key AS passkey, flags AS can_leech, uid AS id FROM members",
		"load_user":      "SELECT key AS passkey, uid AS id FROM members WHERE uid = @id",
		"load_torrents":  "SELECT fid AS id, hex AS info_hash, free AS leech, up AS up_multiplier, v2 AS info_hash_v2 FROM files",
		"load_torrent":   "SELECT fid AS id, hex AS info_hash FROM files WHERE fid = @id",
		"load_tokens":    none,
		"load_token":     none + " AND @user_id::int = @torrent_id::int",
		"load_whitelist": "",
		"write_users":    "", "write_torrents": "", "write_peers": "", "write_peers_light": "",
		"write_snatches": "", "write_tokens": "", "expire_tokens": "",
	}})
	snap, err := s.Load(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if want := []storage.User{{ID: 7, Passkey: "k7", CanLeech: true}, {ID: 10, Passkey: "k10"}}; !slices.Equal(snap.Users, want) {
		t.Errorf("users %+v, want %+v", snap.Users, want)
	}
	want := []storage.Torrent{
		{ID: 1, InfoHash: hash(0xab), Leech: storage.Free, UpMultiplier: 1.5, DownMultiplier: 1},
		{ID: 3, InfoHash: hash(0xcd), InfoHashV2: hash(0xef), Leech: storage.Neutral, UpMultiplier: 1, DownMultiplier: 1},
	}
	if !slices.Equal(snap.Torrents, want) {
		t.Errorf("torrents %+v, want %+v", snap.Torrents, want)
	}
	if err := s.Start(ctx); err != nil {
		t.Errorf("Start with every statement custom and no default schema: %v", err)
	}
}

func TestStart(t *testing.T) {
	RequirePostgres(t)
	db := NewTestDB(t, BaseDSN(), true, true)
	db.Exec(t, `INSERT INTO peers (torrent_id, user_id, peer_id, port, uploaded, downloaded, remaining, corrupt, up_speed, down_speed, time_spent, announces, active, user_agent, updated_at)
		VALUES (1, 1, 'x', 1, 0, 0, 0, 0, 0, 0, 0, 1, true, '', now());
		UPDATE torrent_stats SET seeders = 3, leechers = 4`)
	if err := db.Open(t, map[string]any{"readonly": true}).Start(ctx); err != nil {
		t.Fatal(err)
	}
	if n := db.Int(t, "SELECT count(*) FROM peers"); n != 1 {
		t.Fatal("readonly Start emptied peers")
	}
	if err := db.Open(t, nil).Start(ctx); err != nil {
		t.Fatal(err)
	}
	if n := db.Int(t, "SELECT count(*) FROM peers"); n != 0 {
		t.Errorf("%d peers left after Start", n)
	}
	if v := db.Ints(t, "SELECT sum(seeders), sum(leechers), sum(snatches) FROM torrent_stats"); v[0] != 0 || v[1] != 0 || v[2] != 40 {
		t.Errorf("after Start: seeders, leechers, snatches %v, want 0, 0 and the snatches kept", v)
	}
}

func TestStartChecksStatements(t *testing.T) {
	RequirePostgres(t)
	empty := NewTestDB(t, BaseDSN(), false, false)
	err := empty.Open(t, nil).Start(ctx)
	if err == nil || !strings.Contains(err.Error(), "chihaya migrate") || !strings.Contains(err.Error(), "0001_schema") {
		t.Errorf("Start on an empty database: %v, want a hint to migrate", err)
	}

	db := NewTestDB(t, BaseDSN(), true, false)
	for query, want := range map[string]string{
		"UPDATE user_stats SET uploaded = uploaded + @uploaded WHERE user_id = @user_id":  "",
		"UPDATE user_stats SET uploaded = uploaded + @uploaded WHERE user_idd = @user_id": `queries.write_users: ERROR: column "user_idd" does not exist`,
		"UPDATE user_stats SET uploaded = uploaded WHERE user_id::text = @user_id":        "queries.write_users: @user_id is text, want an integer (add a cast such as @user_id::bigint)",
		"UPDATE user_stats SET uploaded = @uploaded WHERE @user_id IS NULL":               "$1 is @uploaded, $2 is @user_id",
	} {
		err := db.Open(t, map[string]any{"queries": map[string]string{"write_users": query}}).Start(ctx)
		if want == "" && err != nil || want != "" && (err == nil || !strings.Contains(err.Error(), want)) {
			t.Errorf("%s: %v, want %q", query, err, want)
		}
	}
	const where = " FROM tokens WHERE user_id = @user_id AND torrent_id = @torrent_id"
	for query, want := range map[string]string{
		"SELECT user_id, torrent_id, expired" + where: `result column "expired" is not one the driver reads`,
		"SELECT user_id, 'x' AS torrent_id" + where:   `result column "torrent_id" is text, want an integer`,
		"SELECT user_id" + where:                      `result column "torrent_id" is missing`,
	} {
		err := db.Open(t, map[string]any{"queries": map[string]string{"load_token": query, "load_tokens": "SELECT user_id, torrent_id FROM tokens"}}).Start(ctx)
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("%s: %v, want %q", query, err, want)
		}
	}
}
