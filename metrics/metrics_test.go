package metrics

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	dto "github.com/prometheus/client_model/go"

	"github.com/chihaya/chihaya/bittorrent"
	"github.com/chihaya/chihaya/cache"
)

func TestReasonClass(t *testing.T) {
	for err, want := range map[error]string{
		bittorrent.ClientError("invalid info_hash: need 20 bytes, got 19"):             "invalid_info_hash",
		bittorrent.ClientError("Passkey not found"):                                    "passkey_not_found",
		bittorrent.ClientError("Unregistered torrent: Dupe"):                           "unregistered_torrent",
		bittorrent.ClientError("too many info_hash values: 99, at most 74 per scrape"): "too_many_info_hash_values",
		bittorrent.ClientError("!!!"):                                                  "other",
		errors.New("connection refused"):                                               "internal",
	} {
		if got := ReasonClass(err); got != want {
			t.Errorf("ReasonClass(%q) = %q, want %q", err, got, want)
		}
	}
}

func TestObserverCounts(t *testing.T) {
	m := New("test")
	o := m.Observer("udp")
	o.Observe("announce", nil, time.Millisecond)
	o.Observe("announce", nil, time.Millisecond)
	o.Observe("announce", bittorrent.ClientError("invalid event"), time.Millisecond)
	o.Observe("announce", errors.New("redis down"), time.Millisecond)
	o.Observe("scrape", nil, time.Millisecond)
	for _, c := range []struct {
		outcome string
		want    float64
	}{{"ok", 2}, {"refused", 1}, {"error", 1}} {
		if got := testutil.ToFloat64(m.requests.WithLabelValues("udp", "announce", c.outcome)); got != c.want {
			t.Errorf("announce %s = %v, want %v", c.outcome, got, c.want)
		}
	}
	if got := testutil.ToFloat64(m.failures.WithLabelValues("udp", "announce", "internal")); got != 1 {
		t.Errorf("internal failures = %v", got)
	}
	if a, f, s := m.Counts(); a != 2 || f != 2 || s != 1 {
		t.Errorf("Counts() = %d %d %d, want 2 2 1", a, f, s)
	}
	var nilObserver *Observer
	nilObserver.Observe("announce", nil, 0) // must not panic
}

// failingSwarms is a swarm store whose every call fails.
type failingSwarms struct{}

func (failingSwarms) Announce(context.Context, *cache.Announce, *cache.Result) error {
	return errors.New("cache down")
}

func (failingSwarms) Scrape(_ context.Context, _ []bittorrent.InfoHash, dst []bittorrent.Scrape) ([]bittorrent.Scrape, error) {
	return dst, errors.New("cache down")
}

// Every failed call is counted, but only one call in timingSample is
// timed, the first one included, so that a short run still shows a
// latency.
func TestTimedSwarmsCountsAllTimesSome(t *testing.T) {
	m := New("test")
	ts := m.TimeSwarms(failingSwarms{})
	const calls = 2*timingSample + 1
	for range calls {
		_ = ts.Announce(context.Background(), &cache.Announce{}, &cache.Result{})
	}
	_, _ = ts.Scrape(context.Background(), nil, nil)
	if got := testutil.ToFloat64(m.cacheErrors.WithLabelValues("announce")); got != calls {
		t.Errorf("announce errors = %v, want %d", got, calls)
	}
	if got := testutil.ToFloat64(m.cacheErrors.WithLabelValues("scrape")); got != 1 {
		t.Errorf("scrape errors = %v, want 1", got)
	}
	for op, want := range map[string]uint64{"announce": 3, "scrape": 1} {
		var d dto.Metric
		if err := m.cacheLatency.WithLabelValues(op).(prometheus.Histogram).Write(&d); err != nil {
			t.Fatal(err)
		}
		if got := d.GetHistogram().GetSampleCount(); got != want {
			t.Errorf("%s timings = %d, want %d", op, got, want)
		}
	}
}

// warmingSwarms records the hints it is given.
type warmingSwarms struct {
	failingSwarms
	hinted []bittorrent.InfoHash
}

func (w *warmingSwarms) Warm(hashes []bittorrent.InfoHash) { w.hinted = append(w.hinted, hashes...) }

// The timing wrapper passes hints on to a store that takes them, so that
// wrapping the memory store does not cost it the UDP batch's head start,
// and drops them for one that does not.
func TestTimedSwarmsPassesHintsOn(t *testing.T) {
	m := New("test")
	store := &warmingSwarms{}
	hashes := []bittorrent.InfoHash{{1}, {2}}
	m.TimeSwarms(store).Warm(hashes)
	if len(store.hinted) != 2 || store.hinted[0] != hashes[0] || store.hinted[1] != hashes[1] {
		t.Fatalf("store hinted %v, want %v", store.hinted, hashes)
	}
	m.TimeSwarms(failingSwarms{}).Warm(hashes) // must not panic
}

// Count records a request as Observe does, without a duration.
func TestObserverCountLeavesDurationsAlone(t *testing.T) {
	m := New("test")
	o := m.Observer("udp")
	o.Observe("announce", nil, time.Millisecond)
	o.Count("announce", nil)
	o.Count("announce", bittorrent.ClientError("invalid info hash"))
	if got := testutil.ToFloat64(m.requests.WithLabelValues("udp", "announce", "ok")); got != 2 {
		t.Errorf("ok announces = %v, want 2", got)
	}
	if got := testutil.ToFloat64(m.requests.WithLabelValues("udp", "announce", "refused")); got != 1 {
		t.Errorf("refused announces = %v, want 1", got)
	}
	var d dto.Metric
	if err := m.duration.WithLabelValues("udp", "announce").(prometheus.Histogram).Write(&d); err != nil {
		t.Fatal(err)
	}
	if got := d.GetHistogram().GetSampleCount(); got != 1 {
		t.Errorf("announce timings = %d, want the 1 observed", got)
	}
}
