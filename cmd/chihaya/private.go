package main

import (
	"context"
	"fmt"
	"log/slog"
	"net/http"
	"time"

	"github.com/chihaya/chihaya/cache"
	"github.com/chihaya/chihaya/config"
	"github.com/chihaya/chihaya/storage"
	"github.com/chihaya/chihaya/tracker"
)

// private is a private tracker's storage side: the driver, the flusher that
// writes statistics to it, and the reloads that keep the policy current.
type private struct {
	store   storage.Storage
	flusher *storage.Flusher
	policy  *tracker.Private
	log     *slog.Logger
	// handler serves the web application's calls on the HTTP port, if
	// the driver has such an interface.
	handler http.Handler
	// reloadEvery changes the periodic reload's interval (0: off).
	reloadEvery chan time.Duration
}

// deletionMessenger is implemented by drivers whose web application gives
// reasons for deleting torrents.
type deletionMessenger interface {
	DeletionMessage(reason int) string
}

func startPrivate(ctx context.Context, cfg *config.Config, t *tracker.Tracker, swarms cache.Store, log *slog.Logger) (*private, error) {
	sc := cfg.Storage
	log = log.With("storage", sc.Name)
	store, err := storage.Open(sc.Name, sc.Config)
	if err != nil {
		return nil, fmt.Errorf("storage: %w", err)
	}
	p := &private{store: store, log: log}
	loadCtx, cancel := context.WithTimeout(ctx, 5*time.Minute)
	defer cancel()
	if s, ok := store.(storage.Starter); ok {
		if err := s.Start(loadCtx); err != nil {
			store.Close()
			return nil, fmt.Errorf("storage: preparing the database: %w", err)
		}
	}
	start := time.Now()
	snap, err := store.Load(loadCtx)
	if err != nil {
		store.Close()
		return nil, fmt.Errorf("storage: loading: %w", err)
	}
	log.Info("loaded", "users", len(snap.Users), "torrents", len(snap.Torrents), "tokens", len(snap.Tokens), "whitelist", len(snap.Whitelist), "took", time.Since(start).Round(time.Millisecond))

	p.flusher = storage.NewFlusher(store, storage.FlusherConfig{
		Interval:    sc.FlushInterval.D(),
		Timeout:     sc.WriteTimeout.D(),
		MaxBackoff:  sc.MaxRetryInterval.D(),
		MaxPeerRows: sc.MaxPendingPeerRows,
	}, log)
	pc := tracker.PrivateConfig{
		PeerLifetime:   cfg.Tracker.PeerLifetime.D(),
		DeletionMemory: sc.DeletionReasonLifetime.D(),
	}
	if m, ok := store.(deletionMessenger); ok {
		pc.DeletionMessage = m.DeletionMessage
	}
	p.policy = tracker.NewPrivate(t, pc, p.flusher)
	p.policy.Replace(snap)
	p.flusher.Start()
	go p.policy.Run(ctx, time.Minute)

	if h, ok := store.(storage.SiteHandler); ok {
		// With a cache several instances share, what the site pushes to
		// one of them reaches the others through it; watchers below
		// keep the bare policy, as every instance watches for itself.
		var policy storage.Policy = p.policy
		if b, ok := swarms.(cache.Broadcaster); ok {
			shared := tracker.NewSharedPolicy(p.policy, b, tracker.SharedConfig{Resync: func() { p.reload(ctx) }, Log: log})
			go func() {
				if err := shared.Run(ctx); err != nil && ctx.Err() == nil {
					log.Error("passing site changes between instances stopped", "err", err)
				}
			}()
			policy = shared
			log.Info("site changes are passed on to the other instances sharing the cache", "instance", shared.ID())
		}
		p.handler = h.SiteHandler(policy)
	}
	if w, ok := store.(storage.Watcher); ok {
		go func() {
			if err := w.Watch(ctx, p.policy); err != nil && ctx.Err() == nil {
				log.Error("watching the database for changes stopped; periodic reloads continue", "err", err)
			}
		}()
	}
	p.reloadEvery = make(chan time.Duration, 1)
	go p.reloadLoop(ctx, sc.ReloadInterval.D())
	return p, nil
}

// reloadLoop reloads every interval (never while it is 0) until ctx ends;
// setReloadInterval changes the interval.
func (p *private) reloadLoop(ctx context.Context, every time.Duration) {
	ticker := time.NewTicker(time.Hour)
	defer ticker.Stop()
	apply := func(d time.Duration) {
		ticker.Stop()
		if d > 0 {
			ticker.Reset(d)
		}
	}
	apply(every)
	for {
		select {
		case <-ctx.Done():
			return
		case d := <-p.reloadEvery:
			apply(d)
		case <-ticker.C:
			p.reload(ctx)
		}
	}
}

// setReloadInterval changes the periodic reload's interval.
func (p *private) setReloadInterval(every time.Duration) {
	select {
	case <-p.reloadEvery: // a change not yet taken is replaced
	default:
	}
	p.reloadEvery <- every
}

// reload reads users, torrents, tokens and the whitelist again and applies
// them as a diff; a failed load keeps what is in memory.
func (p *private) reload(ctx context.Context) {
	start := time.Now()
	ctx, cancel := context.WithTimeout(ctx, 5*time.Minute)
	defer cancel()
	snap, err := p.store.Load(ctx)
	if err != nil {
		p.log.Error("reload failed; keeping the data in memory", "err", err)
		return
	}
	p.policy.Replace(snap)
	p.log.Info("reloaded", "users", len(snap.Users), "torrents", len(snap.Torrents), "took", time.Since(start).Round(time.Millisecond))
}

// close writes what is pending, then closes the driver.
func (p *private) close(timeout time.Duration) {
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	if err := p.flusher.Close(ctx); err != nil {
		p.log.Error("statistics lost at shutdown", "err", err)
	}
	closeLogged(p.log, "storage", p.store.Close)
}
