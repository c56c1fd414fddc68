package redis

import (
	"context"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/chihaya/chihaya/bittorrent"
	"github.com/chihaya/chihaya/cache"
)

// TestRedisFailure kills the store's Redis under a steady announce load,
// starts it again, then freezes it: while Redis is gone or silent,
// announces fail within the timeouts instead of hanging, and once it is
// back they succeed again through the same store.
func TestRedisFailure(t *testing.T) {
	requireRedisServer(t)
	srv := startServer(t, t.TempDir(), freePorts(t, 1)[0])
	addrs := []string{srv.addr()}
	s := openStore(t, addrs, false, testPrefix(t, addrs, false), cache.Options{},
		`"dial_timeout": "200ms", "read_timeout": "300ms", "write_timeout": "300ms"`)
	defer s.Close()

	// The bound every call must meet, down or not: well above the
	// timeouts, far below a hang.
	const bound = 2 * time.Second
	type outcome struct {
		at  time.Time
		err error
	}
	var (
		mu       sync.Mutex
		outcomes []outcome
		slowest  time.Duration
	)
	stop := make(chan struct{})
	var wg sync.WaitGroup
	for w := range 8 {
		wg.Go(func() {
			h := bittorrent.InfoHash{byte(w)}
			for i := 0; ; i++ {
				select {
				case <-stop:
					return
				default:
				}
				a := peer(h, i%20)
				var r cache.Result
				begin := time.Now()
				err := s.Announce(context.Background(), &a, &r)
				d := time.Since(begin)
				mu.Lock()
				outcomes = append(outcomes, outcome{begin, err})
				slowest = max(slowest, d)
				mu.Unlock()
				if err != nil {
					// A client that failed retries later, not in a
					// tight loop.
					time.Sleep(10 * time.Millisecond)
				}
			}
		})
	}
	// count returns the successes and failures of calls started in
	// [from, to).
	count := func(from, to time.Time) (ok, failed int) {
		mu.Lock()
		defer mu.Unlock()
		for _, o := range outcomes {
			if o.at.Before(from) || !o.at.Before(to) {
				continue
			}
			if o.err == nil {
				ok++
			} else {
				failed++
			}
		}
		return ok, failed
	}
	// waitOK waits until calls started after from succeed again.
	waitOK := func(what string, from time.Time) {
		t.Helper()
		deadline := time.Now().Add(10 * time.Second)
		for {
			time.Sleep(100 * time.Millisecond)
			if ok, _ := count(from, time.Now()); ok > 0 {
				return
			}
			if time.Now().After(deadline) {
				t.Fatalf("%s: no announce succeeded within 10s", what)
			}
		}
	}
	defer func() {
		close(stop)
		wg.Wait()
		if slowest > bound {
			t.Errorf("the slowest announce took %v, above %v", slowest, bound)
		}
		t.Logf("%d announces, the slowest took %v", len(outcomes), slowest.Round(time.Millisecond))
	}()

	begin := time.Now()
	waitOK("at start", begin)

	// Killed: every call fails until the server is back.
	srv.kill()
	killed := time.Now()
	time.Sleep(time.Second)
	if ok, failed := count(killed.Add(100*time.Millisecond), time.Now()); ok > 0 || failed == 0 {
		t.Errorf("while Redis was down: %d announces succeeded, %d failed", ok, failed)
	}
	srv.start(t)
	restarted := time.Now()
	// The new server has neither the data nor the scripts: the store
	// loads them again by itself.
	waitOK("after the restart", restarted)

	// Frozen: connections stay open but nothing answers, which only the
	// timeouts can detect.
	if err := srv.cmd.Process.Signal(syscall.SIGSTOP); err != nil {
		t.Fatal(err)
	}
	frozen := time.Now()
	time.Sleep(1500 * time.Millisecond)
	_, failed := count(frozen, time.Now())
	if err := srv.cmd.Process.Signal(syscall.SIGCONT); err != nil {
		t.Fatal(err)
	}
	thawed := time.Now()
	if failed == 0 {
		t.Error("while Redis was frozen no announce failed")
	}
	waitOK("after the freeze", thawed)
	t.Logf("back %v after the restart", time.Since(restarted).Round(time.Millisecond))
}
