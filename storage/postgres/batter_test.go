package postgres_test

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/chihaya/chihaya/bittorrent"
	"github.com/chihaya/chihaya/storage/postgres"
)

// The custom-SQL mode against a batter-shaped schema (testdata/batter.sql,
// with every statement from testdata/batter.json, the worked example of
// README.md): the site's own tables, nothing of the default schema.
func TestCustomSchemaBatter(t *testing.T) {
	t.Parallel()
	postgres.RequirePostgres(t)
	db := postgres.NewTestDB(t, postgres.BaseDSN(), false, false)
	schema, err := os.ReadFile(filepath.Join("testdata", "batter.sql"))
	if err != nil {
		t.Fatal(err)
	}
	db.Exec(t, string(schema))
	raw, err := os.ReadFile(filepath.Join("testdata", "batter.json"))
	if err != nil {
		t.Fatal(err)
	}
	var queries map[string]string
	if err := json.Unmarshal(raw, &queries); err != nil {
		t.Fatal(err)
	}
	const (
		ann1 = "0123456789abcdef0123456789abcdef" // trackerids are UUID4 hex
		ann2 = "fedcba9876543210fedcba9876543210"
		ann3 = "00000000000000000000000000000003"
	)
	t1, t2 := hash(0xa1), hash(0xa2)
	db.Exec(t, fmt.Sprintf(`
		INSERT INTO auth_user (id, username, is_active) VALUES (1, 'ann', true), (2, 'ben', true), (3, 'cat', false), (4, 'dan', true);
		INSERT INTO profiles_profile (user_id, trackerid) VALUES (1, '%s'), (2, '%s'), (3, '%s'), (4, NULL);
		INSERT INTO torrents_torrent (id, name, pieces, info_hash) VALUES
			(1, 'Album', 'aa', decode('%s', 'hex')), (2, 'No hash yet', 'bb', NULL);
		SELECT setval('auth_user_id_seq', 10); SELECT setval('torrents_torrent_id_seq', 10)`,
		ann1, ann2, ann3, hexHash(t1)))

	e := newEnv(t, db, map[string]any{"queries": queries})
	if _, ok := e.policy.User(ann3); ok {
		t.Error("an inactive user was loaded")
	}
	if _, ok := e.policy.Torrent(t1); !ok {
		t.Fatal("the torrent with an info_hash was not loaded")
	}
	e.watch()

	e.ok(ann{passkey: ann1, hash: t1, peer: 1, left: 0, event: bittorrent.Started})
	e.ok(ann{passkey: ann2, hash: t1, peer: 2, left: 1000, event: bittorrent.Started})
	e.ok(ann{passkey: ann1, hash: t1, peer: 1, up: 1000, left: 0})
	e.ok(ann{passkey: ann2, hash: t1, peer: 2, down: 1000, left: 0, event: bittorrent.Completed})
	e.ok(ann{passkey: ann2, hash: t1, peer: 2, down: 1000, left: 0})
	e.flush()
	if v := e.db.Ints(t, "SELECT uploaded, downloaded FROM tracker_user_stats WHERE user_id = 1"); v[0] != 1000 || v[1] != 0 {
		t.Errorf("ann's totals %v, want 1000/0", v)
	}
	if v := e.db.Ints(t, "SELECT uploaded, downloaded FROM tracker_user_stats WHERE user_id = 2"); v[0] != 0 || v[1] != 1000 {
		t.Errorf("ben's totals %v, want 0/1000", v)
	}
	if v := e.db.Ints(t, "SELECT seeders, leechers, snatches, (last_action IS NOT NULL)::int FROM tracker_torrent_stats WHERE torrent_id = 1"); v[0] != 2 || v[1] != 0 || v[2] != 1 || v[3] != 1 {
		t.Errorf("torrent stats %v, want 2 seeders, 0 leechers, 1 snatch, last_action set", v)
	}
	if v := e.db.Ints(t, "SELECT count(*), sum(announces), min((last_seen >= first_seen)::int) FROM tracker_peer"); v[0] != 2 || v[1] != 5 || v[2] != 1 {
		t.Errorf("peers: %v, want 2 rows, 5 announces, first_seen <= last_seen", v)
	}
	if n := e.db.Int(t, "SELECT count(*) FROM tracker_snatch WHERE user_id = 2 AND torrent_id = 1 AND ip = '10.0.0.2'"); n != 1 {
		t.Errorf("%d snatches of ben", n)
	}

	// The site's own triggers: a torrent gets its hash, a user gets a
	// trackerid, and both are usable without a reload.
	db.Exec(t, fmt.Sprintf("UPDATE torrents_torrent SET info_hash = decode('%s', 'hex') WHERE id = 2", hexHash(t2)))
	db.Exec(t, "UPDATE profiles_profile SET trackerid = 'dddddddddddddddddddddddddddddddd' WHERE user_id = 4")
	eventually(t, 2*time.Second, "the new hash and trackerid", func() error {
		return e.announce(ann{passkey: "dddddddddddddddddddddddddddddddd", hash: t2, peer: 4, left: 5, event: bittorrent.Started})
	})
	db.Exec(t, "UPDATE auth_user SET is_active = false WHERE id = 1")
	eventually(t, 2*time.Second, "deactivation", func() error {
		if _, ok := e.policy.User(ann1); ok {
			return errors.New("ann still known")
		}
		return nil
	})
}
