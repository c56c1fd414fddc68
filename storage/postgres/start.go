package postgres

import (
	"context"
	"errors"
	"fmt"
	"strings"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
)

// Start runs before the first Load. It checks every statement against the
// database, so that a missing migration, a typo in a custom query or a
// column of the wrong type stops the tracker at start rather than failing
// every flush; runs the start statement (by default: empty peers and zero
// the live counters, which the tracker rebuilds), unless readonly; and
// begins listening for changes, so that Watch misses nothing that changes
// after the first Load.
func (s *Store) Start(ctx context.Context) error {
	if err := s.check(ctx); err != nil {
		return err
	}
	if st := s.cfg.queries[keyStart]; !s.cfg.readonly && !st.disabled {
		// No arguments: the simple protocol, which runs several
		// statements.
		if _, err := s.pool.Exec(ctx, st.sql); err != nil {
			return fmt.Errorf("postgres: queries.start: %w", err)
		}
	}
	conn, err := s.listen(ctx)
	if err != nil {
		// Watch connects again on its own, and reloads once it does.
		s.log.Warn("cannot listen for changes yet", "channel", s.cfg.channel, "err", err)
		return nil
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.early != nil {
		s.early.Close(ctx)
	}
	s.early = conn
	return nil
}

// check prepares every statement in use, without running it.
func (s *Store) check(ctx context.Context) error {
	usesDefaults := false
	for _, d := range defList {
		st := s.cfg.queries[d.key]
		if !st.custom && !st.disabled && (d.columns != nil || !s.cfg.readonly) {
			usesDefaults = true
		}
	}
	if usesDefaults {
		pending, err := s.pendingMigrations(ctx)
		if err != nil {
			return fmt.Errorf("postgres: checking the schema of %s: %w", s.cfg.dsnAddr, err)
		}
		if len(pending) > 0 {
			return fmt.Errorf("postgres: %s lacks the default schema's migrations %s, which the default statements need: run `chihaya migrate -config FILE` (or set every statement in queries)",
				s.cfg.dsnAddr, strings.Join(pending, ", "))
		}
	}
	conn, err := s.pool.Acquire(ctx)
	if err != nil {
		return fmt.Errorf("postgres: %w", err)
	}
	defer conn.Release()
	for _, d := range defList {
		st := s.cfg.queries[d.key]
		writes := d.columns == nil
		switch {
		case st.disabled, d.key == keyStart:
			// start may be several statements, which cannot be
			// prepared; it runs right after.
			continue
		case writes && s.cfg.readonly:
			continue
		case st.bulk:
			if err := checkBulk(ctx, conn.Conn(), d.key); err != nil {
				return err
			}
			continue
		}
		if err := s.checkStatement(ctx, conn.Conn(), st); err != nil {
			return err
		}
	}
	return nil
}

func (s *Store) checkStatement(ctx context.Context, conn *pgx.Conn, st *statement) error {
	sd, err := conn.PgConn().Prepare(ctx, "", st.sql, nil)
	if err != nil {
		return fmt.Errorf("postgres: queries.%s: %w%s", st.key(), err, paramHint(err, st))
	}
	names := typeNamer(conn)
	if err := st.checkParams(sd.ParamOIDs, names); err != nil {
		return fmt.Errorf("postgres: %w", err)
	}
	if st.def.columns != nil {
		fields := make([]fieldInfo, len(sd.Fields))
		for i, f := range sd.Fields {
			fields[i] = fieldInfo{name: f.Name, oid: f.DataTypeOID}
		}
		if _, err := newLayout(st.key(), st.def.columns, fields, names); err != nil {
			return fmt.Errorf("postgres: %w", err)
		}
		return nil
	}
	st.mu.Lock()
	st.oids = append([]uint32{}, sd.ParamOIDs...)
	st.mu.Unlock()
	return nil
}

// paramHint maps the $n of PostgreSQL's messages back to the names the
// operator wrote.
func paramHint(err error, st *statement) string {
	var pe *pgconn.PgError
	if !errors.As(err, &pe) || len(st.params) == 0 || !strings.Contains(pe.Message, "$") {
		return ""
	}
	parts := make([]string, len(st.params))
	for i, p := range st.params {
		parts[i] = fmt.Sprintf("$%d is @%s", i+1, st.def.params[p].name)
	}
	return " (" + strings.Join(parts, ", ") + ")"
}

// checkBulk runs a built-in write with no rows in a transaction it rolls
// back: every table and column it touches must exist.
func checkBulk(ctx context.Context, conn *pgx.Conn, key string) error {
	b := map[string]*bulk{
		keyWriteUsers: bulkUsers, keyWriteTorrents: bulkTorrents, keyWritePeers: bulkPeers,
		keyWritePeersLight: bulkPeers, keyWriteSnatches: bulkSnatches, keyWriteTokens: bulkTokens,
		keyExpireTokens: bulkExpire,
	}[key]
	tx, err := conn.Begin(ctx)
	if err != nil {
		return fmt.Errorf("postgres: %w", err)
	}
	defer tx.Rollback(context.WithoutCancel(ctx))
	if err := b.run(ctx, tx, 0, nil, nil); err != nil {
		return fmt.Errorf("postgres: the built-in %s statement: %w", key, err)
	}
	return nil
}
