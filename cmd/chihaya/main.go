// Command chihaya runs the BitTorrent tracker. It only wires the pieces
// together: configuration, the chosen cache and storage drivers, the
// tracker logic, the frontends and the admin server.
package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"runtime"
	"runtime/debug"
	"syscall"
	"time"

	"github.com/chihaya/chihaya/admin"
	"github.com/chihaya/chihaya/cache"
	_ "github.com/chihaya/chihaya/cache/memory"
	_ "github.com/chihaya/chihaya/cache/redis"
	"github.com/chihaya/chihaya/config"
	httpfrontend "github.com/chihaya/chihaya/frontend/http"
	udpfrontend "github.com/chihaya/chihaya/frontend/udp"
	"github.com/chihaya/chihaya/metrics"
	_ "github.com/chihaya/chihaya/storage/gazelle"
	_ "github.com/chihaya/chihaya/storage/postgres"
	"github.com/chihaya/chihaya/tracker"
)

// version is set at build time with -ldflags "-X main.version=v1.2.3";
// otherwise the module version Go recorded, or "devel".
var version = ""

func main() {
	if status, ok := runSubcommand(os.Args[1:]); ok {
		os.Exit(status)
	}
	os.Exit(mainStatus(os.Args[1:], os.Stdout, os.Stderr))
}

// mainStatus parses the flags and runs the tracker, returning the exit
// status.
func mainStatus(args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("chihaya", flag.ContinueOnError)
	fs.SetOutput(stderr)
	configPath := fs.String("config", "", "path to the JSON configuration file; without it the built-in defaults run")
	showVersion := fs.Bool("version", false, "print the version and exit")
	checkConfig := fs.Bool("check-config", false, "validate the configuration (the -config file, or the defaults) and exit: 0 if it is valid, 1 with the error if not")
	fs.Usage = func() {
		fmt.Fprint(stderr, `usage: chihaya [-config FILE] [-check-config] [-version]
       chihaya migrate -config FILE

chihaya is a BitTorrent tracker. Without -config it runs on the built-in
defaults: HTTP and UDP on :6969, admin server on 127.0.0.1:6880, memory
cache, open tracker.

Signals: SIGINT/SIGTERM stop gracefully (pending statistics are written);
SIGHUP re-reads the configuration file; SIGUSR1 reloads a private
tracker's data from storage.

Flags:
`)
		fs.PrintDefaults()
		fmt.Fprint(stderr, `
Subcommands:
  migrate   create or update the storage driver's schema (postgres)
`)
	}
	if err := fs.Parse(args); err != nil {
		return 2
	}
	if fs.NArg() > 0 {
		fmt.Fprintf(stderr, "chihaya: unexpected argument %q\n", fs.Arg(0))
		fs.Usage()
		return 2
	}
	if *showVersion {
		fmt.Fprintln(stdout, "chihaya", buildVersion())
		return 0
	}
	cfg, err := loadConfig(*configPath)
	if err != nil {
		fmt.Fprintln(stderr, "chihaya:", err)
		return 1
	}
	if *checkConfig {
		fmt.Fprintln(stdout, "configuration OK")
		return 0
	}
	if err := run(*configPath, cfg); err != nil {
		fmt.Fprintln(stderr, "chihaya:", err)
		return 1
	}
	return 0
}

func buildVersion() string {
	if version != "" {
		return version
	}
	if info, ok := debug.ReadBuildInfo(); ok && info.Main.Version != "" && info.Main.Version != "(devel)" {
		return info.Main.Version
	}
	return "devel"
}

func loadConfig(path string) (*config.Config, error) {
	if path == "" {
		return config.Default(), nil
	}
	return config.Load(path)
}

// shutdowner is a server that stops gracefully.
type shutdowner interface {
	Shutdown(context.Context) error
}

func run(configPath string, cfg *config.Config) error {
	var level slog.LevelVar
	l, _ := config.ParseLogLevel(cfg.LogLevel)
	level.Set(l)
	log := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: &level}))
	applyMemoryLimit(cfg.MemoryLimit, log)
	m := metrics.New(buildVersion())

	swarms, err := cache.Open(cfg.Cache.Name, cfg.Cache.Config, cache.Options{PeerLifetime: cfg.Tracker.PeerLifetime.D(), Log: log.With("cache", cfg.Cache.Name)})
	if err != nil {
		return fmt.Errorf("cache: %w", err)
	}
	defer closeLogged(log, "cache", swarms.Close)

	t := tracker.New(trackerConfig(cfg), m.TimeSwarms(swarms))
	lists := newHashLists(t, log)
	if err := lists.load(cfg.Tracker); err != nil {
		return err
	}

	ctx, stopBackground := context.WithCancel(context.Background())
	defer stopBackground()
	var site *private
	if cfg.Storage.Name != "" {
		if site, err = startPrivate(ctx, cfg, t, swarms, log); err != nil {
			return err
		}
		defer site.close(cfg.ShutdownTimeout.D())
		m.RegisterFlusher(site.flusher)
	}

	var frontends []shutdowner
	// tlsFrontend is the HTTP frontend when it serves TLS, for SIGHUP.
	var tlsFrontend *httpfrontend.Frontend
	if cfg.HTTP.Enabled {
		proxies, _ := config.ParsePrefixes(cfg.HTTP.TrustedProxies)
		hc := httpfrontend.Config{
			Addr:           cfg.HTTP.Listen,
			ReadTimeout:    cfg.HTTP.ReadTimeout.D(),
			WriteTimeout:   cfg.HTTP.WriteTimeout.D(),
			IdleTimeout:    cfg.HTTP.IdleTimeout.D(),
			MaxHeaderBytes: cfg.HTTP.MaxHeaderBytes,
			MaxConnections: cfg.HTTP.MaxConnections,
			MaxInflight:    cfg.HTTP.MaxInflight,
			AllowIPParam:   cfg.HTTP.AllowIPParam,
			TrustedProxies: proxies,
			RealIPHeader:   cfg.HTTP.RealIPHeader,
			TLSCertFile:    cfg.HTTP.TLSCertFile,
			TLSKeyFile:     cfg.HTTP.TLSKeyFile,
			Observer:       m.Observer("http"),
			// An in-process cache answers without waiting, so the
			// accept loops may answer one-shot connections.
			InlineAnswers: !remoteCache(swarms),
		}
		if site != nil {
			hc.Site = site.handler
		}
		fe := httpfrontend.New(t, hc, log.With("frontend", "http"))
		addr, err := fe.ListenAndServe()
		if err != nil {
			return fmt.Errorf("http.listen: %w", err)
		}
		if hc.TLSCertFile != "" {
			tlsFrontend = fe
		}
		log.Info("serving HTTP announces", "addr", addr.String())
		frontends = append(frontends, fe)
	}
	if cfg.UDP.Enabled {
		key, _ := config.ParseKey(cfg.UDP.ConnectionIDKey)
		fe := udpfrontend.New(t, udpfrontend.Config{
			Addr:                cfg.UDP.Listen,
			Readers:             udpReaders(cfg.UDP.Readers, swarms),
			SpareProc:           cfg.UDP.SpareProc,
			ConnIDKey:           key,
			ConnIDLifetime:      cfg.UDP.ConnectionIDLifetime.D(),
			AllowIPParam:        cfg.UDP.AllowIPParam,
			MaxNumWant:          cfg.UDP.MaxNumWant,
			MaxScrapeInfoHashes: cfg.UDP.MaxScrapeInfoHashes,
			Observer:            m.Observer("udp"),
		}, log.With("frontend", "udp"))
		addr, err := fe.ListenAndServe()
		if err != nil {
			return fmt.Errorf("udp.listen: %w", err)
		}
		log.Info("serving UDP announces", "addr", addr.String())
		frontends = append(frontends, fe)
	}
	if cfg.Admin.Enabled {
		ac := admin.Config{
			Addr:     cfg.Admin.Listen,
			Version:  buildVersion(),
			Pprof:    cfg.Admin.Pprof,
			Registry: m.Registry,
			Tracker:  m,
		}
		if w, ok := swarms.(cache.Walker); ok {
			ac.Walker = w
			ac.Totals = metrics.NewTotals(w, 10*time.Second)
			m.RegisterTotals(ac.Totals)
		}
		if p, ok := swarms.(cache.Pinger); ok {
			ac.Checks = append(ac.Checks, admin.Check{Name: "cache " + cfg.Cache.Name, Pinger: p})
		}
		if site != nil {
			ac.Pending = site.flusher.Pending
			if p, ok := site.store.(admin.Pinger); ok {
				ac.Checks = append(ac.Checks, admin.Check{Name: "storage " + cfg.Storage.Name, Pinger: p})
			}
		}
		srv := admin.New(ac, log.With("server", "admin"))
		addr, err := srv.ListenAndServe()
		if err != nil {
			return fmt.Errorf("admin.listen: %w", err)
		}
		log.Info("serving the admin endpoints", "addr", addr.String())
		frontends = append(frontends, srv)
	}

	signals := make(chan os.Signal, 1)
	signal.Notify(signals, syscall.SIGINT, syscall.SIGTERM, syscall.SIGHUP, syscall.SIGUSR1)
	for sig := range signals {
		switch sig {
		case syscall.SIGUSR1:
			if site != nil {
				go site.reload(ctx)
			}
			continue
		case syscall.SIGHUP:
			cfg = reloadConfig(configPath, cfg, &level, t, lists, site, log)
			if tlsFrontend != nil {
				// Renewed certificates are taken up without a
				// restart, from the files the tracker started with.
				if err := tlsFrontend.ReloadCertificate(); err != nil {
					log.Error("TLS certificate not reloaded; serving the running one", "err", err)
				} else {
					log.Info("TLS certificate reloaded")
				}
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
			log.Warn("server did not stop cleanly", "err", err)
		}
	}
	return nil
}

// udpReaders picks the number of UDP reader goroutines: the configured
// number, or by default one per CPU for an in-process cache and 32 per CPU
// for one behind a network (a cache.Pinger), since each reader waits out a
// round trip per packet and only many of them keep the CPUs busy.
func udpReaders(configured int, swarms cache.Store) int {
	if configured > 0 {
		return configured
	}
	if remoteCache(swarms) {
		return 32 * runtime.GOMAXPROCS(0)
	}
	return runtime.GOMAXPROCS(0)
}

// remoteCache reports whether announces wait on the network for the cache
// (a driver that can be pinged is a server elsewhere).
func remoteCache(swarms cache.Store) bool {
	_, remote := swarms.(cache.Pinger)
	return remote
}

func trackerConfig(cfg *config.Config) tracker.Config {
	return tracker.Config{
		AnnounceInterval:    cfg.Tracker.AnnounceInterval.D(),
		MinAnnounceInterval: cfg.Tracker.MinAnnounceInterval.D(),
		AnnounceJitter:      cfg.Tracker.AnnounceJitter.D(),
		DefaultNumWant:      cfg.Tracker.DefaultNumWant,
		MaxNumWant:          cfg.Tracker.MaxNumWant,
		MaxScrapeInfoHashes: cfg.Tracker.MaxScrapeInfoHashes,

		MinPort:               uint16(cfg.Tracker.MinPort),
		BlockedPeerIDPrefixes: cfg.Tracker.BlockedPeerIDPrefixes,
		BadRequestsPerMinute:  cfg.Tracker.RateLimit.BadRequestsPerMinute,
		AnnouncesPerMinute:    cfg.Tracker.RateLimit.AnnouncesPerMinute,
	}
}

func closeLogged(log *slog.Logger, what string, closeFn func() error) {
	start := time.Now()
	if err := closeFn(); err != nil {
		log.Error("closing failed", "what", what, "err", err)
		return
	}
	log.Debug("closed", "what", what, "took", time.Since(start))
}
