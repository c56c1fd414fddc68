package metrics

import (
	"context"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/chihaya/chihaya/bittorrent"
	"github.com/chihaya/chihaya/storage"
)

// walker lists every swarm (cache.Walker).
type walker interface {
	Walk(ctx context.Context, fn func(bittorrent.Scrape) error) error
}

// SwarmTotals are the sizes of all swarms together.
type SwarmTotals struct {
	Swarms, Seeders, Leechers int
	Snatches                  uint64
	// At is when they were counted.
	At time.Time
}

// Totals counts all swarms of a store that can list them, at most once per
// maxAge however often it is asked: a walk touches every swarm, and both
// Prometheus and /stats.json ask for it.
type Totals struct {
	w      walker
	maxAge time.Duration

	mu   sync.Mutex
	last SwarmTotals
}

// NewTotals returns totals of w's swarms, recounted when older than maxAge.
func NewTotals(w walker, maxAge time.Duration) *Totals {
	return &Totals{w: w, maxAge: maxAge}
}

// Get returns the totals, counting again if they are stale.
func (t *Totals) Get(ctx context.Context) (SwarmTotals, error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if !t.last.At.IsZero() && time.Since(t.last.At) < t.maxAge {
		return t.last, nil
	}
	var n SwarmTotals
	err := t.w.Walk(ctx, func(s bittorrent.Scrape) error {
		n.Swarms++
		n.Seeders += int(s.Complete)
		n.Leechers += int(s.Incomplete)
		n.Snatches += uint64(s.Snatches)
		return nil
	})
	if err != nil {
		return t.last, err
	}
	n.At = time.Now()
	t.last = n
	return n, nil
}

var (
	swarmsDesc   = prometheus.NewDesc("chihaya_swarms", "Swarms with at least one live peer or a recent announce.", nil, nil)
	seedersDesc  = prometheus.NewDesc("chihaya_seeders", "Live seeders across all swarms.", nil, nil)
	leechersDesc = prometheus.NewDesc("chihaya_leechers", "Live leechers across all swarms.", nil, nil)
	snatchesDesc = prometheus.NewDesc("chihaya_snatches", "Completions counted by the swarms that exist now.", nil, nil)
)

type totalsCollector struct{ t *Totals }

func (c totalsCollector) Describe(ch chan<- *prometheus.Desc) {
	ch <- swarmsDesc
	ch <- seedersDesc
	ch <- leechersDesc
	ch <- snatchesDesc
}

func (c totalsCollector) Collect(ch chan<- prometheus.Metric) {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	n, err := c.t.Get(ctx)
	if err != nil && n.At.IsZero() {
		return
	}
	ch <- prometheus.MustNewConstMetric(swarmsDesc, prometheus.GaugeValue, float64(n.Swarms))
	ch <- prometheus.MustNewConstMetric(seedersDesc, prometheus.GaugeValue, float64(n.Seeders))
	ch <- prometheus.MustNewConstMetric(leechersDesc, prometheus.GaugeValue, float64(n.Leechers))
	ch <- prometheus.MustNewConstMetric(snatchesDesc, prometheus.GaugeValue, float64(n.Snatches))
}

// RegisterTotals exposes t as the chihaya_swarms, _seeders, _leechers and
// _snatches gauges.
func (m *Metrics) RegisterTotals(t *Totals) {
	m.Registry.MustRegister(totalsCollector{t})
}

// flusherStats reports a storage flusher's queues (storage.Flusher).
type flusherStats interface {
	Stats() []storage.QueueStats
}

var (
	pendingDesc   = prometheus.NewDesc("chihaya_storage_pending_rows", "Rows waiting to be written to storage, by kind.", []string{"kind"}, nil)
	writtenDesc   = prometheus.NewDesc("chihaya_storage_rows_written_total", "Rows written to storage, by kind.", []string{"kind"}, nil)
	droppedDesc   = prometheus.NewDesc("chihaya_storage_rows_dropped_total", "Rows given up on (refused by the database, or past the pending bound), by kind.", []string{"kind"}, nil)
	retriesDesc   = prometheus.NewDesc("chihaya_storage_write_retries_total", "Failed writes whose rows were kept for the next try, by kind.", []string{"kind"}, nil)
	lastWriteDesc = prometheus.NewDesc("chihaya_storage_last_write_duration_seconds", "Duration of the last successful write, by kind.", []string{"kind"}, nil)
)

type flusherCollector struct{ f flusherStats }

func (c flusherCollector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{pendingDesc, writtenDesc, droppedDesc, retriesDesc, lastWriteDesc} {
		ch <- d
	}
}

func (c flusherCollector) Collect(ch chan<- prometheus.Metric) {
	for _, q := range c.f.Stats() {
		kind := kindLabel(q.Name)
		ch <- prometheus.MustNewConstMetric(pendingDesc, prometheus.GaugeValue, float64(q.Pending), kind)
		ch <- prometheus.MustNewConstMetric(writtenDesc, prometheus.CounterValue, float64(q.Written), kind)
		ch <- prometheus.MustNewConstMetric(droppedDesc, prometheus.CounterValue, float64(q.Dropped), kind)
		ch <- prometheus.MustNewConstMetric(retriesDesc, prometheus.CounterValue, float64(q.Retries), kind)
		ch <- prometheus.MustNewConstMetric(lastWriteDesc, prometheus.GaugeValue, q.LastWrite.Seconds(), kind)
	}
}

// kindLabel turns a queue name ("expired tokens") into a label value.
func kindLabel(name string) string {
	b := []byte(name)
	for i, c := range b {
		if c == ' ' {
			b[i] = '_'
		}
	}
	return string(b)
}

// RegisterFlusher exposes a storage flusher's queues.
func (m *Metrics) RegisterFlusher(f flusherStats) {
	m.Registry.MustRegister(flusherCollector{f})
}
