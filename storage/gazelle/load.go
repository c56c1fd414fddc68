package gazelle

import (
	"context"
	"database/sql"
	"fmt"
	"math"

	"github.com/chihaya/chihaya/bittorrent"
	"github.com/chihaya/chihaya/storage"
)

// Queries of Load. Protected users are those Gazelle hides (Visible='0')
// and, by site convention, those whose IP is 127.0.0.1 (staff and bots).
const (
	loadUsers = "SELECT ID, torrent_pass, can_leech, (Visible = '0' OR IP = '127.0.0.1') FROM users_main WHERE Enabled = '1'"
	// The ops dialect keeps the snatch count in torrents_leech_stats; a
	// torrent without a row there is not loaded, as in Ocelot.
	loadTorrentsOPS  = "SELECT t.ID, t.info_hash, t.FreeTorrent, tls.Snatched FROM torrents t JOIN torrents_leech_stats tls ON tls.TorrentID = t.ID"
	loadTorrentsWhat = "SELECT ID, info_hash, FreeTorrent, Snatched FROM torrents"
	// The join drops tokens of deleted torrents.
	loadTokens    = "SELECT uf.UserID, uf.TorrentID FROM users_freeleeches uf JOIN torrents t ON t.ID = uf.TorrentID WHERE uf.Expired = 0"
	loadWhitelist = "SELECT peer_id FROM xbt_client_whitelist WHERE peer_id IS NOT NULL"
)

// Load reads every enabled user, every torrent with a valid info hash, the
// unexpired tokens and the client whitelist. The four queries run in one
// read-only transaction, so they see one consistent state of the database.
// Rows are streamed, never held by the driver, so a million users cost one
// pass over the result.
func (s *Store) Load(ctx context.Context) (*storage.Snapshot, error) {
	ctx, cancel := context.WithTimeout(ctx, s.cfg.loadTimeout)
	defer cancel()
	tx, err := s.db.BeginTx(ctx, &sql.TxOptions{Isolation: sql.LevelRepeatableRead, ReadOnly: true})
	if err != nil {
		return nil, fmt.Errorf("gazelle: load: %w", err)
	}
	// Read-only: nothing to commit, and rolling back also ends the
	// transaction when a query failed.
	defer tx.Rollback()

	snap := &storage.Snapshot{}
	if snap.Users, err = s.loadUsers(ctx, tx); err != nil {
		return nil, fmt.Errorf("gazelle: load users: %w", err)
	}
	if snap.Torrents, err = s.loadTorrents(ctx, tx); err != nil {
		return nil, fmt.Errorf("gazelle: load torrents: %w", err)
	}
	if snap.Tokens, err = loadTokenRows(ctx, tx); err != nil {
		return nil, fmt.Errorf("gazelle: load tokens: %w", err)
	}
	if snap.Whitelist, err = loadWhitelistRows(ctx, tx); err != nil {
		return nil, fmt.Errorf("gazelle: load whitelist: %w", err)
	}
	return snap, nil
}

func (s *Store) loadUsers(ctx context.Context, tx *sql.Tx) ([]storage.User, error) {
	rows, err := tx.QueryContext(ctx, loadUsers)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var (
		users     []storage.User
		id        int64
		passkey   sql.RawBytes
		canLeech  int64
		protected sql.NullInt64
		skipped   int
	)
	for rows.Next() {
		if err := rows.Scan(&id, &passkey, &canLeech, &protected); err != nil {
			return nil, err
		}
		// A user without a passkey cannot announce; an id outside
		// uint32 cannot be written back.
		if len(passkey) == 0 || id <= 0 || id > math.MaxUint32 {
			skipped++
			continue
		}
		users = append(users, storage.User{
			ID:        uint32(id),
			Passkey:   string(passkey),
			CanLeech:  canLeech != 0,
			Protected: protected.Int64 != 0,
		})
	}
	if skipped > 0 {
		s.log.Warn("users skipped: empty passkey or id out of range", "count", skipped)
	}
	return users, rows.Err()
}

func (s *Store) loadTorrents(ctx context.Context, tx *sql.Tx) ([]storage.Torrent, error) {
	q := loadTorrentsOPS
	if s.cfg.dialect == DialectWhat {
		q = loadTorrentsWhat
	}
	rows, err := tx.QueryContext(ctx, q)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var (
		torrents []storage.Torrent
		id       int64
		hash     sql.RawBytes
		free     sql.RawBytes
		snatched int64
		skipped  int
	)
	for rows.Next() {
		if err := rows.Scan(&id, &hash, &free, &snatched); err != nil {
			return nil, err
		}
		t := storage.Torrent{
			Leech:          leechState(string(free)),
			UpMultiplier:   1,
			DownMultiplier: 1,
		}
		// Ocelot skips empty hashes; binary(20) stores an empty hash
		// as 20 zero bytes, which no torrent has either.
		if len(hash) != len(t.InfoHash) || id <= 0 || id > math.MaxUint32 {
			if len(hash) != 0 {
				skipped++
			}
			continue
		}
		copy(t.InfoHash[:], hash)
		if t.InfoHash == (bittorrent.InfoHash{}) {
			continue
		}
		t.ID = uint32(id)
		t.Snatches = uint32(min(max(snatched, 0), math.MaxUint32))
		torrents = append(torrents, t)
	}
	if skipped > 0 {
		s.log.Warn("torrents skipped: info_hash is not 20 bytes or id out of range", "count", skipped)
	}
	return torrents, rows.Err()
}

// leechState maps torrents.FreeTorrent: '1' freeleech, '2' neutral leech,
// anything else normal.
func leechState(free string) storage.Leech {
	switch free {
	case "1":
		return storage.Free
	case "2":
		return storage.Neutral
	}
	return storage.Normal
}

func loadTokenRows(ctx context.Context, tx *sql.Tx) ([]storage.Token, error) {
	rows, err := tx.QueryContext(ctx, loadTokens)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var (
		tokens       []storage.Token
		user, torrnt int64
	)
	for rows.Next() {
		if err := rows.Scan(&user, &torrnt); err != nil {
			return nil, err
		}
		if user <= 0 || user > math.MaxUint32 || torrnt <= 0 || torrnt > math.MaxUint32 {
			continue
		}
		tokens = append(tokens, storage.Token{UserID: uint32(user), TorrentID: uint32(torrnt)})
	}
	return tokens, rows.Err()
}

func loadWhitelistRows(ctx context.Context, tx *sql.Tx) ([]string, error) {
	rows, err := tx.QueryContext(ctx, loadWhitelist)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var (
		list   []string
		prefix sql.RawBytes
	)
	for rows.Next() {
		if err := rows.Scan(&prefix); err != nil {
			return nil, err
		}
		list = append(list, string(prefix))
	}
	return list, rows.Err()
}

// Start clears what the previous tracker run left: the peer table and the
// live seeder and leecher counts, which the tracker rebuilds from
// announces. Nothing is touched in readonly mode.
func (s *Store) Start(ctx context.Context) error {
	if s.cfg.readonly {
		return nil
	}
	counters := "UPDATE torrents_leech_stats SET Seeders = 0, Leechers = 0 WHERE Seeders <> 0 OR Leechers <> 0"
	if s.cfg.dialect == DialectWhat {
		counters = "UPDATE torrents SET Seeders = 0, Leechers = 0 WHERE Seeders <> 0 OR Leechers <> 0"
	}
	for _, q := range []string{"TRUNCATE TABLE xbt_files_users", counters} {
		if err := s.execOne(ctx, q); err != nil {
			return fmt.Errorf("gazelle: start: %w", err)
		}
	}
	return nil
}
