package gazelle

import (
	"context"
	"crypto/rand"
	"database/sql"
	"encoding/hex"
	"encoding/json"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/go-sql-driver/mysql"
)

// strictMode is MySQL 8's default sql_mode, the one OPS runs (MariaDB's
// default is strict too). Every test connection uses it, so the traps of
// strict mode show up here rather than in production.
const strictMode = "ONLY_FULL_GROUP_BY,STRICT_TRANS_TABLES,NO_ZERO_IN_DATE,NO_ZERO_DATE,ERROR_FOR_DIVISION_BY_ZERO,NO_ENGINE_SUBSTITUTION"

// baseDSN is the server the tests use: CHIHAYA_MYSQL_DSN, or the MariaDB
// that scripts/start-services runs.
func baseDSN(t testing.TB) *mysql.Config {
	dsn := os.Getenv("CHIHAYA_MYSQL_DSN")
	if dsn == "" {
		dsn = "root@tcp(127.0.0.1:3306)/"
	}
	cfg, err := mysql.ParseDSN(dsn)
	if err != nil {
		t.Fatalf("CHIHAYA_MYSQL_DSN: %v", err)
	}
	return cfg
}

var (
	reachOnce sync.Once
	reachErr  error
)

// requireMySQL skips the test when no server answers, or fails it in CI,
// where a missing server is a broken setup rather than a developer laptop.
func requireMySQL(t testing.TB) {
	t.Helper()
	reachOnce.Do(func() {
		cfg := baseDSN(t)
		cfg.DBName = ""
		cfg.Timeout = 3 * time.Second
		c, err := mysql.NewConnector(cfg)
		if err != nil {
			reachErr = err
			return
		}
		db := sql.OpenDB(c)
		defer db.Close()
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		reachErr = db.PingContext(ctx)
	})
	if reachErr == nil {
		return
	}
	if os.Getenv("CI") != "" {
		t.Fatalf("MySQL/MariaDB unreachable (CI is set, so this fails): %v", reachErr)
	}
	t.Skipf("MySQL/MariaDB unreachable, run scripts/start-services (or set CHIHAYA_MYSQL_DSN): %v", reachErr)
}

// testDB is a throwaway database holding one dialect's schema.
type testDB struct {
	// admin is a strict-mode connection that may run several statements
	// at once, for fixtures and assertions.
	admin *sql.DB
	// dsn is for the store under test, strict mode too.
	dsn     string
	dialect string
}

// newTestDB creates a database with a random name, dropped when the test
// ends, and loads the dialect's schema and, if asked, the fixtures.
func newTestDB(t testing.TB, dialect string, fixtures bool) *testDB {
	t.Helper()
	requireMySQL(t)
	cfg := baseDSN(t)
	cfg.DBName = ""
	cfg.MultiStatements = true
	cfg.Params = map[string]string{"sql_mode": "'" + strictMode + "'"}
	root := connect(t, cfg)
	var rnd [6]byte
	_, _ = rand.Read(rnd[:])
	name := "chihaya_test_" + hex.EncodeToString(rnd[:])
	if _, err := root.Exec("CREATE DATABASE " + name + " CHARACTER SET utf8mb4"); err != nil {
		t.Fatalf("create database: %v", err)
	}
	t.Cleanup(func() {
		if _, err := root.Exec("DROP DATABASE " + name); err != nil {
			t.Errorf("drop database %s: %v", name, err)
		}
		root.Close()
	})
	cfg.DBName = name
	admin := connect(t, cfg)
	t.Cleanup(func() { admin.Close() })

	files := []string{"schema_" + dialect + ".sql"}
	if fixtures {
		files = append(files, "fixtures.sql", "fixtures_"+dialect+".sql")
	}
	for _, f := range files {
		b, err := os.ReadFile(filepath.Join("testdata", f))
		if err != nil {
			t.Fatal(err)
		}
		if _, err := admin.Exec(string(b)); err != nil {
			t.Fatalf("%s: %v", f, err)
		}
	}
	cfg.MultiStatements = false
	return &testDB{admin: admin, dsn: cfg.FormatDSN(), dialect: dialect}
}

func connect(t testing.TB, cfg *mysql.Config) *sql.DB {
	t.Helper()
	c, err := mysql.NewConnector(cfg)
	if err != nil {
		t.Fatal(err)
	}
	return sql.OpenDB(c)
}

// open opens a store on the test database through the registered driver's
// Open, with extra configuration keys.
func (d *testDB) open(t testing.TB, extra map[string]any) *Store {
	t.Helper()
	conf := map[string]any{"dsn": d.dsn, "dialect": d.dialect, "timeout": "20s"}
	for k, v := range extra {
		conf[k] = v
	}
	raw, err := json.Marshal(conf)
	if err != nil {
		t.Fatal(err)
	}
	st, err := Driver{}.Open(raw)
	if err != nil {
		t.Fatalf("open: %v", err)
	}
	t.Cleanup(func() { st.Close() })
	return st.(*Store)
}

// exec runs statements on the admin connection.
func (d *testDB) exec(t testing.TB, q string, args ...any) {
	t.Helper()
	if _, err := d.admin.Exec(q, args...); err != nil {
		t.Fatalf("%s: %v", q, err)
	}
}

// int64s runs a query returning one row of integers (NULL reads as -1).
func (d *testDB) int64s(t testing.TB, q string, args ...any) []int64 {
	t.Helper()
	rows, err := d.admin.Query(q, args...)
	if err != nil {
		t.Fatalf("%s: %v", q, err)
	}
	defer rows.Close()
	cols, _ := rows.Columns()
	if !rows.Next() {
		t.Fatalf("%s: no row", q)
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

// count returns the first column of a one-row query.
func (d *testDB) count(t testing.TB, q string, args ...any) int64 {
	t.Helper()
	return d.int64s(t, q, args...)[0]
}

// dialects runs f once per dialect, in parallel subtests.
func dialects(t *testing.T, f func(t *testing.T, dialect string)) {
	for _, dialect := range []string{DialectOPS, DialectWhat} {
		t.Run(dialect, func(t *testing.T) {
			t.Parallel()
			f(t, dialect)
		})
	}
}

// userStats and torrentStats name the table and columns where the dialect
// keeps its counters.
func userStats(dialect string) (table, id string) {
	if dialect == DialectOPS {
		return "users_leech_stats", "UserID"
	}
	return "users_main", "ID"
}

func torrentStats(dialect string) (table, id, balance string) {
	if dialect == DialectOPS {
		return "torrents_leech_stats", "TorrentID", "Balance"
	}
	return "torrents", "ID", "balance"
}
