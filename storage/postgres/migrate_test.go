package postgres

import (
	"context"
	"fmt"
	"regexp"
	"slices"
	"strings"
	"sync"
	"testing"
)

func TestMigrationFiles(t *testing.T) {
	all, err := migrations()
	if err != nil {
		t.Fatal(err)
	}
	if len(all) < 2 {
		t.Fatalf("%d migrations", len(all))
	}
	// Versions are numbered without gaps, so a file added on two
	// branches at once collides visibly.
	name := regexp.MustCompile(`^\d{4}_[a-z0-9_]+$`)
	for i, m := range all {
		if !name.MatchString(m.version) || !strings.HasPrefix(m.version, fmt.Sprintf("%04d_", i+1)) {
			t.Errorf("migration %d is named %q, want %04d_<name>", i, m.version, i+1)
		}
	}
}

func TestMigrate(t *testing.T) {
	RequirePostgres(t)
	db := NewTestDB(t, BaseDSN(), false, false)
	s := db.Open(t, nil)
	ctx := context.Background()
	applied, err := s.Migrate(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(applied, []string{"0001_schema", "0002_notify", "0003_write_markers"}) {
		t.Fatalf("applied %v", applied)
	}
	for _, table := range []string{"users", "torrents", "tokens", "client_whitelist", "user_stats", "torrent_stats", "peers", "snatches", "write_markers"} {
		if db.Int(t, "SELECT count(*) FROM pg_tables WHERE schemaname = 'public' AND tablename = $1", table) != 1 {
			t.Errorf("table %s missing", table)
		}
	}
	if n := db.Int(t, "SELECT count(*) FROM pg_trigger WHERE tgname LIKE '%_notify'"); n != 7 {
		t.Errorf("%d notify triggers, want 7", n)
	}
	// Idempotent: the second run applies nothing.
	if applied, err = s.Migrate(ctx); err != nil || len(applied) != 0 {
		t.Fatalf("second run applied %v, %v", applied, err)
	}
	if n := db.Int(t, "SELECT count(*) FROM schema_migrations"); n != 3 {
		t.Errorf("schema_migrations has %d rows", n)
	}
	pending, err := s.pendingMigrations(ctx)
	if err != nil || len(pending) != 0 {
		t.Errorf("pending after migrating: %v %v", pending, err)
	}
}

// Two migrators at once: the advisory lock makes one wait, and it then
// finds nothing to do.
func TestMigrateConcurrently(t *testing.T) {
	RequirePostgres(t)
	db := NewTestDB(t, BaseDSN(), false, false)
	var wg sync.WaitGroup
	results := make([][]string, 3)
	errs := make([]error, 3)
	for i := range results {
		s := db.Open(t, nil)
		wg.Add(1)
		go func() {
			defer wg.Done()
			results[i], errs[i] = s.Migrate(context.Background())
		}()
	}
	wg.Wait()
	total := 0
	for i := range results {
		if errs[i] != nil {
			t.Fatalf("migrator %d: %v", i, errs[i])
		}
		total += len(results[i])
	}
	all, err := migrations()
	if err != nil || len(all) == 0 {
		t.Fatalf("no migration files: %v", err)
	}
	if total != len(all) {
		t.Errorf("the migrators applied %v between them, want each of the %d migrations once", results, len(all))
	}
}

func TestMigrateReadonly(t *testing.T) {
	RequirePostgres(t)
	db := NewTestDB(t, BaseDSN(), false, false)
	if _, err := db.Open(t, map[string]any{"readonly": true}).Migrate(context.Background()); err == nil || !strings.Contains(err.Error(), "readonly") {
		t.Fatalf("migrate on a readonly store: %v", err)
	}
	if n := db.Int(t, "SELECT count(*) FROM pg_tables WHERE schemaname = 'public'"); n != 0 {
		t.Errorf("%d tables created", n)
	}
}
