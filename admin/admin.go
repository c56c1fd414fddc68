// Package admin is the operators' HTTP server, kept off the public announce
// port: Prometheus metrics, a JSON summary, liveness and readiness checks
// for load balancers and orchestrators, a full scrape of every swarm for
// indexers and the site, and, when switched on, Go's profiler.
package admin

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/http/pprof"
	"sort"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/chihaya/chihaya/bittorrent"
	"github.com/chihaya/chihaya/metrics"
	"github.com/chihaya/chihaya/storage"
)

// Counter reports the running request totals (metrics.Metrics).
type Counter interface {
	Counts() (announces, failures, scrapes uint64)
}

// Walker lists every swarm (cache.Walker).
type Walker interface {
	Walk(ctx context.Context, fn func(bittorrent.Scrape) error) error
}

// Pinger reports whether a store answers (cache.Pinger and the storage
// drivers' Ping).
type Pinger interface {
	Ping(ctx context.Context) error
}

// Check is a named readiness check.
type Check struct {
	Name   string
	Pinger Pinger
}

// Config configures the server.
type Config struct {
	Addr    string
	Version string
	// Pprof serves net/http/pprof under /debug/pprof/.
	Pprof bool
	// Registry is served at /metrics.
	Registry *prometheus.Registry
	// Tracker gives the request counts; Walker, when set, the full
	// scrape; Totals, when set, the swarm totals.
	Tracker Counter
	Walker  Walker
	Totals  *metrics.Totals
	// Pending, when set, reports the rows waiting for storage.
	Pending func() storage.Pending
	// Checks must all pass for /readyz to answer 200.
	Checks []Check
	// SampleEvery is how often request rates are sampled (default 10s).
	SampleEvery time.Duration
}

// Server is the admin HTTP server.
type Server struct {
	cfg     Config
	log     *slog.Logger
	mux     *http.ServeMux
	started time.Time
	server  *http.Server
	stop    chan struct{}

	mu     sync.Mutex
	rates  [2]sample // the last two samples, older first
	closed bool
}

type sample struct {
	at                 time.Time
	announces, scrapes uint64
}

// New returns a server; Handler serves it without a socket.
func New(cfg Config, log *slog.Logger) *Server {
	if cfg.SampleEvery <= 0 {
		cfg.SampleEvery = 10 * time.Second
	}
	s := &Server{cfg: cfg, log: log, mux: http.NewServeMux(), started: time.Now(), stop: make(chan struct{})}
	s.mux.Handle("GET /metrics", promhttp.HandlerFor(cfg.Registry, promhttp.HandlerOpts{ErrorLog: slog.NewLogLogger(log.Handler(), slog.LevelWarn)}))
	s.mux.HandleFunc("GET /healthz", s.healthz)
	s.mux.HandleFunc("GET /readyz", s.readyz)
	s.mux.HandleFunc("GET /stats.json", s.stats)
	if cfg.Walker != nil {
		s.mux.HandleFunc("GET /scrape", s.fullScrape(bencodeFormat))
		s.mux.HandleFunc("GET /scrape.json", s.fullScrape(jsonFormat))
	}
	if cfg.Pprof {
		s.mux.HandleFunc("GET /debug/pprof/", pprof.Index)
		s.mux.HandleFunc("GET /debug/pprof/cmdline", pprof.Cmdline)
		s.mux.HandleFunc("GET /debug/pprof/profile", pprof.Profile)
		s.mux.HandleFunc("GET /debug/pprof/symbol", pprof.Symbol)
		s.mux.HandleFunc("GET /debug/pprof/trace", pprof.Trace)
	}
	s.sample(time.Now())
	return s
}

// Handler returns the server's routes.
func (s *Server) Handler() http.Handler { return s.mux }

// ListenAndServe listens on the configured address and serves until
// Shutdown; it returns once the listener is open.
func (s *Server) ListenAndServe() (net.Addr, error) {
	ln, err := net.Listen("tcp", s.cfg.Addr)
	if err != nil {
		return nil, err
	}
	s.server = &http.Server{
		Handler:           s.mux,
		ReadHeaderTimeout: 10 * time.Second,
		ErrorLog:          slog.NewLogLogger(s.log.Handler(), slog.LevelDebug),
	}
	go func() {
		if err := s.server.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
			s.log.Error("admin server stopped", "err", err)
		}
	}()
	go s.sampleLoop()
	return ln.Addr(), nil
}

// Shutdown stops the server.
func (s *Server) Shutdown(ctx context.Context) error {
	s.mu.Lock()
	if !s.closed {
		s.closed = true
		close(s.stop)
	}
	s.mu.Unlock()
	if s.server == nil {
		return nil
	}
	return s.server.Shutdown(ctx)
}

func (s *Server) sampleLoop() {
	t := time.NewTicker(s.cfg.SampleEvery)
	defer t.Stop()
	for {
		select {
		case <-s.stop:
			return
		case now := <-t.C:
			s.sample(now)
		}
	}
}

// sample records the request counts, from which rates are computed.
func (s *Server) sample(now time.Time) {
	a, _, sc := s.cfg.Tracker.Counts()
	s.mu.Lock()
	s.rates[0], s.rates[1] = s.rates[1], sample{at: now, announces: a, scrapes: sc}
	if s.rates[0].at.IsZero() {
		s.rates[0] = s.rates[1]
	}
	s.mu.Unlock()
}

func (s *Server) healthz(w http.ResponseWriter, _ *http.Request) {
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	fmt.Fprintln(w, "ok")
}

// readyz answers 200 when every configured store answers, 503 naming the
// ones that do not.
func (s *Server) readyz(w http.ResponseWriter, r *http.Request) {
	ctx, cancel := context.WithTimeout(r.Context(), 2*time.Second)
	defer cancel()
	type result struct {
		name string
		err  error
	}
	results := make(chan result, len(s.cfg.Checks))
	for _, c := range s.cfg.Checks {
		go func() { results <- result{c.Name, c.Pinger.Ping(ctx)} }()
	}
	var failed []string
	for range s.cfg.Checks {
		if res := <-results; res.err != nil {
			failed = append(failed, fmt.Sprintf("%s: %v", res.name, res.err))
		}
	}
	sort.Strings(failed)
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	if len(failed) > 0 {
		w.WriteHeader(http.StatusServiceUnavailable)
		for _, f := range failed {
			fmt.Fprintln(w, "not ready:", f)
		}
		return
	}
	fmt.Fprintln(w, "ready")
}

// Stats is the /stats.json document.
type Stats struct {
	Version            string           `json:"version"`
	UptimeSeconds      int64            `json:"uptime_seconds"`
	Torrents           *int             `json:"torrents,omitempty"`
	Seeders            *int             `json:"seeders,omitempty"`
	Leechers           *int             `json:"leechers,omitempty"`
	AnnouncesTotal     uint64           `json:"announces_total"`
	FailedTotal        uint64           `json:"failed_announces_total"`
	ScrapesTotal       uint64           `json:"scrapes_total"`
	AnnouncesPerSecond float64          `json:"announces_per_second"`
	ScrapesPerSecond   float64          `json:"scrapes_per_second"`
	StoragePending     *storage.Pending `json:"storage_pending,omitempty"`
}

func (s *Server) stats(w http.ResponseWriter, r *http.Request) {
	a, f, sc := s.cfg.Tracker.Counts()
	st := Stats{
		Version:        s.cfg.Version,
		UptimeSeconds:  int64(time.Since(s.started).Seconds()),
		AnnouncesTotal: a,
		FailedTotal:    f,
		ScrapesTotal:   sc,
	}
	s.mu.Lock()
	older, newer := s.rates[0], s.rates[1]
	s.mu.Unlock()
	if secs := newer.at.Sub(older.at).Seconds(); secs > 0 {
		st.AnnouncesPerSecond = float64(newer.announces-older.announces) / secs
		st.ScrapesPerSecond = float64(newer.scrapes-older.scrapes) / secs
	}
	if s.cfg.Totals != nil {
		if n, err := s.cfg.Totals.Get(r.Context()); err == nil {
			st.Torrents, st.Seeders, st.Leechers = &n.Swarms, &n.Seeders, &n.Leechers
		}
	}
	if s.cfg.Pending != nil {
		p := s.cfg.Pending()
		st.StoragePending = &p
	}
	w.Header().Set("Content-Type", "application/json")
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	_ = enc.Encode(st)
}
