// Package postgres is the storage driver for web applications on
// PostgreSQL. It ships a default schema as versioned migrations (applied by
// `chihaya migrate`), lets the operator replace every statement it runs
// with SQL of their own to fit an existing schema, writes the tracker's
// statistics in bulk, and learns of changes to users, torrents, tokens and
// the client whitelist through LISTEN/NOTIFY, without reloads.
//
// It registers itself as "postgres". The configuration block is described
// in README.md.
package postgres

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"sync"
	"sync/atomic"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/chihaya/chihaya/storage"
)

func init() {
	storage.Register("postgres", Driver{})
}

// Driver opens PostgreSQL storages. It is registered as "postgres".
type Driver struct{}

// Open validates the configuration and connects. It does not look at the
// schema, so that `chihaya migrate` can open an empty database; Start
// checks every statement against it.
func (Driver) Open(raw json.RawMessage) (storage.Storage, error) {
	c, err := parseConfig(raw)
	if err != nil {
		return nil, err
	}
	return open(c)
}

// Migrator is implemented by storages that can create or update the
// schema they expect; `chihaya migrate` calls it. Migrate applies what is
// missing and returns the names of the migrations it applied, none when
// the schema is current.
type Migrator interface {
	Migrate(ctx context.Context) (applied []string, err error)
}

// Store is an open link to a PostgreSQL database. It implements
// storage.Storage, storage.Starter, storage.Watcher and Migrator.
type Store struct {
	cfg  config
	pool *pgxpool.Pool
	log  *slog.Logger

	// done is closed by Close, which stops Watch.
	done      chan struct{}
	closeOnce sync.Once

	// early is the LISTEN connection Start opens before the first Load,
	// for Watch to take over, so that no change between that Load and
	// Watch's start goes unseen.
	mu    sync.Mutex
	early *pgx.Conn

	// markers is whether the database has the write_markers table:
	// markersUnknown until a write asks.
	markers atomic.Int32
}

var (
	_ storage.Storage = (*Store)(nil)
	_ storage.Starter = (*Store)(nil)
	_ storage.Watcher = (*Store)(nil)
	_ Migrator        = (*Store)(nil)
)

func open(c config) (*Store, error) {
	pc := c.pool
	pc.MaxConns = c.maxConns
	// Servers and middleboxes drop idle connections; recycling them well
	// before that avoids a failed first statement after a quiet night.
	pc.MaxConnIdleTime = 5 * time.Minute
	setConnDefaults(pc.ConnConfig)
	pool, err := pgxpool.NewWithConfig(context.Background(), pc)
	if err != nil {
		return nil, fmt.Errorf("dsn: %w", err)
	}
	s := &Store{cfg: c, pool: pool, log: slog.Default().With("storage", "postgres"), done: make(chan struct{})}
	ctx, cancel := context.WithTimeout(context.Background(), c.timeout)
	defer cancel()
	if err := pool.Ping(ctx); err != nil {
		pool.Close()
		return nil, fmt.Errorf("dsn: cannot connect to %s: %w", c.dsnAddr, err)
	}
	return s, nil
}

// setConnDefaults names the tracker's sessions for pg_stat_activity and
// keeps dead peers from hanging a connection forever: TCP keep-alives
// notice a vanished server within about half a minute, which matters most
// to the LISTEN connection, which otherwise only reads.
func setConnDefaults(cc *pgx.ConnConfig) {
	if _, ok := cc.RuntimeParams["application_name"]; !ok {
		cc.RuntimeParams["application_name"] = "chihaya"
	}
	d := &net.Dialer{
		Timeout: cc.ConnectTimeout,
		KeepAliveConfig: net.KeepAliveConfig{
			Enable: true, Idle: 15 * time.Second, Interval: 5 * time.Second, Count: 3,
		},
	}
	if d.Timeout == 0 {
		d.Timeout = 10 * time.Second
	}
	cc.DialFunc = d.DialContext
}

// Close closes the connections and stops Watch.
func (s *Store) Close() error {
	s.closeOnce.Do(func() {
		close(s.done)
		s.mu.Lock()
		if s.early != nil {
			s.early.Close(context.Background())
			s.early = nil
		}
		s.mu.Unlock()
		s.pool.Close()
	})
	return nil
}

// classify wraps err with storage.Permanent when the server refused the
// rows themselves: SQLSTATE class 22 (data exception: a value out of
// range, an invalid byte sequence) and 23 (integrity constraint
// violation). Everything else — a lost connection, a timeout, a deadlock,
// a missing table — stays plain: the same rows may succeed later, and
// splitting the batch would not help.
func classify(err error) error {
	var pe *pgconn.PgError
	if errors.As(err, &pe) && len(pe.Code) == 5 && (pe.Code[:2] == "22" || pe.Code[:2] == "23") {
		return storage.Permanent(err)
	}
	var re *rowError
	if errors.As(err, &re) {
		return storage.Permanent(err)
	}
	return err
}

// rowError is a row the driver cannot convert to the type a custom
// statement's parameter has (an id over 2³¹−1 for an integer column): a
// data error, found before PostgreSQL would have reported it.
type rowError struct{ msg string }

func (e *rowError) Error() string { return e.msg }
