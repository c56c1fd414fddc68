// Package gazelle is the storage driver for Gazelle, the web application of
// What.CD and Orpheus (OPS), making the tracker a drop-in replacement for
// Ocelot: it reads users, torrents, freeleech tokens and the client
// whitelist from Gazelle's MySQL or MariaDB database, writes the statistics
// back into the tables Gazelle reads, calls the site when a token is used
// up, and serves the update and report calls Gazelle makes to its tracker.
//
// It registers itself as "gazelle". The configuration block is described in
// README.md.
package gazelle

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"time"

	"github.com/go-sql-driver/mysql"

	"github.com/chihaya/chihaya/storage"
)

func init() {
	storage.Register("gazelle", Driver{})
}

// Driver opens Gazelle storages. It is registered as "gazelle".
type Driver struct{}

// Open validates the configuration, connects to the database and checks
// that the tables of the configured dialect are there.
func (Driver) Open(raw json.RawMessage) (storage.Storage, error) {
	c, err := parseConfig(raw)
	if err != nil {
		return nil, err
	}
	return open(c)
}

// Store is an open link to a Gazelle database. It implements
// storage.Storage, storage.Starter and storage.SiteHandler.
type Store struct {
	cfg  config
	db   *sql.DB
	http *http.Client
	log  *slog.Logger
}

var (
	_ storage.Storage     = (*Store)(nil)
	_ storage.Starter     = (*Store)(nil)
	_ storage.SiteHandler = (*Store)(nil)
)

func open(c config) (*Store, error) {
	connector, err := mysql.NewConnector(c.mysql)
	if err != nil {
		return nil, fmt.Errorf("dsn: %w", err)
	}
	s := newStore(c, sql.OpenDB(connector))
	ctx, cancel := context.WithTimeout(context.Background(), c.timeout)
	defer cancel()
	if err := s.db.PingContext(ctx); err != nil {
		s.Close()
		return nil, fmt.Errorf("dsn: cannot connect to %s: %w", c.dsnAddr, err)
	}
	if err := s.checkSchema(ctx); err != nil {
		s.Close()
		return nil, err
	}
	return s, nil
}

func newStore(c config, db *sql.DB) *Store {
	db.SetMaxOpenConns(c.maxOpenConns)
	db.SetMaxIdleConns(c.maxOpenConns)
	// Servers drop idle connections after wait_timeout (8 h by default);
	// recycling well before that avoids a failed first statement after a
	// quiet night.
	db.SetConnMaxIdleTime(5 * time.Minute)
	return &Store{
		cfg: c,
		db:  db,
		// The callback goes to the site's own address; a proxy from
		// the environment would change the source address Gazelle
		// checks against TRACKER_HOST.
		http: &http.Client{
			Timeout:   c.timeout,
			Transport: &http.Transport{Proxy: nil, MaxIdleConnsPerHost: 2, IdleConnTimeout: time.Minute},
		},
		log: slog.Default().With("storage", "gazelle"),
	}
}

// checkSchema reads no rows from every table and column the dialect uses,
// so a wrong dialect or a missing migration fails at start, not at the
// first flush.
func (s *Store) checkSchema(ctx context.Context) error {
	probes := []string{
		"SELECT ID, torrent_pass, can_leech, Visible, IP, Enabled FROM users_main",
		"SELECT ID, info_hash, FreeTorrent FROM torrents",
		"SELECT UserID, TorrentID, Time, Expired, Downloaded FROM users_freeleeches",
		"SELECT peer_id FROM xbt_client_whitelist",
		"SELECT uid, fid, peer_id, active, uploaded, downloaded, upspeed, downspeed, remaining, corrupt, timespent, announced, ip, useragent, mtime FROM xbt_files_users",
		"SELECT uid, fid, tstamp, IP FROM xbt_snatched",
	}
	if s.cfg.dialect == DialectOPS {
		probes = append(probes,
			"SELECT UserID, Uploaded, Downloaded FROM users_leech_stats",
			"SELECT TorrentID, Seeders, Leechers, Snatched, Balance, last_action FROM torrents_leech_stats")
	} else {
		probes = append(probes,
			"SELECT ID, Uploaded, Downloaded FROM users_main",
			"SELECT ID, Seeders, Leechers, Snatched, balance, last_action FROM torrents")
	}
	for _, q := range probes {
		rows, err := s.db.QueryContext(ctx, q+" LIMIT 0")
		if err != nil {
			hint := ""
			if s.cfg.dialect == DialectOPS {
				hint = ` (is this What.CD's schema? then set "dialect": "what")`
			}
			return fmt.Errorf("dialect: %s does not have the %s schema%s: %q: %w", s.cfg.dsnAddr, s.cfg.dialect, hint, q, err)
		}
		rows.Close()
	}
	return nil
}

// Close closes the database connections.
func (s *Store) Close() error {
	s.http.CloseIdleConnections()
	return s.db.Close()
}

// DeletionMessage is the failure reason for an announce of a torrent Gazelle
// deleted with this reason code: "Unregistered torrent" for -1, otherwise
// "Unregistered torrent: <label>" (see DeletionLabel).
func (s *Store) DeletionMessage(reason int) string { return DeletionMessage(reason) }

// permanentErrors are the server errors caused by a row's values or keys,
// which the same rows will hit again however often they are retried.
var permanentErrors = map[uint16]bool{
	1048: true, // column cannot be null
	1062: true, // duplicate entry
	1216: true, // foreign key: no parent row (old code)
	1217: true, // foreign key: row is referenced (old code)
	1264: true, // out of range value
	1265: true, // data truncated
	1292: true, // truncated incorrect value
	1364: true, // field has no default
	1366: true, // incorrect value for the column's type or charset
	1406: true, // data too long
	1451: true, // foreign key: row is referenced
	1452: true, // foreign key: no parent row
	1586: true, // duplicate entry for a named key
	1690: true, // value out of range in an expression
	3819: true, // MySQL: check constraint violated
	4025: true, // MariaDB: check constraint violated
}

// classify wraps err with storage.Permanent when the server refused the
// rows themselves. Lost connections, timeouts, deadlocks and schema errors
// stay plain: the same rows may succeed later, and splitting the batch
// would not help.
func classify(err error) error {
	var me *mysql.MySQLError
	if errors.As(err, &me) && permanentErrors[me.Number] {
		return storage.Permanent(err)
	}
	return err
}

// Ping reports whether the database answers, for readiness checks.
func (s *Store) Ping(ctx context.Context) error { return s.db.PingContext(ctx) }
