package metrics

import (
	"errors"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/chihaya/chihaya/bittorrent"
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
