// Command chihaya runs the BitTorrent tracker. It only wires the pieces
// together: configuration, the chosen cache and storage drivers, the
// tracker logic and the frontends.
package main

import (
	"context"
	"flag"
	"fmt"
	"log/slog"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/chihaya/chihaya/cache"
	_ "github.com/chihaya/chihaya/cache/memory"
	_ "github.com/chihaya/chihaya/cache/redis"
	"github.com/chihaya/chihaya/config"
	httpfrontend "github.com/chihaya/chihaya/frontend/http"
	udpfrontend "github.com/chihaya/chihaya/frontend/udp"
	_ "github.com/chihaya/chihaya/storage/gazelle"
	_ "github.com/chihaya/chihaya/storage/postgres"
	"github.com/chihaya/chihaya/tracker"
)

func main() {
	if status, ok := runSubcommand(os.Args[1:]); ok {
		os.Exit(status)
	}
	configPath := flag.String("config", "", "path to the JSON configuration file; without it the built-in defaults run")
	flag.Parse()
	if err := run(*configPath); err != nil {
		fmt.Fprintln(os.Stderr, "chihaya:", err)
		os.Exit(1)
	}
}

func run(configPath string) error {
	cfg := config.Default()
	if configPath != "" {
		var err error
		if cfg, err = config.Load(configPath); err != nil {
			return err
		}
	}
	level, _ := config.ParseLogLevel(cfg.LogLevel)
	log := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: level}))

	swarms, err := cache.Open(cfg.Cache.Name, cfg.Cache.Config, cache.Options{PeerLifetime: cfg.Tracker.PeerLifetime.D()})
	if err != nil {
		return fmt.Errorf("cache: %w", err)
	}
	defer closeLogged(log, "cache", swarms.Close)

	t := tracker.New(tracker.Config{
		AnnounceInterval:    cfg.Tracker.AnnounceInterval.D(),
		MinAnnounceInterval: cfg.Tracker.MinAnnounceInterval.D(),
		AnnounceJitter:      cfg.Tracker.AnnounceJitter.D(),
		DefaultNumWant:      cfg.Tracker.DefaultNumWant,
		MaxNumWant:          cfg.Tracker.MaxNumWant,
		MaxScrapeInfoHashes: cfg.Tracker.MaxScrapeInfoHashes,
	}, swarms)

	ctx, stopBackground := context.WithCancel(context.Background())
	defer stopBackground()
	var site *private
	if cfg.Storage.Name != "" {
		if site, err = startPrivate(ctx, cfg, t, log); err != nil {
			return err
		}
		defer site.close(cfg.ShutdownTimeout.D())
	}

	var frontends []interface{ Shutdown(context.Context) error }
	if cfg.HTTP.Enabled {
		proxies, _ := config.ParsePrefixes(cfg.HTTP.TrustedProxies)
		hc := httpfrontend.Config{
			Addr:           cfg.HTTP.Listen,
			ReadTimeout:    cfg.HTTP.ReadTimeout.D(),
			WriteTimeout:   cfg.HTTP.WriteTimeout.D(),
			IdleTimeout:    cfg.HTTP.IdleTimeout.D(),
			MaxHeaderBytes: cfg.HTTP.MaxHeaderBytes,
			AllowIPParam:   cfg.HTTP.AllowIPParam,
			TrustedProxies: proxies,
			RealIPHeader:   cfg.HTTP.RealIPHeader,
		}
		if site != nil {
			hc.Site, hc.WrapListener = site.handler, site.wrapListener
		}
		fe := httpfrontend.New(t, hc, log.With("frontend", "http"))
		addr, err := fe.ListenAndServe()
		if err != nil {
			return fmt.Errorf("http.listen: %w", err)
		}
		log.Info("serving HTTP announces", "addr", addr.String())
		frontends = append(frontends, fe)
	}
	if cfg.UDP.Enabled {
		key, _ := config.ParseKey(cfg.UDP.ConnectionIDKey)
		fe := udpfrontend.New(t, udpfrontend.Config{
			Addr:                cfg.UDP.Listen,
			Readers:             cfg.UDP.Readers,
			ConnIDKey:           key,
			ConnIDLifetime:      cfg.UDP.ConnectionIDLifetime.D(),
			AllowIPParam:        cfg.UDP.AllowIPParam,
			MaxNumWant:          cfg.UDP.MaxNumWant,
			MaxScrapeInfoHashes: cfg.UDP.MaxScrapeInfoHashes,
		}, log.With("frontend", "udp"))
		addr, err := fe.ListenAndServe()
		if err != nil {
			return fmt.Errorf("udp.listen: %w", err)
		}
		log.Info("serving UDP announces", "addr", addr.String())
		frontends = append(frontends, fe)
	}

	signals := make(chan os.Signal, 1)
	signal.Notify(signals, syscall.SIGINT, syscall.SIGTERM, syscall.SIGUSR1)
	for sig := range signals {
		if sig == syscall.SIGUSR1 {
			if site != nil {
				go site.reload(ctx)
			}
			continue
		}
		log.Info("shutting down", "signal", sig.String())
		break
	}
	signal.Stop(signals)

	shutdown, cancel := context.WithTimeout(context.Background(), cfg.ShutdownTimeout.D())
	defer cancel()
	for _, fe := range frontends {
		if err := fe.Shutdown(shutdown); err != nil {
			log.Warn("frontend did not stop cleanly", "err", err)
		}
	}
	return nil
}

func closeLogged(log *slog.Logger, what string, closeFn func() error) {
	start := time.Now()
	if err := closeFn(); err != nil {
		log.Error("closing failed", "what", what, "err", err)
		return
	}
	log.Debug("closed", "what", what, "took", time.Since(start))
}
