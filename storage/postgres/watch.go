package postgres

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/chihaya/chihaya/bittorrent"
	"github.com/chihaya/chihaya/storage"
)

// Live changes. The database sends a small JSON payload on the channel
// for every change (migrations/0002_notify.sql); Watch reads the changed
// rows again with the by-id statements and applies them to the tracker's
// policy. Reading the row rather than trusting the payload keeps payloads
// tiny, makes the order of notifications irrelevant (the row's state
// wins), and lets a custom schema's triggers send nothing but an id.

const (
	// reconnectMin and reconnectMax bound the wait between attempts to
	// connect the LISTEN connection again.
	reconnectMin = 100 * time.Millisecond
	reconnectMax = 30 * time.Second
	// maxFetch is the most changed rows fetched one by one; a larger
	// burst (a site-wide freeleech, a mass ban) reloads everything
	// instead, which is cheaper than thousands of queries.
	maxFetch = 1000
	// loadTimeout bounds a reload Watch does itself.
	loadTimeout = 5 * time.Minute
)

// event is one notification's payload.
type event struct {
	Table     string `json:"table"`
	Op        string `json:"op"`
	ID        *int64 `json:"id"`
	UserID    *int64 `json:"user_id"`
	TorrentID *int64 `json:"torrent_id"`
}

// listen opens a connection of its own (LISTEN holds it for good, so it
// is not the pool's) and subscribes to the channel.
func (s *Store) listen(ctx context.Context) (*pgx.Conn, error) {
	ctx, cancel := context.WithTimeout(ctx, s.cfg.timeout)
	defer cancel()
	conn, err := pgx.ConnectConfig(ctx, s.cfg.pool.ConnConfig.Copy())
	if err != nil {
		return nil, err
	}
	if _, err := conn.Exec(ctx, "LISTEN "+pgx.Identifier{s.cfg.channel}.Sanitize()); err != nil {
		conn.Close(context.WithoutCancel(ctx))
		return nil, err
	}
	return conn, nil
}

// takeEarly hands Watch the connection Start began listening on.
func (s *Store) takeEarly() *pgx.Conn {
	s.mu.Lock()
	defer s.mu.Unlock()
	c := s.early
	s.early = nil
	return c
}

// Watch applies changes the database announces on the channel to p until
// ctx ends or the store is closed. A lost connection is opened again with
// back-off; every time it is, everything is reloaded, since what changed
// meanwhile was announced to nobody. It returns nil when stopped.
func (s *Store) Watch(ctx context.Context, p storage.Policy) error {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	go func() {
		select {
		case <-s.done:
			cancel()
		case <-ctx.Done():
		}
	}()
	conn := s.takeEarly()
	// Without Start's connection, changes since the caller's Load were
	// not listened to.
	reload := conn == nil
	wait := reconnectMin
	for {
		if conn == nil {
			c, err := s.listen(ctx)
			if err != nil {
				if ctx.Err() != nil {
					return nil
				}
				s.log.Warn("cannot listen for changes; retrying", "channel", s.cfg.channel, "retry_in", wait, "err", err)
				if !sleep(ctx, wait) {
					return nil
				}
				wait = min(2*wait, reconnectMax)
				continue
			}
			conn = c
		}
		if reload {
			if err := s.reload(ctx, p); err != nil {
				conn.Close(context.WithoutCancel(ctx))
				conn = nil
				if ctx.Err() != nil {
					return nil
				}
				s.log.Warn("reload after reconnecting failed; retrying", "retry_in", wait, "err", err)
				if !sleep(ctx, wait) {
					return nil
				}
				wait = min(2*wait, reconnectMax)
				continue
			}
			s.log.Info("listening for changes again; reloaded everything to catch up", "channel", s.cfg.channel)
		}
		began := time.Now()
		err := s.serve(ctx, conn, p)
		conn.Close(context.WithoutCancel(ctx))
		conn, reload = nil, true
		if ctx.Err() != nil {
			return nil
		}
		// A connection that lasted is a fresh start; one dropped at
		// once (a server refusing us) keeps the back-off growing.
		if time.Since(began) > time.Minute {
			wait = reconnectMin
		}
		s.log.Warn("lost the connection listening for changes; reconnecting", "retry_in", wait, "err", err)
		if !sleep(ctx, wait) {
			return nil
		}
		wait = min(2*wait, reconnectMax)
	}
}

// sleep waits d or until ctx ends; false if it ended.
func sleep(ctx context.Context, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return false
	case <-t.C:
		return true
	}
}

// reload reads everything and applies it as a diff.
func (s *Store) reload(ctx context.Context, p storage.Policy) error {
	ctx, cancel := context.WithTimeout(ctx, loadTimeout)
	defer cancel()
	snap, err := s.Load(ctx)
	if err != nil {
		return err
	}
	p.Replace(snap)
	return nil
}

// serve reads notifications from conn and applies them, a burst at a
// time, until the connection fails or ctx ends.
func (s *Store) serve(ctx context.Context, conn *pgx.Conn, p storage.Policy) error {
	ctx, cancel := context.WithCancel(ctx)
	payloads := make(chan string, 1024)
	readErr := make(chan error, 1)
	readerDone := make(chan struct{})
	// The reader owns conn until it returns: serve waits for it before
	// the caller closes conn.
	defer func() {
		cancel()
		<-readerDone
	}()
	go func() {
		defer close(readerDone)
		for {
			n, err := conn.WaitForNotification(ctx)
			if err != nil {
				readErr <- err
				return
			}
			select {
			case payloads <- n.Payload:
			case <-ctx.Done():
				readErr <- ctx.Err()
				return
			}
		}
	}()
	for {
		var burst []string
		select {
		case <-ctx.Done():
			return ctx.Err()
		case err := <-readErr:
			return err
		case pl := <-payloads:
			burst = append(burst, pl)
		}
		// Take what else has arrived, without waiting: a burst of
		// changes becomes one round of fetches.
	more:
		for len(burst) < maxFetch {
			select {
			case pl := <-payloads:
				burst = append(burst, pl)
			default:
				break more
			}
		}
		if err := s.apply(ctx, p, burst); err != nil {
			// The changes are not applied: reconnecting reloads
			// everything, which applies them.
			return fmt.Errorf("applying changes: %w", err)
		}
	}
}

// changes is a burst of notifications, deduplicated.
type changes struct {
	users, torrents map[uint32]bool
	tokens          map[storage.Token]bool
	whitelist, all  bool
}

func (s *Store) parse(payloads []string) changes {
	c := changes{users: map[uint32]bool{}, torrents: map[uint32]bool{}, tokens: map[storage.Token]bool{}}
	for _, pl := range payloads {
		var e event
		if err := json.Unmarshal([]byte(pl), &e); err != nil {
			s.log.Warn("notification is not the JSON the driver expects; ignored", "payload", pl, "err", err)
			continue
		}
		ok := true
		switch e.Table {
		case "users":
			var id uint32
			if id, ok = notifiedID(e.ID); ok {
				c.users[id] = true
			}
		case "torrents":
			var id uint32
			if id, ok = notifiedID(e.ID); ok {
				c.torrents[id] = true
			}
		case "tokens":
			u, ok1 := notifiedID(e.UserID)
			t, ok2 := notifiedID(e.TorrentID)
			if ok = ok1 && ok2; ok {
				c.tokens[storage.Token{UserID: u, TorrentID: t}] = true
			}
		case "whitelist":
			c.whitelist = true
		case "all":
			c.all = true
		default:
			ok = false
		}
		if !ok {
			s.log.Warn("notification names no known table and key; ignored", "payload", pl)
		}
	}
	return c
}

func notifiedID(v *int64) (uint32, bool) {
	if v == nil || *v < 1 || *v > 1<<32-1 {
		return 0, false
	}
	return uint32(*v), true
}

// apply reads the changed rows and applies them.
func (s *Store) apply(ctx context.Context, p storage.Policy, payloads []string) error {
	c := s.parse(payloads)
	q := s.cfg.queries
	if c.all || len(c.users)+len(c.torrents)+len(c.tokens) > maxFetch ||
		(len(c.users) > 0 && q[keyLoadUser].disabled) ||
		(len(c.torrents) > 0 && q[keyLoadTorrent].disabled) ||
		(len(c.tokens) > 0 && q[keyLoadToken].disabled) {
		return s.reload(ctx, p)
	}
	ctx, cancel := context.WithTimeout(ctx, s.cfg.timeout)
	defer cancel()
	b := &pgx.Batch{}
	var apply []func(rows pgx.Rows) error
	for id := range c.users {
		b.Queue(q[keyLoadUser].sql, int64(id))
		apply = append(apply, func(rows pgx.Rows) error {
			var u storage.User
			found := false
			err := readRows(q[keyLoadUser], rows, func(r *reader) {
				u, found = r.user()
			})
			if err != nil {
				return err
			}
			if found && u.ID == id {
				p.PutUser(u)
			} else {
				removeUser(p, id)
			}
			return nil
		})
	}
	for id := range c.torrents {
		b.Queue(q[keyLoadTorrent].sql, int64(id))
		apply = append(apply, func(rows pgx.Rows) error {
			var t storage.Torrent
			found := false
			err := readRows(q[keyLoadTorrent], rows, func(r *reader) {
				t, found = r.torrent()
			})
			if err != nil {
				return err
			}
			if found && t.ID == id {
				p.PutTorrent(t)
			} else {
				removeTorrent(p, id)
			}
			return nil
		})
	}
	for tok := range c.tokens {
		st := q[keyLoadToken]
		args := make([]any, len(st.params))
		for i, pi := range st.params {
			if st.def.params[pi].name == "user_id" {
				args[i] = int64(tok.UserID)
			} else {
				args[i] = int64(tok.TorrentID)
			}
		}
		b.Queue(st.sql, args...)
		apply = append(apply, func(rows pgx.Rows) error {
			found := false
			err := readRows(st, rows, func(r *reader) {
				if t, ok := r.token(); ok && t == tok {
					found = true
				}
			})
			if err != nil {
				return err
			}
			if found {
				p.AddToken(tok)
			} else {
				p.RemoveToken(tok)
			}
			return nil
		})
	}
	if b.Len() > 0 {
		br := s.pool.SendBatch(ctx, b)
		for _, fn := range apply {
			rows, err := br.Query()
			if err == nil {
				err = fn(rows)
			}
			if err != nil {
				br.Close()
				return err
			}
		}
		if err := br.Close(); err != nil {
			return err
		}
	}
	if c.whitelist {
		list, err := s.loadWhitelist(ctx, s.pool)
		if err != nil {
			return err
		}
		p.ReplaceWhitelist(list)
	}
	return nil
}

// readRows is each for rows already queried.
func readRows(st *statement, rows pgx.Rows, fn func(r *reader)) error {
	defer rows.Close()
	if err := rows.Err(); err != nil {
		return fmt.Errorf("queries.%s: %w", st.key(), err)
	}
	r, err := newReader(st.key(), st.def.columns, rows)
	if err != nil {
		return err
	}
	for rows.Next() {
		if err := rows.Scan(r.dest...); err != nil {
			return fmt.Errorf("queries.%s: %w", st.key(), err)
		}
		fn(r)
	}
	if err := rows.Err(); err != nil {
		return fmt.Errorf("queries.%s: %w", st.key(), err)
	}
	return nil
}

// removeUser forgets the user with this id. The policy removes users by
// passkey, which a deleted row no longer tells; but PutUser replaces the
// user with the same id, passkey and all, so putting a placeholder with a
// random, unguessable passkey and removing that removes the user.
func removeUser(p storage.Policy, id uint32) {
	var b [16]byte
	_, _ = rand.Read(b[:])
	placeholder := "\x00removed:" + hex.EncodeToString(b[:])
	p.PutUser(storage.User{ID: id, Passkey: placeholder})
	p.RemoveUser(placeholder)
}

// removeTorrent forgets the torrent with this id, the same way: PutTorrent
// replaces the torrent with the same id, hashes and all.
func removeTorrent(p storage.Policy, id uint32) {
	var h bittorrent.InfoHash
	_, _ = rand.Read(h[:])
	p.PutTorrent(storage.Torrent{ID: id, InfoHash: h})
	p.DeleteTorrent(h, -1)
}
