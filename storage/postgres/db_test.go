package postgres

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"log/slog"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
)

// BaseDSN is the server the tests use: CHIHAYA_POSTGRES_DSN, or the
// PostgreSQL that scripts/start-services runs (trust authentication).
func BaseDSN() string {
	if dsn := os.Getenv("CHIHAYA_POSTGRES_DSN"); dsn != "" {
		return dsn
	}
	return "postgres://postgres@127.0.0.1:5432/postgres?sslmode=disable"
}

// WithDatabase returns dsn pointing at another database, in either DSN
// form pgx reads.
func WithDatabase(dsn, name string) string {
	if u, err := url.Parse(dsn); err == nil && (u.Scheme == "postgres" || u.Scheme == "postgresql") {
		u.Path = "/" + name
		return u.String()
	}
	// key=value: a later key wins.
	return dsn + " dbname=" + name
}

var (
	reachOnce sync.Once
	reachErr  error
)

// RequirePostgres skips the test when no server answers, or fails it in
// CI, where a missing server is a broken setup rather than a developer
// laptop.
func RequirePostgres(t testing.TB) {
	t.Helper()
	reachOnce.Do(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		var c *pgx.Conn
		if c, reachErr = pgx.Connect(ctx, BaseDSN()); reachErr == nil {
			reachErr = c.Ping(ctx)
			c.Close(ctx)
		}
	})
	if reachErr == nil {
		return
	}
	if os.Getenv("CI") != "" {
		t.Fatalf("PostgreSQL unreachable (CI is set, so this fails): %v", reachErr)
	}
	t.Skipf("PostgreSQL unreachable, run scripts/start-services (or set CHIHAYA_POSTGRES_DSN): %v", reachErr)
}

// TestDB is a throwaway database, dropped when the test ends.
type TestDB struct {
	Name string
	// DSN is for the store under test; Admin for fixtures and
	// assertions.
	DSN   string
	Admin *pgxpool.Pool
}

// NewTestDB creates a database with a random name on the server at
// baseDSN. With migrate, the default schema is applied (through the
// driver's own Migrate) and testdata/fixtures.sql loaded when fixtures is
// set too.
func NewTestDB(t testing.TB, baseDSN string, migrate, fixtures bool) *TestDB {
	t.Helper()
	ctx := context.Background()
	root, err := pgx.Connect(ctx, baseDSN)
	if err != nil {
		t.Fatal(err)
	}
	defer root.Close(ctx)
	var rnd [6]byte
	_, _ = rand.Read(rnd[:])
	name := "chihaya_test_" + hex.EncodeToString(rnd[:])
	if _, err := root.Exec(ctx, "CREATE DATABASE "+name); err != nil {
		t.Fatalf("create database: %v", err)
	}
	d := &TestDB{Name: name, DSN: WithDatabase(baseDSN, name)}
	t.Cleanup(func() {
		if d.Admin != nil {
			d.Admin.Close()
		}
		// A connection of its own: a test may have restarted the
		// server since.
		root, err := pgx.Connect(ctx, baseDSN)
		if err != nil {
			t.Errorf("drop database %s: %v", name, err)
			return
		}
		defer root.Close(ctx)
		// FORCE ends sessions a failed test left behind.
		if _, err := root.Exec(ctx, "DROP DATABASE "+name+" WITH (FORCE)"); err != nil {
			t.Errorf("drop database %s: %v", name, err)
		}
	})
	if d.Admin, err = pgxpool.New(ctx, d.DSN); err != nil {
		t.Fatal(err)
	}
	if migrate {
		if _, err := d.Open(t, nil).Migrate(ctx); err != nil {
			t.Fatalf("migrate: %v", err)
		}
	}
	if fixtures {
		b, err := os.ReadFile(filepath.Join("testdata", "fixtures.sql"))
		if err != nil {
			t.Fatal(err)
		}
		d.Exec(t, string(b))
	}
	return d
}

// Config returns the driver's configuration block for this database, with
// extra keys.
func (d *TestDB) Config(t testing.TB, extra map[string]any) json.RawMessage {
	t.Helper()
	conf := map[string]any{"dsn": d.DSN, "timeout": "20s"}
	for k, v := range extra {
		conf[k] = v
	}
	raw, err := json.Marshal(conf)
	if err != nil {
		t.Fatal(err)
	}
	return raw
}

// Open opens a store on the database through the registered driver's
// Open; it is closed when the test ends.
func (d *TestDB) Open(t testing.TB, extra map[string]any) *Store {
	t.Helper()
	st, err := Driver{}.Open(d.Config(t, extra))
	if err != nil {
		t.Fatalf("open: %v", err)
	}
	s := st.(*Store)
	s.log = testLogger(t)
	t.Cleanup(func() { st.Close() })
	return s
}

// testLogger logs through t, so a store's messages show with the test
// that caused them (and only with -v or on failure). Messages after the
// test has ended, from a goroutine still stopping, are dropped.
func testLogger(t testing.TB) *slog.Logger {
	w := &testWriter{t: t}
	t.Cleanup(func() {
		w.mu.Lock()
		w.done = true
		w.mu.Unlock()
	})
	return slog.New(slog.NewTextHandler(w, &slog.HandlerOptions{Level: slog.LevelDebug}))
}

type testWriter struct {
	t    testing.TB
	mu   sync.Mutex
	done bool
}

func (w *testWriter) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if !w.done {
		w.t.Log(strings.TrimSpace(string(p)))
	}
	return len(p), nil
}

// Exec runs SQL on the admin pool: several statements when there are no
// arguments.
func (d *TestDB) Exec(t testing.TB, sql string, args ...any) {
	t.Helper()
	if _, err := d.Admin.Exec(context.Background(), sql, args...); err != nil {
		t.Fatalf("%s: %v", sql, err)
	}
}

// Ints runs a query returning one row of integers (NULL reads as -1).
func (d *TestDB) Ints(t testing.TB, sql string, args ...any) []int64 {
	t.Helper()
	rows, err := d.Admin.Query(context.Background(), sql, args...)
	if err != nil {
		t.Fatalf("%s: %v", sql, err)
	}
	defer rows.Close()
	if !rows.Next() {
		t.Fatalf("%s: no row (%v)", sql, rows.Err())
	}
	n := len(rows.FieldDescriptions())
	vals := make([]*int64, n)
	ptrs := make([]any, n)
	for i := range vals {
		ptrs[i] = &vals[i]
	}
	if err := rows.Scan(ptrs...); err != nil {
		t.Fatalf("%s: %v", sql, err)
	}
	out := make([]int64, n)
	for i, v := range vals {
		out[i] = -1
		if v != nil {
			out[i] = *v
		}
	}
	return out
}

// Int returns the first column of a one-row query.
func (d *TestDB) Int(t testing.TB, sql string, args ...any) int64 {
	t.Helper()
	return d.Ints(t, sql, args...)[0]
}

// Text returns the first column of a one-row query as text ("<nil>" for
// NULL).
func (d *TestDB) Text(t testing.TB, sql string, args ...any) string {
	t.Helper()
	var s *string
	if err := d.Admin.QueryRow(context.Background(), sql, args...).Scan(&s); err != nil {
		t.Fatalf("%s: %v", sql, err)
	}
	if s == nil {
		return "<nil>"
	}
	return *s
}

// SetLogger replaces the store's logger, for tests that read what it
// logs.
func (s *Store) SetLogger(l *slog.Logger) { s.log = l }
