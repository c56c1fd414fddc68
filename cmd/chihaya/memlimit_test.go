package main

import (
	"log/slog"
	"runtime/debug"
	"strings"
	"testing"
	"time"

	"github.com/chihaya/chihaya/cache"
	_ "github.com/chihaya/chihaya/cache/memory"
	"github.com/chihaya/chihaya/config"
	"github.com/chihaya/chihaya/tracker"
)

// memory_limit reaches the runtime at start and on SIGHUP, and "0" gives
// back the limit the process started with.
func TestMemoryLimitAppliedAndReloaded(t *testing.T) {
	t.Cleanup(func() { debug.SetMemoryLimit(runtimeMemoryLimit) })
	log := slog.New(slog.DiscardHandler)

	start, err := config.Parse(strings.NewReader(`{"memory_limit": "512MiB"}`))
	if err != nil {
		t.Fatal(err)
	}
	applyMemoryLimit(start.MemoryLimit, log)
	if got := debug.SetMemoryLimit(-1); got != 512<<20 {
		t.Fatalf("limit %d after start, want 512 MiB", got)
	}

	store, err := cache.Open("memory", nil, cache.Options{PeerLifetime: time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { store.Close() })
	tr := tracker.New(trackerConfig(start), store)
	var level slog.LevelVar
	path := writeConfig(t, `{"memory_limit": "1GiB", "tracker": {"min_port": 1024, "rate_limit": {"announces_per_minute": 10}}}`)
	cfg := reloadConfig(path, start, &level, tr, newHashLists(tr, log), nil, log)
	if got := debug.SetMemoryLimit(-1); got != 1<<30 || cfg.MemoryLimit != 1<<30 {
		t.Fatalf("limit %d (config %d) after SIGHUP, want 1 GiB", got, cfg.MemoryLimit)
	}
	if cfg.Tracker.MinPort != 1024 || cfg.Tracker.RateLimit.AnnouncesPerMinute != 10 {
		t.Errorf("tracker limits not reloaded: %+v", cfg.Tracker)
	}

	path = writeConfig(t, `{"memory_limit": "0"}`)
	reloadConfig(path, cfg, &level, tr, newHashLists(tr, log), nil, log)
	if got := debug.SetMemoryLimit(-1); got != runtimeMemoryLimit {
		t.Fatalf("limit %d after memory_limit \"0\", want the runtime's own %d", got, runtimeMemoryLimit)
	}
}
