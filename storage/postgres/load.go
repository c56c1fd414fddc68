package postgres

import (
	"context"
	"fmt"

	"github.com/jackc/pgx/v5"

	"github.com/chihaya/chihaya/storage"
)

// querier is what reads run on: the pool, a transaction, a connection.
type querier interface {
	Query(ctx context.Context, sql string, args ...any) (pgx.Rows, error)
}

// each runs a read and calls fn for every row. The result columns are
// checked against the key's list first.
func each(ctx context.Context, q querier, st *statement, args []any, fn func(r *reader)) error {
	rows, err := q.Query(ctx, st.sql, args...)
	if err != nil {
		return fmt.Errorf("queries.%s: %w", st.key(), err)
	}
	return readRows(st, rows, fn)
}

// Load reads every user, torrent, active token and whitelist entry. The
// four queries run in one read-only REPEATABLE READ transaction, so they
// see one state of the database; rows are streamed, never held twice.
// Rows that cannot be used (no passkey, an info hash that is not 20 bytes,
// an id outside 1…2³²−1) are left out and counted in a warning.
func (s *Store) Load(ctx context.Context) (*storage.Snapshot, error) {
	tx, err := s.pool.BeginTx(ctx, pgx.TxOptions{IsoLevel: pgx.RepeatableRead, AccessMode: pgx.ReadOnly})
	if err != nil {
		return nil, fmt.Errorf("postgres: load: %w", err)
	}
	// Read-only: nothing to commit, and rolling back also ends the
	// transaction when a query failed.
	defer tx.Rollback(context.WithoutCancel(ctx))
	snap, err := s.load(ctx, tx)
	if err != nil {
		return nil, fmt.Errorf("postgres: load: %w", err)
	}
	return snap, nil
}

func (s *Store) load(ctx context.Context, q querier) (*storage.Snapshot, error) {
	snap := &storage.Snapshot{}
	var skippedUsers, skippedTorrents int
	err := each(ctx, q, s.cfg.queries[keyLoadUsers], nil, func(r *reader) {
		if u, ok := r.user(); ok {
			snap.Users = append(snap.Users, u)
		} else {
			skippedUsers++
		}
	})
	if err != nil {
		return nil, err
	}
	err = each(ctx, q, s.cfg.queries[keyLoadTorrents], nil, func(r *reader) {
		if t, ok := r.torrent(); ok {
			snap.Torrents = append(snap.Torrents, t)
		} else {
			skippedTorrents++
		}
	})
	if err != nil {
		return nil, err
	}
	if st := s.cfg.queries[keyLoadTokens]; !st.disabled {
		err = each(ctx, q, st, nil, func(r *reader) {
			if t, ok := r.token(); ok {
				snap.Tokens = append(snap.Tokens, t)
			}
		})
		if err != nil {
			return nil, err
		}
	}
	if snap.Whitelist, err = s.loadWhitelist(ctx, q); err != nil {
		return nil, err
	}
	if skippedUsers > 0 {
		s.log.Warn("users skipped: no usable id (1 to 2³²−1) or passkey", "count", skippedUsers)
	}
	if skippedTorrents > 0 {
		s.log.Warn("torrents skipped: no usable id or info hash (20 bytes, or 40 hex digits, not all zero)", "count", skippedTorrents)
	}
	return snap, nil
}

func (s *Store) loadWhitelist(ctx context.Context, q querier) ([]string, error) {
	st := s.cfg.queries[keyLoadWhitelist]
	if st.disabled {
		return nil, nil
	}
	var list []string
	err := each(ctx, q, st, nil, func(r *reader) {
		if p, ok := r.prefix(); ok {
			list = append(list, p)
		}
	})
	return list, err
}
