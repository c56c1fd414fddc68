//go:build linux

package e2e

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"net"
	"net/netip"
	"os"
	"testing"
	"time"

	"github.com/redis/rueidis"
)

// These tests run two tracker processes that share one Redis through the
// redis cache driver, as a deployment behind a load balancer would: a
// client may reach either instance, and both must serve one set of swarms.

// sharedRedis returns the Redis the instances share (CHIHAYA_REDIS_ADDR,
// default 127.0.0.1:6379) and a fresh key prefix whose keys are deleted
// when the test ends. Without Redis the test fails under CI and is skipped
// elsewhere.
func sharedRedis(t *testing.T) (addr, prefix string) {
	t.Helper()
	addr = os.Getenv("CHIHAYA_REDIS_ADDR")
	if addr == "" {
		addr = "127.0.0.1:6379"
	}
	c, err := rueidis.NewClient(rueidis.ClientOption{
		InitAddress: []string{addr}, ForceSingleClient: true, DisableCache: true,
		Dialer: net.Dialer{Timeout: time.Second},
	})
	if err != nil {
		msg := fmt.Sprintf("Redis at %s is not answering (%v)", addr, err)
		if os.Getenv("CI") != "" {
			t.Fatal(msg + "; CI must provide it (scripts/start-services)")
		}
		t.Skip(msg + "; run scripts/start-services to start it")
	}
	var b [6]byte
	rand.Read(b[:])
	prefix = "chihaya-e2e:" + hex.EncodeToString(b[:]) + ":"
	t.Cleanup(func() {
		defer c.Close()
		ctx := context.Background()
		var cursor uint64
		for {
			e, err := c.Do(ctx, c.B().Scan().Cursor(cursor).Match(prefix+"*").Count(1000).Build()).AsScanEntry()
			if err != nil {
				t.Logf("cleaning up %s: %v", prefix, err)
				return
			}
			if len(e.Elements) > 0 {
				c.Do(ctx, c.B().Del().Key(e.Elements...).Build())
			}
			if cursor = e.Cursor; cursor == 0 {
				return
			}
		}
	})
	return addr, prefix
}

// withRedis configures a tracker to keep its swarms in Redis at addr
// under prefix.
func withRedis(addr, prefix string) func(cfg map[string]any, port int) {
	return func(cfg map[string]any, _ int) {
		cfg["cache"] = map[string]any{
			"driver": "redis",
			"config": map[string]any{"addrs": []string{addr}, "key_prefix": prefix},
		}
	}
}

// TestTransferTwoInstances moves a file between real clients of which the
// seeder announces only to instance A and the leecher only to instance B:
// the leecher can only learn about the seeder through the Redis the two
// instances share. Over IPv4 and IPv6, HTTP and UDP.
func TestTransferTwoInstances(t *testing.T) {
	pairs := []pair{
		{seeder: aria2{}, leecher: libtorrent{}, seederScheme: "http", leecherScheme: "http"},
		{seeder: libtorrent{}, leecher: aria2{}, seederScheme: "udp", leecherScheme: "http"},
	}
	requireE2E(t, pairs)
	addr, prefix := sharedRedis(t)
	a := startTracker(t, withRedis(addr, prefix))
	b := startTracker(t, withRedis(addr, prefix))
	for _, f := range families {
		t.Run(f.name, func(t *testing.T) {
			t.Parallel()
			for _, p := range pairs {
				t.Run(p.String(), func(t *testing.T) {
					t.Parallel()
					transfer(t, a.url(p.seederScheme, f.host, "/announce"), b.url(p.leecherScheme, f.host, "/announce"), p.seeder, p.leecher, nil)
				})
			}
		})
	}
}

// TestStopAcrossInstances checks with plain HTTP announces that a peer
// announced to one instance is handed out by the other, and that a stop
// sent to the other instance removes it for both.
func TestStopAcrossInstances(t *testing.T) {
	if testing.Short() {
		t.Skip("end-to-end test skipped in -short mode")
	}
	addr, prefix := sharedRedis(t)
	a := startTracker(t, withRedis(addr, prefix))
	b := startTracker(t, withRedis(addr, prefix))
	for _, f := range families {
		t.Run(f.name, func(t *testing.T) {
			if ip, _ := netip.ParseAddr(f.host); ip.Is6() {
				requireIPv6(t)
			}
			var ih [20]byte
			rand.Read(ih[:])
			const seederPort, leecherPort = 40001, 40002
			seeder := httpPeer{id: "-E2E001-seeder000001", port: seederPort, left: 0}
			leecher := httpPeer{id: "-E2E001-leecher00001", port: leecherPort, left: 1000}
			hostA, hostB := a.url("http", f.host, "/announce"), b.url("http", f.host, "/announce")

			seeder.announce(t, hostA, ih, "started")
			peers := leecher.announce(t, hostB, ih, "started")
			want := netip.AddrPortFrom(netip.MustParseAddr(f.host), seederPort)
			if len(peers) != 1 || peers[0] != want {
				t.Fatalf("instance B handed the leecher %v, want the seeder announced to A at %v", peers, want)
			}
			if n := seeders(t, hostA, ih); n != 1 {
				t.Errorf("instance A counts %d seeders, want 1", n)
			}

			// The seeder's stop reaches B; A no longer has it either.
			seeder.announce(t, hostB, ih, "stopped")
			if peers := leecher.announce(t, hostA, ih, ""); len(peers) != 0 {
				t.Errorf("after a stop sent to B, A still hands out %v", peers)
			}
			if n := seeders(t, hostA, ih); n != 0 {
				t.Errorf("after a stop sent to B, A counts %d seeders", n)
			}
		})
	}
}

// httpPeer is a client announcing by hand.
type httpPeer struct {
	id   string
	port int
	left int
}

// announce sends one HTTP announce and returns the peers of the
// requester's family from the compact answer.
func (p httpPeer) announce(t *testing.T, announceURL string, ih [20]byte, event string) []netip.AddrPort {
	t.Helper()
	u := fmt.Sprintf("%s?info_hash=%s&peer_id=%s&port=%d&uploaded=0&downloaded=0&left=%d&compact=1&numwant=50",
		announceURL, escapeBytes(ih[:]), escapeBytes([]byte(p.id)), p.port, p.left)
	if event != "" {
		u += "&event=" + event
	}
	body, err := httpGet(u)
	if err != nil {
		t.Fatal(err)
	}
	v, err := bdecode(body)
	if err != nil {
		t.Fatalf("announce response %q: %v", body, err)
	}
	d, _ := v.(map[string]any)
	if reason, ok := d["failure reason"]; ok {
		t.Fatalf("announce to %s failed: %s", announceURL, reason)
	}
	var out []netip.AddrPort
	for key, size := range map[string]int{"peers": 6, "peers6": 18} {
		raw, _ := d[key].(string)
		for ; len(raw) >= size; raw = raw[size:] {
			ip, _ := netip.AddrFromSlice([]byte(raw[:size-2]))
			out = append(out, netip.AddrPortFrom(ip, uint16(raw[size-2])<<8|uint16(raw[size-1])))
		}
	}
	return out
}

// seeders returns the seeders an instance's scrape counts for ih.
func seeders(t *testing.T, announceURL string, ih [20]byte) int64 {
	t.Helper()
	scrapeURL, _ := scrapeURLFor(announceURL)
	n, err := scrapeSeeders(scrapeURL+"?info_hash="+escapeBytes(ih[:]), ih)
	if err != nil {
		t.Fatal(err)
	}
	return n
}
