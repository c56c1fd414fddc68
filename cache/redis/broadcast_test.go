package redis

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/chihaya/chihaya/cache"
)

// subscriber collects what a subscription delivers.
type subscriber struct {
	msgs       chan string
	subscribed chan struct{}
	done       chan error
}

// subscribe subscribes b until the test ends (or cancel is called) and
// waits for the subscription to be in place.
func subscribe(t *testing.T, ctx context.Context, b cache.Broadcaster) *subscriber {
	t.Helper()
	s := &subscriber{msgs: make(chan string, 100), subscribed: make(chan struct{}, 10), done: make(chan error, 1)}
	go func() {
		s.done <- b.Subscribe(ctx, func(msg []byte) { s.msgs <- string(msg) }, func() { s.subscribed <- struct{}{} })
	}()
	s.waitSubscribed(t, 5*time.Second)
	return s
}

func (s *subscriber) waitSubscribed(t *testing.T, within time.Duration) {
	t.Helper()
	select {
	case <-s.subscribed:
	case err := <-s.done:
		t.Fatalf("Subscribe returned %v before subscribing", err)
	case <-time.After(within):
		t.Fatalf("not subscribed after %v", within)
	}
}

// expect waits for the next messages and checks them.
func (s *subscriber) expect(t *testing.T, want ...string) {
	t.Helper()
	for _, w := range want {
		select {
		case got := <-s.msgs:
			if got != w {
				t.Fatalf("received %q, want %q", got, w)
			}
		case <-time.After(time.Second):
			t.Fatalf("no message within 1s, want %q", w)
		}
	}
}

// TestBroadcast: a message published by one store reaches every store
// under the same key prefix, the publisher's own subscription included,
// in order and byte for byte; a store under another prefix hears nothing.
func TestBroadcast(t *testing.T) {
	addr := sharedRedis(t)
	addrs := []string{addr}
	prefix := testPrefix(t, addrs, false)
	other := testPrefix(t, addrs, false)
	opts := cache.Options{PeerLifetime: time.Minute}
	a := openStore(t, addrs, false, prefix, opts, "")
	b := openStore(t, addrs, false, prefix, opts, "")
	c := openStore(t, addrs, false, other, opts, "")
	for _, st := range []cache.Store{a, b, c} {
		defer st.Close()
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	subA := subscribe(t, ctx, a.(cache.Broadcaster))
	subB := subscribe(t, ctx, b.(cache.Broadcaster))
	subC := subscribe(t, ctx, c.(cache.Broadcaster))

	msgs := []string{"one", "", "\x00\xff binary \n", `{"json":true}`}
	for _, m := range msgs {
		if err := a.(cache.Broadcaster).Publish(ctx, []byte(m)); err != nil {
			t.Fatal(err)
		}
	}
	subB.expect(t, msgs...)
	subA.expect(t, msgs...)
	if err := c.(cache.Broadcaster).Publish(ctx, []byte("for c only")); err != nil {
		t.Fatal(err)
	}
	// c's own message arrives after anything a or b published before
	// it would have.
	subC.expect(t, "for c only")
	select {
	case m := <-subB.msgs:
		t.Errorf("a store under another prefix's message reached b: %q", m)
	case <-time.After(100 * time.Millisecond):
	}

	// Subscribe returns when its context ends, and when the store is
	// closed.
	cancel()
	for _, s := range []*subscriber{subA, subB} {
		select {
		case err := <-s.done:
			if !errors.Is(err, context.Canceled) {
				t.Errorf("Subscribe returned %v after its context ended, want context.Canceled", err)
			}
		case <-time.After(2 * time.Second):
			t.Fatal("Subscribe still running 2s after its context ended")
		}
	}
	c.Close()
	select {
	case err := <-subC.done:
		// subC's context ended too; either reason will do, as long as
		// it returns.
		if err == nil {
			t.Error("Subscribe returned nil")
		}
	case <-time.After(2 * time.Second):
		t.Fatal("Subscribe still running 2s after the store was closed")
	}
}

// TestBroadcastClose: Subscribe returns when the store closes, whatever
// its context.
func TestBroadcastClose(t *testing.T) {
	addr := sharedRedis(t)
	addrs := []string{addr}
	st := openStore(t, addrs, false, testPrefix(t, addrs, false), cache.Options{}, "")
	s := subscribe(t, context.Background(), st.(cache.Broadcaster))
	closed := make(chan struct{})
	go func() { st.Close(); close(closed) }()
	select {
	case err := <-s.done:
		if !errors.Is(err, errClosed) {
			t.Errorf("Subscribe returned %v after Close, want %v", err, errClosed)
		}
	case <-time.After(3 * time.Second):
		t.Fatal("Subscribe still running 3s after Close")
	}
	select {
	case <-closed:
	case <-time.After(3 * time.Second):
		t.Fatal("Close did not return")
	}
}

// TestBroadcastReconnect kills and restarts a test-owned Redis: publishing
// fails while it is gone, and the subscription comes back by itself,
// saying so, and delivers again.
func TestBroadcastReconnect(t *testing.T) {
	requireRedisServer(t)
	srv := startServer(t, t.TempDir(), freePorts(t, 1)[0])
	addrs := []string{srv.addr()}
	opts := cache.Options{PeerLifetime: time.Minute}
	cfg := `"dial_timeout": "200ms", "read_timeout": "200ms", "write_timeout": "200ms"`
	a := openStore(t, addrs, false, "p:", opts, cfg)
	b := openStore(t, addrs, false, "p:", opts, cfg)
	defer a.Close()
	defer b.Close()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	sub := subscribe(t, ctx, b.(cache.Broadcaster))
	pub := a.(cache.Broadcaster)
	if err := pub.Publish(ctx, []byte("before")); err != nil {
		t.Fatal(err)
	}
	sub.expect(t, "before")

	srv.kill()
	if err := pub.Publish(ctx, []byte("lost")); err == nil {
		t.Error("Publish succeeded with Redis gone")
	}
	time.Sleep(500 * time.Millisecond) // a few failed attempts to subscribe
	srv.start(t)
	begin := time.Now()
	sub.waitSubscribed(t, 10*time.Second)
	t.Logf("subscribed again %v after the restart", time.Since(begin).Round(time.Millisecond))
	for i := range 50 {
		// The publisher's connection may still be re-dialling.
		if err := pub.Publish(ctx, []byte("after")); err == nil {
			break
		} else if i == 49 {
			t.Fatalf("Publish after the restart: %v", err)
		}
		time.Sleep(100 * time.Millisecond)
	}
	sub.expect(t, "after")
	select {
	case m := <-sub.msgs:
		t.Errorf("unexpected message %q", m)
	default:
	}
}
