package http

import (
	"net/netip"
	"strings"
	"testing"

	"github.com/chihaya/chihaya/bittorrent"
)

// A hash and a peer id whose bytes exercise the decoder: '+' must stay a
// plus sign, '%' escapes any byte, unreserved bytes may come bare.
const (
	rawHash   = "\x00\x01+ %\xff\xfe&=abcdefghijk"
	queryHash = "%00%01+%20%25%ff%FE%26%3dabcdefghijk"
	rawPeer   = "-TR3000-abcdefghijkl"
	queryPeer = "-TR3000-abcdefghijkl"
)

func TestParseAnnounce(t *testing.T) {
	base := "info_hash=" + queryHash + "&peer_id=" + queryPeer + "&port=6881&left=0"
	tests := []struct {
		name    string
		query   string
		allowIP bool
		check   func(t *testing.T, r *bittorrent.AnnounceRequest)
		wantErr string
	}{
		{name: "minimal", query: base, check: func(t *testing.T, r *bittorrent.AnnounceRequest) {
			if string(r.InfoHash[:]) != rawHash {
				t.Errorf("info_hash = %q, want %q", r.InfoHash[:], rawHash)
			}
			if string(r.PeerID[:]) != rawPeer {
				t.Errorf("peer_id = %q", r.PeerID[:])
			}
			if r.Port != 6881 || r.Left != 0 || r.Event != bittorrent.None {
				t.Errorf("port %d left %d event %v", r.Port, r.Left, r.Event)
			}
			if !r.Compact || r.NoPeerID || r.NumWant != -1 {
				t.Errorf("defaults: compact %v no_peer_id %v numwant %d; want compact, peer ids, numwant -1", r.Compact, r.NoPeerID, r.NumWant)
			}
		}},
		{name: "every parameter", query: base + "&uploaded=123&downloaded=18446744073709551615&left=77&event=completed&numwant=30&compact=0&no_peer_id=1&key=abcd&trackerid=x&corrupt=5&supportcrypto=1",
			check: func(t *testing.T, r *bittorrent.AnnounceRequest) {
				if r.Uploaded != 123 || r.Downloaded != 18446744073709551615 || r.Left != 77 {
					t.Errorf("totals %d %d %d", r.Uploaded, r.Downloaded, r.Left)
				}
				if r.Event != bittorrent.Completed || r.NumWant != 30 || r.Compact || !r.NoPeerID {
					t.Errorf("event %v numwant %d compact %v no_peer_id %v", r.Event, r.NumWant, r.Compact, r.NoPeerID)
				}
				if r.Key != fnv32("abcd") || r.Corrupt != 5 {
					t.Errorf("key or corrupt not read: %d %d", r.Key, r.Corrupt)
				}
			}},
		{name: "events", query: base + "&event=paused", check: func(t *testing.T, r *bittorrent.AnnounceRequest) {
			if r.Event != bittorrent.Paused {
				t.Errorf("event = %v", r.Event)
			}
		}},
		{name: "empty event", query: base + "&event=", check: func(t *testing.T, r *bittorrent.AnnounceRequest) {
			if r.Event != bittorrent.None {
				t.Errorf("event = %v", r.Event)
			}
		}},
		{name: "negative numwant means default", query: base + "&numwant=-1", check: func(t *testing.T, r *bittorrent.AnnounceRequest) {
			if r.NumWant != -1 {
				t.Errorf("numwant = %d", r.NumWant)
			}
		}},
		{name: "huge numwant is capped later, not refused", query: base + "&numwant=99999999999", check: func(t *testing.T, r *bittorrent.AnnounceRequest) {
			if r.NumWant != 1<<31-1 {
				t.Errorf("numwant = %d", r.NumWant)
			}
		}},
		{name: "ip ignored unless allowed", query: base + "&ip=1.2.3.4&ipv6=2001:db8::1", check: func(t *testing.T, r *bittorrent.AnnounceRequest) {
			if r.IPv4.IsValid() || r.IPv6.IsValid() {
				t.Errorf("addresses taken from an untrusted parameter: %v %v", r.IPv4, r.IPv6)
			}
		}},
		{name: "ip parameters when allowed", allowIP: true, query: base + "&ipv4=1.2.3.4:999&ipv6=%5B2001:db8::1%5D:6881", check: func(t *testing.T, r *bittorrent.AnnounceRequest) {
			if r.IPv4 != netip.MustParseAddr("1.2.3.4") || r.IPv6 != netip.MustParseAddr("2001:db8::1") {
				t.Errorf("addresses %v %v", r.IPv4, r.IPv6)
			}
		}},
		{name: "mapped ip is IPv4", allowIP: true, query: base + "&ip=::ffff:10.0.0.1", check: func(t *testing.T, r *bittorrent.AnnounceRequest) {
			if r.IPv4 != netip.MustParseAddr("10.0.0.1") || r.IPv6.IsValid() {
				t.Errorf("addresses %v %v", r.IPv4, r.IPv6)
			}
		}},
		{name: "ipv4 param with IPv6 address", allowIP: true, query: base + "&ipv4=::1", wantErr: "invalid ipv4: wrong address family"},
		{name: "bad ip", allowIP: true, query: base + "&ip=example.com", wantErr: "invalid ip: not an IP address"},
		{name: "missing info_hash", query: "peer_id=" + queryPeer + "&port=1&left=0", wantErr: "missing info_hash"},
		{name: "missing peer_id", query: "info_hash=" + queryHash + "&port=1&left=0", wantErr: "missing peer_id"},
		{name: "missing port", query: "info_hash=" + queryHash + "&peer_id=" + queryPeer + "&left=0", wantErr: "missing port"},
		{name: "missing left", query: "info_hash=" + queryHash + "&peer_id=" + queryPeer + "&port=1", wantErr: "missing left"},
		{name: "short hash", query: strings.Replace(base, "abcdefghijk", "abcdefghij", 1), wantErr: "invalid info_hash: need 20 bytes, got 19"},
		{name: "long peer id", query: base + "&peer_id=" + queryPeer + "XY", wantErr: "invalid peer_id: need 20 bytes, got 22"},
		{name: "truncated escape", query: base + "&info_hash=abc%4", wantErr: "invalid info_hash: malformed percent-encoding"},
		{name: "non-hex escape", query: base + "&peer_id=%zz", wantErr: "invalid peer_id: malformed percent-encoding"},
		{name: "port overflow", query: base + "&port=65536", wantErr: "invalid port: too large"},
		{name: "port text", query: base + "&port=http", wantErr: "invalid port: not a whole number"},
		{name: "negative left", query: base + "&left=-1", wantErr: "invalid left: must not be negative"},
		{name: "uploaded overflow", query: base + "&uploaded=18446744073709551616", wantErr: "invalid uploaded: too large"},
		{name: "empty downloaded", query: base + "&downloaded=", wantErr: "invalid downloaded: not a whole number"},
		{name: "unknown event", query: base + "&event=finished", wantErr: "invalid event"},
		{name: "bad numwant", query: base + "&numwant=ten", wantErr: "invalid numwant: not a whole number"},
		{name: "empty pairs and bare keys", query: "&&" + base + "&&flag&", check: func(t *testing.T, r *bittorrent.AnnounceRequest) {}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var req bittorrent.AnnounceRequest
			err := announceParams{allowIPParam: tt.allowIP}.parseAnnounce(tt.query, &req)
			if tt.wantErr != "" {
				if err == nil || !strings.HasPrefix(err.Error(), tt.wantErr) {
					t.Fatalf("error = %v, want %q", err, tt.wantErr)
				}
				if _, ok := err.(bittorrent.ClientError); !ok {
					t.Fatalf("error %T is not a ClientError, so the client would not see it", err)
				}
				return
			}
			if err != nil {
				t.Fatalf("unexpected error: %v", err)
			}
			tt.check(t, &req)
		})
	}
}

func TestParseScrape(t *testing.T) {
	other := strings.Repeat("b", 20)
	got, err := parseScrape("info_hash="+queryHash+"&x=1&info_hash="+other, nil)
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != 2 || string(got[0][:]) != rawHash || string(got[1][:]) != other {
		t.Fatalf("got %q", got)
	}
	if got, err := parseScrape("", nil); err != nil || len(got) != 0 {
		t.Fatalf("empty query: %v %v", got, err)
	}
	if _, err := parseScrape("info_hash=short", nil); err == nil || err.Error() != "invalid info_hash: need 20 bytes, got 5" {
		t.Fatalf("error = %v", err)
	}
}

func TestParseAnnounceDoesNotAllocate(t *testing.T) {
	query := "info_hash=" + queryHash + "&peer_id=" + queryPeer + "&port=6881&uploaded=0&downloaded=0&left=100&event=started&numwant=50&compact=1&key=1a2b3c"
	var req bittorrent.AnnounceRequest
	allocs := testing.AllocsPerRun(100, func() {
		req.Reset()
		if err := (announceParams{}).parseAnnounce(query, &req); err != nil {
			t.Fatal(err)
		}
	})
	if allocs != 0 {
		t.Fatalf("parseAnnounce allocates %v times per request, want 0", allocs)
	}
}

func FuzzParseAnnounce(f *testing.F) {
	f.Add("info_hash=" + queryHash + "&peer_id=" + queryPeer + "&port=6881&left=0")
	f.Add("info_hash=%ff&peer_id=&port=-1&left=1e9&event=x&numwant=-99999999999")
	f.Add("ip=%5B::1%5D:1&ipv4=1.2.3.4&ipv6=::ffff:1.2.3.4&compact=0&no_peer_id=1&&=&x")
	f.Add("info_hash=" + queryHash + "&info_hash=" + queryHash + "%")
	f.Fuzz(func(t *testing.T, query string) {
		var req bittorrent.AnnounceRequest
		err := announceParams{allowIPParam: true}.parseAnnounce(query, &req)
		if err != nil {
			if _, ok := err.(bittorrent.ClientError); !ok {
				t.Fatalf("error %v is %T, not a ClientError", err, err)
			}
			return
		}
		if req.IPv4.IsValid() && !req.IPv4.Is4() || req.IPv6.IsValid() && (!req.IPv6.Is6() || req.IPv6.Is4In6()) {
			t.Fatalf("address in the wrong family: %v %v", req.IPv4, req.IPv6)
		}
		if req.NumWant < -1 {
			t.Fatalf("numwant %d below -1", req.NumWant)
		}
	})
}
