package postgres_test

import (
	"context"
	"encoding/hex"
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/chihaya/chihaya/bittorrent"
	"github.com/chihaya/chihaya/storage"
)

// eventually retries f until it returns nil or the time is up, and
// returns how long it took.
func eventually(t *testing.T, within time.Duration, what string, f func() error) time.Duration {
	t.Helper()
	start := time.Now()
	for {
		err := f()
		if err == nil {
			return time.Since(start)
		}
		if time.Since(start) > within {
			t.Fatalf("%s: not within %v: %v", what, within, err)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func hexHash(h bittorrent.InfoHash) string { return hex.EncodeToString(h[:]) }

// A user and a torrent inserted with plain SQL reach the tracker through
// the triggers' NOTIFY and Watch, without a reload: an announce with them
// succeeds within a second of the commit.
func TestNotifyNewUserAndTorrent(t *testing.T) {
	t.Parallel()
	e := newEnv(t, newFixtures(t), nil)
	e.watch()
	const carol = "carol000000000000000000000000000"
	fresh := hash(0x42)
	if err := e.announce(ann{passkey: carol, hash: fresh, peer: 9, left: 10}); err == nil {
		t.Fatal("announce before the rows exist succeeded")
	}
	e.db.Exec(t, fmt.Sprintf(`BEGIN;
		INSERT INTO users (id, passkey) VALUES (20, '%s');
		INSERT INTO torrents (id, info_hash) VALUES (20, decode('%s', 'hex'));
		COMMIT`, carol, hexHash(fresh)))
	took := eventually(t, 2*time.Second, "announce with the new user and torrent", func() error {
		return e.announce(ann{passkey: carol, hash: fresh, peer: 9, left: 10, event: bittorrent.Started})
	})
	t.Logf("the new user and torrent were usable %v after the commit", took)
	if took > time.Second {
		t.Errorf("took %v, want under a second", took)
	}
	e.ok(ann{passkey: carol, hash: fresh, peer: 9, down: 10, left: 0, event: bittorrent.Completed})
	e.flush()
	if up, down := e.user(20); down != 10 || up != 0 {
		t.Errorf("carol's totals %d/%d, want 0/10", up, down)
	}
}

// Every kind of change the triggers announce is applied.
func TestNotifyChanges(t *testing.T) {
	t.Parallel()
	e := newEnv(t, newFixtures(t), nil)
	e.watch()
	within := 2 * time.Second
	user := func(passkey string) func() (storage.User, bool) {
		return func() (storage.User, bool) { return e.policy.User(passkey) }
	}
	wait := func(what string, cond func() bool) {
		t.Helper()
		eventually(t, within, what, func() error {
			if cond() {
				return nil
			}
			return errors.New("not yet")
		})
	}

	// A new passkey replaces the old one.
	e.db.Exec(t, "UPDATE users SET passkey = 'alice-new' WHERE id = 1")
	wait("passkey change", func() bool {
		_, oldOK := user(alice)()
		u, newOK := user("alice-new")()
		return !oldOK && newOK && u.ID == 1
	})
	// Flags.
	e.db.Exec(t, "UPDATE users SET can_leech = false, protected = true WHERE id = 2")
	wait("flags", func() bool { u, ok := user(bob)(); return ok && !u.CanLeech && u.Protected })
	// Disabling and deleting both forget the user.
	e.db.Exec(t, "UPDATE users SET enabled = false WHERE id = 2")
	wait("disabled user forgotten", func() bool { _, ok := user(bob)(); return !ok })
	e.db.Exec(t, "UPDATE users SET enabled = true WHERE id = 2")
	wait("enabled again", func() bool { _, ok := user(bob)(); return ok })
	e.db.Exec(t, "DELETE FROM users WHERE id = 3")
	wait("deleted user forgotten", func() bool { _, ok := user(noleech)(); return !ok })

	// Torrents: leech state, multipliers, a new v2 hash, deletion.
	e.db.Exec(t, "UPDATE torrents SET leech = 'free', up_multiplier = 3 WHERE id = 1")
	wait("freeleech", func() bool {
		tr, ok := e.policy.Torrent(normalHash)
		return ok && tr.Leech == storage.Free && tr.UpMultiplier == 3
	})
	e.db.Exec(t, "UPDATE torrents SET info_hash_v2 = decode($1, 'hex') WHERE id = 1", hexHash(hash(0x77)))
	wait("v2 hash", func() bool { tr, ok := e.policy.Torrent(hash(0x77)); return ok && tr.ID == 1 })
	e.db.Exec(t, "DELETE FROM torrents WHERE id = 3")
	wait("deleted torrent forgotten", func() bool { _, ok := e.policy.Torrent(neutralHash); return !ok })
	if err := e.announce(ann{passkey: protected, hash: neutralHash, peer: 4}); err == nil || err.Error() != "Unregistered torrent" {
		t.Errorf("announce for the deleted torrent: %v", err)
	}

	// Tokens: granted, expired, deleted.
	e.db.Exec(t, "INSERT INTO tokens (user_id, torrent_id) VALUES (4, 2)")
	wait("token granted", func() bool { return len(e.policy.TokenHolders(2)) == 1 })
	e.db.Exec(t, "UPDATE tokens SET expired = true WHERE user_id = 4")
	wait("token expired", func() bool { return len(e.policy.TokenHolders(2)) == 0 })
	e.db.Exec(t, "DELETE FROM tokens WHERE user_id = 2")
	wait("token deleted", func() bool { return len(e.policy.TokenHolders(1)) == 0 })

	// The whitelist: a client off the list is refused.
	e.db.Exec(t, "INSERT INTO client_whitelist (prefix) VALUES ('-qB')")
	wait("whitelist", func() bool { return e.announce(ann{passkey: protected, hash: freeHash, peer: 4}) != nil })
	e.db.Exec(t, "TRUNCATE client_whitelist")
	wait("whitelist emptied", func() bool { return e.announce(ann{passkey: protected, hash: freeHash, peer: 4}) == nil })

	// A payload the driver does not understand changes nothing and
	// stops nothing.
	e.db.Exec(t, `SELECT pg_notify('chihaya', 'not json'), pg_notify('chihaya', '{"table":"nonsense","id":1}')`)
	e.db.Exec(t, "INSERT INTO users (id, passkey) VALUES (30, 'dave')")
	wait("a change after bad payloads", func() bool { _, ok := user("dave")(); return ok })
}

// A burst larger than the driver fetches row by row (a mass insert)
// reloads everything instead.
func TestNotifyBurst(t *testing.T) {
	t.Parallel()
	e := newEnv(t, newFixtures(t), nil)
	e.watch()
	e.db.Exec(t, "INSERT INTO users (id, passkey) SELECT i, 'burst' || i FROM generate_series(1000, 4000) i")
	eventually(t, 5*time.Second, "3,001 new users", func() error {
		for _, id := range []int{1000, 2500, 4000} {
			if _, ok := e.policy.User(fmt.Sprint("burst", id)); !ok {
				return fmt.Errorf("user %d unknown", id)
			}
		}
		return nil
	})
}

// When the LISTEN connection is killed, Watch connects again and reloads,
// so a change made while it was away is not lost.
func TestWatchReconnects(t *testing.T) {
	t.Parallel()
	e := newEnv(t, newFixtures(t), map[string]any{"timeout": "2s"})
	e.watch()
	var killed int64
	eventually(t, 2*time.Second, "terminate the LISTEN session", func() error {
		killed = e.db.Int(t, `SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity
			WHERE datname = current_database() AND query LIKE 'LISTEN%' AND pid <> pg_backend_pid()`)
		if killed == 0 {
			return errors.New("no LISTEN session yet")
		}
		return nil
	})
	e.db.Exec(t, "INSERT INTO users (id, passkey) VALUES (40, 'erin')")
	took := eventually(t, 5*time.Second, "the change made while reconnecting", func() error {
		if _, ok := e.policy.User("erin"); !ok {
			return errors.New("erin unknown")
		}
		return nil
	})
	t.Logf("applied %v after the LISTEN session was killed", took)
	e.db.Exec(t, "INSERT INTO users (id, passkey) VALUES (41, 'frank')")
	eventually(t, 2*time.Second, "a change after reconnecting", func() error {
		if _, ok := e.policy.User("frank"); !ok {
			return errors.New("frank unknown")
		}
		return nil
	})
}

// Watch without Start (no early LISTEN) reloads once it listens, so
// nothing between the caller's Load and Watch is missed; Close stops it.
func TestWatchWithoutStartAndClose(t *testing.T) {
	t.Parallel()
	db := newFixtures(t)
	e := newEnv(t, db, nil)
	s := db.Open(t, nil) // a second store, never started
	e.db.Exec(t, "INSERT INTO users (id, passkey) VALUES (50, 'gina')")
	done := make(chan error, 1)
	go func() { done <- s.Watch(context.Background(), e.policy) }()
	eventually(t, 2*time.Second, "the change made before Watch", func() error {
		if _, ok := e.policy.User("gina"); !ok {
			return errors.New("gina unknown")
		}
		return nil
	})
	s.Close()
	select {
	case err := <-done:
		if err != nil {
			t.Errorf("Watch after Close: %v", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("Watch still running 5s after Close")
	}
}

// A channel of one's own and custom triggers: the channel setting is what
// is listened to.
func TestWatchChannel(t *testing.T) {
	t.Parallel()
	db := newFixtures(t)
	e := newEnv(t, db, map[string]any{"channel": "Tracker Changes"})
	e.watch()
	e.db.Exec(t, "INSERT INTO users (id, passkey) VALUES (60, 'hank')")
	time.Sleep(300 * time.Millisecond)
	if _, ok := e.policy.User("hank"); ok {
		t.Fatal("a notification on chihaya reached a store listening on another channel")
	}
	e.db.Exec(t, `SELECT pg_notify('Tracker Changes', '{"table":"users","op":"upsert","id":60}')`)
	eventually(t, 2*time.Second, "the notification on the configured channel", func() error {
		if _, ok := e.policy.User("hank"); !ok {
			return errors.New("hank unknown")
		}
		return nil
	})
}
