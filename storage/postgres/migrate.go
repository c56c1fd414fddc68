package postgres

import (
	"context"
	"embed"
	"errors"
	"fmt"
	"io/fs"
	"path"
	"slices"
	"strings"

	"github.com/jackc/pgx/v5"
)

// The default schema, one file per version, applied in name order. A
// released file never changes: a change to the schema is a new file.
//
//go:embed migrations/*.sql
var migrationFiles embed.FS

// migration is one version of the default schema.
type migration struct {
	version string // the file name without .sql
	sql     string
}

func migrations() ([]migration, error) {
	entries, err := fs.ReadDir(migrationFiles, "migrations")
	if err != nil {
		return nil, err
	}
	var out []migration
	for _, e := range entries {
		name := e.Name()
		b, err := migrationFiles.ReadFile(path.Join("migrations", name))
		if err != nil {
			return nil, err
		}
		out = append(out, migration{version: strings.TrimSuffix(name, ".sql"), sql: string(b)})
	}
	slices.SortFunc(out, func(a, b migration) int { return strings.Compare(a.version, b.version) })
	return out, nil
}

// migrateLock is the advisory lock key that serialises migrators: two
// trackers deployed at once, or a deploy script racing an operator.
const migrateLock = 0x636869686179_61 // "chihaya" and 'a'

// Migrate creates the default schema, or brings it up to date: it applies
// every migration schema_migrations does not list, in order, and records
// each. Everything runs in one transaction, so a failing migration leaves
// the database as it was. Running it again applies nothing.
func (s *Store) Migrate(ctx context.Context) ([]string, error) {
	if s.cfg.readonly {
		return nil, errors.New("postgres: migrate: the storage is configured readonly")
	}
	all, err := migrations()
	if err != nil {
		return nil, fmt.Errorf("postgres: migrate: %w", err)
	}
	var applied []string
	err = pgx.BeginFunc(ctx, s.pool, func(tx pgx.Tx) error {
		if _, err := tx.Exec(ctx, "SELECT pg_advisory_xact_lock($1)", int64(migrateLock)); err != nil {
			return err
		}
		if _, err := tx.Exec(ctx, `CREATE TABLE IF NOT EXISTS schema_migrations (
			version    text PRIMARY KEY,
			applied_at timestamptz NOT NULL DEFAULT now())`); err != nil {
			return err
		}
		rows, err := tx.Query(ctx, "SELECT version FROM schema_migrations")
		if err != nil {
			return err
		}
		done, err := pgx.CollectRows(rows, pgx.RowTo[string])
		if err != nil {
			return err
		}
		for _, m := range all {
			if slices.Contains(done, m.version) {
				continue
			}
			// No arguments: pgx sends the file with the simple
			// protocol, which runs several statements.
			if _, err := tx.Exec(ctx, m.sql); err != nil {
				return fmt.Errorf("%s: %w", m.version, err)
			}
			if _, err := tx.Exec(ctx, "INSERT INTO schema_migrations (version) VALUES ($1)", m.version); err != nil {
				return err
			}
			applied = append(applied, m.version)
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("postgres: migrate %s: %w", s.cfg.dsnAddr, err)
	}
	return applied, nil
}

// pendingMigrations lists the migrations the database lacks, for Start to
// refuse a schema the default statements do not fit.
func (s *Store) pendingMigrations(ctx context.Context) ([]string, error) {
	all, err := migrations()
	if err != nil {
		return nil, err
	}
	var exists bool
	if err := s.pool.QueryRow(ctx, "SELECT to_regclass('schema_migrations') IS NOT NULL").Scan(&exists); err != nil {
		return nil, err
	}
	var done []string
	if exists {
		rows, err := s.pool.Query(ctx, "SELECT version FROM schema_migrations")
		if err != nil {
			return nil, err
		}
		if done, err = pgx.CollectRows(rows, pgx.RowTo[string]); err != nil {
			return nil, err
		}
	}
	var pending []string
	for _, m := range all {
		if !slices.Contains(done, m.version) {
			pending = append(pending, m.version)
		}
	}
	return pending, nil
}
