// Package metrics holds the tracker's Prometheus collectors. Frontends,
// the tracker logic and the stores report through small hooks defined here
// (an Observer per protocol, a timed cache), so none of them needs to know
// Prometheus; the admin server exposes the registry.
package metrics

import (
	"context"
	"errors"
	"runtime"
	"strings"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"

	"github.com/chihaya/chihaya/bittorrent"
	"github.com/chihaya/chihaya/cache"
)

// Metrics is a registry with the tracker's collectors.
type Metrics struct {
	// Registry holds every collector; the admin server serves it.
	Registry *prometheus.Registry

	requests     *prometheus.CounterVec
	failures     *prometheus.CounterVec
	duration     *prometheus.HistogramVec
	cacheLatency *prometheus.HistogramVec
	cacheErrors  *prometheus.CounterVec

	// Totals over every protocol, for summaries that do not query
	// Prometheus.
	announces, failedAnnounces, scrapes atomic.Uint64
}

// Counts returns the announces answered, the announces refused or failed
// (malformed ones included) and the scrapes, over every protocol.
func (m *Metrics) Counts() (announces, failures, scrapes uint64) {
	return m.announces.Load(), m.failedAnnounces.Load(), m.scrapes.Load()
}

// New registers the tracker's collectors, the Go runtime's and the
// process's on a new registry.
func New(version string) *Metrics {
	m := &Metrics{
		Registry: prometheus.NewRegistry(),
		requests: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "chihaya_requests_total",
			Help: "Requests answered, by protocol, action and outcome (ok, refused: the client's mistake, error: the tracker's).",
		}, []string{"protocol", "action", "outcome"}),
		failures: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "chihaya_request_failures_total",
			Help: "Requests refused or failed, by protocol, action and reason class.",
		}, []string{"protocol", "action", "reason"}),
		duration: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "chihaya_request_duration_seconds",
			Help:    "Time from a parsed request to its written answer, by protocol and action; a sample of the requests (the first of every 16) is timed.",
			Buckets: []float64{5e-6, 1e-5, 2.5e-5, 5e-5, 1e-4, 2.5e-4, 5e-4, 1e-3, 2.5e-3, 1e-2, 0.1, 1},
		}, []string{"protocol", "action"}),
		cacheLatency: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "chihaya_cache_duration_seconds",
			Help:    "Time of one call to the swarm store, by operation; one call in 16 is timed.",
			Buckets: []float64{1e-6, 5e-6, 2.5e-5, 1e-4, 2.5e-4, 5e-4, 1e-3, 5e-3, 0.025, 0.1, 0.5},
		}, []string{"op"}),
		cacheErrors: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "chihaya_cache_errors_total",
			Help: "Failed calls to the swarm store, by operation.",
		}, []string{"op"}),
	}
	build := prometheus.NewGauge(prometheus.GaugeOpts{
		Name:        "chihaya_build_info",
		Help:        "Always 1; the labels name the running build.",
		ConstLabels: prometheus.Labels{"version": version, "goversion": runtime.Version()},
	})
	build.Set(1)
	m.Registry.MustRegister(m.requests, m.failures, m.duration, m.cacheLatency, m.cacheErrors, build,
		collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	return m
}

// Observer records a frontend's requests.
type Observer struct {
	m        *Metrics
	protocol string
	// hot holds the collectors of every action's success, resolved once
	// and never written after, so the announce path neither locks nor
	// hashes label values.
	hot map[string]observed
}

type observed struct {
	ok       prometheus.Counter
	duration prometheus.Observer
}

// Actions are the request kinds frontends report.
var Actions = []string{"announce", "scrape", "connect"}

// Observer returns the observer for a protocol ("http", "udp").
func (m *Metrics) Observer(protocol string) *Observer {
	o := &Observer{m: m, protocol: protocol, hot: map[string]observed{}}
	for _, action := range Actions {
		o.hot[action] = observed{
			ok:       m.requests.WithLabelValues(protocol, action, "ok"),
			duration: m.duration.WithLabelValues(protocol, action),
		}
	}
	return o
}

// Observe records one request: its action ("announce", "scrape",
// "connect"), its error (nil, a bittorrent.ClientError, or another) and
// how long it took. A nil Observer records nothing.
func (o *Observer) Observe(action string, err error, took time.Duration) {
	if o == nil {
		return
	}
	h := o.collectors(action)
	h.duration.Observe(took.Seconds())
	o.count(h, action, err)
}

// Count records a request that was not timed, as Observe does otherwise:
// a frontend that times only a sample of its requests (UDP) counts the
// rest here.
func (o *Observer) Count(action string, err error) {
	if o == nil {
		return
	}
	o.count(o.collectors(action), action, err)
}

func (o *Observer) collectors(action string) observed {
	if h, ok := o.hot[action]; ok {
		return h
	}
	return observed{
		ok:       o.m.requests.WithLabelValues(o.protocol, action, "ok"),
		duration: o.m.duration.WithLabelValues(o.protocol, action),
	}
}

func (o *Observer) count(h observed, action string, err error) {
	switch {
	case action == "scrape":
		o.m.scrapes.Add(1)
	case action == "announce" && err == nil:
		o.m.announces.Add(1)
	case action == "announce":
		o.m.failedAnnounces.Add(1)
	}
	if err == nil {
		h.ok.Inc()
		return
	}
	outcome := "error"
	var ce bittorrent.ClientError
	if errors.As(err, &ce) {
		outcome = "refused"
	}
	o.m.requests.WithLabelValues(o.protocol, action, outcome).Inc()
	o.m.failures.WithLabelValues(o.protocol, action, ReasonClass(err)).Inc()
}

// ReasonClass turns an error into a short label value: the failure
// reason's text before any colon (which is where the specifics start), in
// snake case, so the set of values stays bounded. Errors that are not the
// client's are all "internal".
func ReasonClass(err error) string {
	var ce bittorrent.ClientError
	if !errors.As(err, &ce) {
		return "internal"
	}
	s, _, _ := strings.Cut(string(ce), ":")
	s = strings.ToLower(strings.TrimSpace(s))
	var b strings.Builder
	underscore := false
	for _, r := range s {
		if r >= 'a' && r <= 'z' || r >= '0' && r <= '9' {
			b.WriteRune(r)
			underscore = false
		} else if !underscore && b.Len() > 0 {
			b.WriteByte('_')
			underscore = true
		}
	}
	out := strings.TrimSuffix(b.String(), "_")
	if len(out) > 48 {
		out = out[:48]
	}
	if out == "" {
		return "other"
	}
	return out
}

// swarmStore is the part of a cache.Store the tracker calls.
type swarmStore interface {
	Announce(ctx context.Context, a *cache.Announce, r *cache.Result) error
	Scrape(ctx context.Context, hashes []bittorrent.InfoHash, dst []bittorrent.Scrape) ([]bittorrent.Scrape, error)
}

// TimedSwarms is a swarm store whose calls are counted and, one in
// timingSample, timed: two clock reads are a tenth of an in-memory
// announce, and a sample shows the latency as well.
type TimedSwarms struct {
	store                    swarmStore
	warmer                   cache.Warmer // store, when it is one
	announceTime, scrapeTime prometheus.Observer
	announceErrs, scrapeErrs prometheus.Counter
	announces, scrapes       atomic.Uint32
}

// timingSample is how many calls share one timing: the first of every
// timingSample is timed.
const timingSample = 16

// sampleStart counts a call and returns when it started if it is one of
// the timed ones, the zero time otherwise.
func sampleStart(calls *atomic.Uint32) time.Time {
	if calls.Add(1)%timingSample == 1 {
		return time.Now()
	}
	return time.Time{}
}

// observeSince records the time since start, unless the call was not timed.
func observeSince(o prometheus.Observer, start time.Time) {
	if !start.IsZero() {
		o.Observe(time.Since(start).Seconds())
	}
}

// TimeSwarms wraps a swarm store so its calls show in
// chihaya_cache_errors_total and, sampled, in
// chihaya_cache_duration_seconds.
func (m *Metrics) TimeSwarms(s swarmStore) *TimedSwarms {
	w, _ := s.(cache.Warmer)
	return &TimedSwarms{
		store:        s,
		warmer:       w,
		announceTime: m.cacheLatency.WithLabelValues("announce"),
		scrapeTime:   m.cacheLatency.WithLabelValues("scrape"),
		announceErrs: m.cacheErrors.WithLabelValues("announce"),
		scrapeErrs:   m.cacheErrors.WithLabelValues("scrape"),
	}
}

// Announce times the store's Announce.
func (t *TimedSwarms) Announce(ctx context.Context, a *cache.Announce, r *cache.Result) error {
	start := sampleStart(&t.announces)
	err := t.store.Announce(ctx, a, r)
	observeSince(t.announceTime, start)
	if err != nil && !errors.Is(err, context.Canceled) {
		t.announceErrs.Inc()
	}
	return err
}

// Warm passes the hint on to the store when it takes one; it is neither
// counted nor timed, as it answers nothing.
func (t *TimedSwarms) Warm(hashes []bittorrent.InfoHash) {
	if t.warmer != nil {
		t.warmer.Warm(hashes)
	}
}

// Scrape times the store's Scrape.
func (t *TimedSwarms) Scrape(ctx context.Context, hashes []bittorrent.InfoHash, dst []bittorrent.Scrape) ([]bittorrent.Scrape, error) {
	start := sampleStart(&t.scrapes)
	out, err := t.store.Scrape(ctx, hashes, dst)
	observeSince(t.scrapeTime, start)
	if err != nil && !errors.Is(err, context.Canceled) {
		t.scrapeErrs.Inc()
	}
	return out, err
}
