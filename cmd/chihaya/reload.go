package main

import (
	"bufio"
	"bytes"
	"encoding/json"
	"fmt"
	"log/slog"
	"os"
	"strings"

	"github.com/chihaya/chihaya/bittorrent"
	"github.com/chihaya/chihaya/config"
	"github.com/chihaya/chihaya/tracker"
)

// hashLists loads the open tracker's info-hash allow or deny list into the
// tracker.
type hashLists struct {
	t   *tracker.Tracker
	log *slog.Logger
}

func newHashLists(t *tracker.Tracker, log *slog.Logger) *hashLists {
	return &hashLists{t: t, log: log}
}

// load reads the list the configuration names (or removes it).
func (h *hashLists) load(tc config.Tracker) error {
	if tc.InfoHashList == "" {
		h.t.SetHashList(nil)
		return nil
	}
	hashes, err := readHashList(tc.InfoHashList)
	if err != nil {
		return fmt.Errorf("tracker.infohash_list: %w", err)
	}
	h.t.SetHashList(&tracker.HashList{Allow: tc.InfoHashListMode == "allow", Hashes: hashes})
	h.log.Info("info-hash list loaded", "file", tc.InfoHashList, "mode", tc.InfoHashListMode, "hashes", len(hashes))
	return nil
}

// readHashList reads one info hash (40 hex digits) a line; blank lines and
// lines starting with # are skipped.
func readHashList(path string) (map[bittorrent.InfoHash]struct{}, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	hashes := map[bittorrent.InfoHash]struct{}{}
	sc := bufio.NewScanner(f)
	for n := 1; sc.Scan(); n++ {
		line := strings.TrimSpace(sc.Text())
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		h, err := bittorrent.ParseInfoHash(line)
		if err != nil {
			return nil, fmt.Errorf("%s:%d: %v", path, n, err)
		}
		hashes[h] = struct{}{}
	}
	if err := sc.Err(); err != nil {
		return nil, err
	}
	return hashes, nil
}

// reloadConfig re-reads the configuration file on SIGHUP and applies what
// can change without dropping state: the tracker's intervals and limits,
// the log level, the info-hash list and the storage reload interval. An
// invalid file is logged and the running configuration kept. It returns
// the configuration in force.
func reloadConfig(path string, old *config.Config, level *slog.LevelVar, t *tracker.Tracker, lists *hashLists, site *private, log *slog.Logger) *config.Config {
	if path == "" {
		log.Warn("SIGHUP ignored: the tracker runs on the built-in defaults, there is no file to re-read")
		return old
	}
	cfg, err := config.Load(path)
	if err != nil {
		log.Error("configuration not reloaded; keeping the running one", "err", err)
		return old
	}
	if err := lists.load(cfg.Tracker); err != nil {
		log.Error("configuration not reloaded; keeping the running one", "err", err)
		return old
	}
	l, _ := config.ParseLogLevel(cfg.LogLevel)
	level.Set(l)
	applyMemoryLimit(cfg.MemoryLimit, log)
	t.Reconfigure(trackerConfig(cfg))
	if site != nil {
		site.setReloadInterval(cfg.Storage.ReloadInterval.D())
	}
	for _, key := range needRestart(old, cfg) {
		log.Warn("configuration change needs a restart to take effect", "key", key)
	}
	// What did not apply keeps its running value, so that a later reload
	// compares against what really runs.
	applied := *cfg
	applied.HTTP, applied.UDP, applied.Admin, applied.Cache = old.HTTP, old.UDP, old.Admin, old.Cache
	applied.Storage.Name, applied.Storage.Config = old.Storage.Name, old.Storage.Config
	applied.Storage.FlushInterval, applied.Storage.WriteTimeout = old.Storage.FlushInterval, old.Storage.WriteTimeout
	applied.Storage.MaxRetryInterval, applied.Storage.MaxPendingPeerRows = old.Storage.MaxRetryInterval, old.Storage.MaxPendingPeerRows
	applied.Storage.DeletionReasonLifetime = old.Storage.DeletionReasonLifetime
	applied.Tracker.PeerLifetime = old.Tracker.PeerLifetime
	log.Info("configuration reloaded", "file", path)
	return &applied
}

// needRestart names the sections whose changes only a restart applies.
func needRestart(old, cfg *config.Config) []string {
	var keys []string
	differ := func(key string, a, b any) {
		ja, _ := json.Marshal(a)
		jb, _ := json.Marshal(b)
		if !bytes.Equal(ja, jb) {
			keys = append(keys, key)
		}
	}
	differ("http", old.HTTP, cfg.HTTP)
	differ("udp", old.UDP, cfg.UDP)
	differ("admin", old.Admin, cfg.Admin)
	differ("cache", old.Cache, cfg.Cache)
	differ("storage.driver", old.Storage.Name, cfg.Storage.Name)
	differ("storage.config", old.Storage.Config, cfg.Storage.Config)
	differ("storage.flush_interval", old.Storage.FlushInterval, cfg.Storage.FlushInterval)
	differ("storage.write_timeout", old.Storage.WriteTimeout, cfg.Storage.WriteTimeout)
	differ("storage.max_retry_interval", old.Storage.MaxRetryInterval, cfg.Storage.MaxRetryInterval)
	differ("storage.max_pending_peer_rows", old.Storage.MaxPendingPeerRows, cfg.Storage.MaxPendingPeerRows)
	differ("storage.deletion_reason_lifetime", old.Storage.DeletionReasonLifetime, cfg.Storage.DeletionReasonLifetime)
	differ("tracker.peer_lifetime", old.Tracker.PeerLifetime, cfg.Tracker.PeerLifetime)
	return keys
}
