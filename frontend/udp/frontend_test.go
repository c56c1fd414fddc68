package udp

import (
	"bytes"
	"context"
	"encoding/binary"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/chihaya/chihaya/bittorrent"
	"github.com/chihaya/chihaya/cache"
	_ "github.com/chihaya/chihaya/cache/memory"
	"github.com/chihaya/chihaya/tracker"
)

// clock is a settable time source shared by the frontend under test.
type clock struct{ now time.Time }

func (c *clock) Now() time.Time { return c.now }

type harness struct {
	fe    *Frontend
	clock *clock
	w     *worker
}

func newHarness(t testing.TB, cfg Config) *harness {
	t.Helper()
	store, err := cache.Open("memory", nil, cache.Options{PeerLifetime: time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { store.Close() })
	tr := tracker.New(tracker.Config{
		AnnounceInterval:    30 * time.Minute,
		MinAnnounceInterval: 15 * time.Minute,
		DefaultNumWant:      50,
		MaxNumWant:          200,
		MaxScrapeInfoHashes: 74,
	}, store)
	c := &clock{now: time.Unix(1_700_000_000, 0)}
	if cfg.ConnIDLifetime == 0 {
		cfg.ConnIDLifetime = 2 * time.Minute
	}
	if cfg.MaxNumWant == 0 {
		cfg.MaxNumWant = 80
	}
	if cfg.MaxScrapeInfoHashes == 0 {
		cfg.MaxScrapeInfoHashes = 74
	}
	cfg.Now = c.Now
	return &harness{fe: New(tr, cfg, slog.New(slog.DiscardHandler)), clock: c, w: newWorker()}
}

// handle hands one packet to the frontend as a batch of its own, arrived
// at the clock's present time, and returns the answer (valid until the
// next call).
func (h *harness) handle(p []byte, from netip.AddrPort) []byte {
	h.w.now = h.fe.cfg.Now()
	return h.fe.handle(context.Background(), h.w, p, from)
}

// send hands one packet to the frontend and returns a copy of the answer.
func (h *harness) send(p []byte, from netip.AddrPort) []byte {
	out := h.handle(p, from)
	if out == nil {
		return nil
	}
	return bytes.Clone(out)
}

func connectPacket(txID uint32) []byte {
	p := binary.BigEndian.AppendUint64(nil, protocolID)
	p = binary.BigEndian.AppendUint32(p, actionConnect)
	return binary.BigEndian.AppendUint32(p, txID)
}

// connect performs the handshake and returns the connection ID.
func (h *harness) connect(t testing.TB, from netip.AddrPort) uint64 {
	t.Helper()
	out := h.send(connectPacket(7), from)
	if len(out) != connectRespLen || binary.BigEndian.Uint32(out) != actionConnect || binary.BigEndian.Uint32(out[4:]) != 7 {
		t.Fatalf("connect answered %x", out)
	}
	return binary.BigEndian.Uint64(out[8:])
}

type announceArgs struct {
	connID     uint64
	txID       uint32
	hash, peer string
	left       uint64
	event      uint32
	ip         [4]byte
	numWant    int32
	port       uint16
	options    []byte
}

func (a announceArgs) packet() []byte {
	p := binary.BigEndian.AppendUint64(nil, a.connID)
	p = binary.BigEndian.AppendUint32(p, actionAnnounce)
	p = binary.BigEndian.AppendUint32(p, a.txID)
	p = append(p, fmt.Sprintf("%-20s", a.hash)[:20]...)
	p = append(p, fmt.Sprintf("%-20s", a.peer)[:20]...)
	p = binary.BigEndian.AppendUint64(p, 0) // downloaded
	p = binary.BigEndian.AppendUint64(p, a.left)
	p = binary.BigEndian.AppendUint64(p, 0) // uploaded
	p = binary.BigEndian.AppendUint32(p, a.event)
	p = append(p, a.ip[:]...)
	p = binary.BigEndian.AppendUint32(p, 0xfeedbeef) // key
	p = binary.BigEndian.AppendUint32(p, uint32(a.numWant))
	p = binary.BigEndian.AppendUint16(p, a.port)
	return append(p, a.options...)
}

type announceReply struct {
	interval, leechers, seeders uint32
	peers                       []netip.AddrPort
}

func decodeAnnounce(t testing.TB, out []byte, txID uint32, v6 bool) announceReply {
	t.Helper()
	if len(out) < 20 || binary.BigEndian.Uint32(out) != actionAnnounce || binary.BigEndian.Uint32(out[4:]) != txID {
		t.Fatalf("not an announce answer for tx %d: %x (%q)", txID, out, out)
	}
	r := announceReply{
		interval: binary.BigEndian.Uint32(out[8:]),
		leechers: binary.BigEndian.Uint32(out[12:]),
		seeders:  binary.BigEndian.Uint32(out[16:]),
	}
	size := 6
	if v6 {
		size = 18
	}
	body := out[20:]
	if len(body)%size != 0 {
		t.Fatalf("peer list of %d bytes is not a multiple of %d", len(body), size)
	}
	for ; len(body) > 0; body = body[size:] {
		addr, _ := netip.AddrFromSlice(body[:size-2])
		r.peers = append(r.peers, netip.AddrPortFrom(addr, binary.BigEndian.Uint16(body[size-2:])))
	}
	return r
}

func decodeError(t testing.TB, out []byte, txID uint32) string {
	t.Helper()
	if len(out) < 8 || binary.BigEndian.Uint32(out) != actionError || binary.BigEndian.Uint32(out[4:]) != txID {
		t.Fatalf("not an error for tx %d: %x", txID, out)
	}
	return string(out[8:])
}

var (
	seederAddr  = netip.MustParseAddrPort("192.0.2.1:50000")
	leecherAddr = netip.MustParseAddrPort("192.0.2.2:50000")
)

func TestAnnounceIPv4(t *testing.T) {
	h := newHarness(t, Config{})
	seed := announceArgs{txID: 1, hash: "hash-a", peer: "seeder", port: 6881, numWant: -1}
	seed.connID = h.connect(t, seederAddr)
	r := decodeAnnounce(t, h.send(seed.packet(), seederAddr), 1, false)
	if r.seeders != 1 || r.leechers != 0 || len(r.peers) != 0 || r.interval != 1800 {
		t.Fatalf("seeder's first announce: %+v", r)
	}

	leech := announceArgs{txID: 2, hash: "hash-a", peer: "leecher", left: 10, event: 2, port: 6882, numWant: 10}
	leech.connID = h.connect(t, leecherAddr)
	r = decodeAnnounce(t, h.send(leech.packet(), leecherAddr), 2, false)
	if r.seeders != 1 || r.leechers != 1 {
		t.Fatalf("counts: %+v", r)
	}
	if len(r.peers) != 1 || r.peers[0] != netip.MustParseAddrPort("192.0.2.1:6881") {
		t.Fatalf("leecher got %v, want the seeder on its announced port", r.peers)
	}
}

func TestAnnounceIPv6AndMapped(t *testing.T) {
	h := newHarness(t, Config{})
	v6a := netip.MustParseAddrPort("[2001:db8::1]:40000")
	v6b := netip.MustParseAddrPort("[2001:db8::2]:40000")
	mapped := netip.MustParseAddrPort("[::ffff:192.0.2.9]:40000")

	a := announceArgs{txID: 1, hash: "hash-6", peer: "six-a", port: 6881, numWant: -1}
	a.connID = h.connect(t, v6a)
	decodeAnnounce(t, h.send(a.packet(), v6a), 1, true)

	m := announceArgs{txID: 3, hash: "hash-6", peer: "mapped", port: 6883, numWant: -1, left: 1}
	m.connID = h.connect(t, mapped)
	r := decodeAnnounce(t, h.send(m.packet(), mapped), 3, false)
	if len(r.peers) != 0 {
		t.Fatalf("an IPv4 (mapped) client got IPv6 peers: %v", r.peers)
	}

	b := announceArgs{txID: 2, hash: "hash-6", peer: "six-b", port: 6882, numWant: -1, left: 1}
	b.connID = h.connect(t, v6b)
	r = decodeAnnounce(t, h.send(b.packet(), v6b), 2, true)
	if len(r.peers) != 1 || r.peers[0] != netip.MustParseAddrPort("[2001:db8::1]:6881") {
		t.Fatalf("IPv6 leecher got %v", r.peers)
	}
	if r.seeders != 1 || r.leechers != 2 {
		t.Fatalf("counts %+v: the mapped client is one IPv4 leecher", r)
	}
}

func TestNumWantCapAndIPField(t *testing.T) {
	h := newHarness(t, Config{MaxNumWant: 3, AllowIPParam: true})
	for i := range 10 {
		from := netip.AddrPortFrom(netip.AddrFrom4([4]byte{10, 0, 0, byte(i + 1)}), 1000)
		a := announceArgs{txID: 1, hash: "hash-n", peer: fmt.Sprint("peer", i), port: 6881, numWant: 0}
		a.connID = h.connect(t, from)
		decodeAnnounce(t, h.send(a.packet(), from), 1, false)
	}
	from := netip.MustParseAddrPort("10.9.9.9:1000")
	a := announceArgs{txID: 5, hash: "hash-n", peer: "asker", left: 1, port: 6881, numWant: -1, ip: [4]byte{198, 51, 100, 7}}
	a.connID = h.connect(t, from)
	r := decodeAnnounce(t, h.send(a.packet(), from), 5, false)
	if len(r.peers) != 3 {
		t.Fatalf("got %d peers, want the UDP cap of 3", len(r.peers))
	}

	// The named IP is what other peers are given.
	b := announceArgs{txID: 6, hash: "hash-n", peer: "peer0", port: 6881, numWant: 200}
	b.connID = h.connect(t, netip.MustParseAddrPort("10.0.0.1:1000"))
	found := false
	for range 20 {
		for _, p := range decodeAnnounce(t, h.send(b.packet(), netip.MustParseAddrPort("10.0.0.1:1000")), 6, false).peers {
			found = found || p.Addr() == netip.MustParseAddrPort("198.51.100.7:1").Addr()
		}
	}
	if !found {
		t.Fatal("the address named in the IP field was never handed out")
	}
}

// scrapePacket is a scrape of the hashes, each padded to 20 bytes.
func scrapePacket(connID uint64, txID uint32, hashes ...string) []byte {
	p := binary.BigEndian.AppendUint64(nil, connID)
	p = binary.BigEndian.AppendUint32(p, actionScrape)
	p = binary.BigEndian.AppendUint32(p, txID)
	for _, s := range hashes {
		p = append(p, fmt.Sprintf("%-20s", s)...)
	}
	return p
}

func TestScrape(t *testing.T) {
	h := newHarness(t, Config{MaxScrapeInfoHashes: 3})
	a := announceArgs{txID: 1, hash: "hash-s", peer: "p1", port: 1, numWant: -1, event: 1}
	a.connID = h.connect(t, seederAddr)
	decodeAnnounce(t, h.send(a.packet(), seederAddr), 1, false)

	scrape := func(connID uint64, hashes ...string) []byte { return scrapePacket(connID, 9, hashes...) }
	connID := h.connect(t, leecherAddr)
	out := h.send(scrape(connID, "unknown", "hash-s", "unknown"), leecherAddr)
	if len(out) != 8+3*12 || binary.BigEndian.Uint32(out) != actionScrape {
		t.Fatalf("scrape answered %x", out)
	}
	want := []uint32{0, 0, 0, 1, 1, 0, 0, 0, 0} // seeders, completed, leechers per hash, in the order asked
	for i, w := range want {
		if got := binary.BigEndian.Uint32(out[8+4*i:]); got != w {
			t.Fatalf("field %d = %d, want %d (answer %v)", i, got, w, out[8:])
		}
	}
	if msg := decodeError(t, h.send(scrape(connID, "a", "b", "c", "d"), leecherAddr), 9); msg != "too many info hashes in one scrape" {
		t.Errorf("4 hashes over a cap of 3: %q", msg)
	}
	if msg := decodeError(t, h.send(scrape(connID), leecherAddr), 9); !strings.HasPrefix(msg, "malformed scrape") {
		t.Errorf("no hashes: %q", msg)
	}
	if msg := decodeError(t, h.send(scrape(connID, "x")[:30], leecherAddr), 9); !strings.HasPrefix(msg, "malformed scrape") {
		t.Errorf("partial hash: %q", msg)
	}
}

func TestConnectionIDs(t *testing.T) {
	h := newHarness(t, Config{})
	a := announceArgs{txID: 4, hash: "hash-c", peer: "p", port: 1, numWant: -1}
	a.connID = h.connect(t, seederAddr)

	// From another address, or another port of the same host.
	for _, from := range []netip.AddrPort{leecherAddr, netip.AddrPortFrom(seederAddr.Addr(), 1)} {
		if msg := decodeError(t, h.send(a.packet(), from), 4); msg != "invalid connection ID" {
			t.Errorf("ID used from %v: %q", from, msg)
		}
	}
	// Forged: the time part is right, the MAC is not.
	forged := a
	forged.connID ^= 1
	if msg := decodeError(t, h.send(forged.packet(), seederAddr), 4); msg != "invalid connection ID" {
		t.Errorf("forged ID: %q", msg)
	}
	// Valid until the lifetime has passed.
	h.clock.now = h.clock.now.Add(2 * time.Minute)
	decodeAnnounce(t, h.send(a.packet(), seederAddr), 4, false)
	h.clock.now = h.clock.now.Add(time.Second)
	if msg := decodeError(t, h.send(a.packet(), seederAddr), 4); msg != "connection ID expired" {
		t.Errorf("expired ID: %q", msg)
	}
	// An ID from the future beyond the allowed skew is not accepted.
	future := a
	future.connID = h.fe.ids.issue(seederAddr, h.clock.now.Add(time.Minute))
	if msg := decodeError(t, h.send(future.packet(), seederAddr), 4); msg != "connection ID expired" {
		t.Errorf("ID from the future: %q", msg)
	}
	// The plain protocol ID is not a connection ID.
	plain := a
	plain.connID = protocolID
	if msg := decodeError(t, h.send(plain.packet(), seederAddr), 4); msg != "invalid connection ID" {
		t.Errorf("protocol ID as connection ID: %q", msg)
	}
}

func TestSharedKeyAcrossInstances(t *testing.T) {
	key := [16]byte{1, 2, 3}
	a := newHarness(t, Config{ConnIDKey: key})
	b := newHarness(t, Config{ConnIDKey: key})
	c := newHarness(t, Config{})
	id := a.connect(t, seederAddr)
	p := announceArgs{connID: id, txID: 1, hash: "hash-k", peer: "p", port: 1, numWant: -1}.packet()
	decodeAnnounce(t, b.send(p, seederAddr), 1, false)
	if msg := decodeError(t, c.send(p, seederAddr), 1); msg != "invalid connection ID" {
		t.Errorf("an instance with another key accepted the ID: %q", msg)
	}
}

func TestMalformedPackets(t *testing.T) {
	h := newHarness(t, Config{})
	id := h.connect(t, seederAddr)
	valid := announceArgs{connID: id, txID: 8, hash: "hash-m", peer: "p", port: 1, numWant: -1}

	if out := h.send(connectPacket(1)[:15], seederAddr); out != nil {
		t.Errorf("15-byte packet answered %x", out)
	}
	wrongProto := connectPacket(1)
	wrongProto[7] ^= 0xff
	if out := h.send(wrongProto, seederAddr); out != nil {
		t.Errorf("connect without the protocol ID answered %x", out)
	}
	if msg := decodeError(t, h.send(valid.packet()[:97], seederAddr), 8); msg != "malformed announce: too short" {
		t.Errorf("97-byte announce: %q", msg)
	}
	bad := valid.packet()
	binary.BigEndian.PutUint32(bad[8:], 9)
	if msg := decodeError(t, h.send(bad, seederAddr), 8); msg != "unknown action" {
		t.Errorf("action 9: %q", msg)
	}
	badEvent := valid
	badEvent.event = 4
	if msg := decodeError(t, h.send(badEvent.packet(), seederAddr), 8); msg != "invalid event" {
		t.Errorf("event 4: %q", msg)
	}
	zeroPort := valid
	zeroPort.port = 0
	if msg := decodeError(t, h.send(zeroPort.packet(), seederAddr), 8); !strings.HasPrefix(msg, "invalid port") {
		t.Errorf("port 0: %q", msg)
	}
}

func TestBEP41Options(t *testing.T) {
	// hint is what the batch hint reads of the packet (announcedPasskey):
	// the passkey when the first option, after NOPs, holds it, "" when
	// that would take more than a look.
	tests := []struct {
		name    string
		options []byte
		passkey string
		hint    string
		err     string
	}{
		{"none", nil, "", "", ""},
		{"passkey in one URLData", append([]byte{optionURLData, 20}, "/0123abcd/announce?x"...), "0123abcd", "0123abcd", ""},
		{"NOPs before one URLData", append([]byte{optionNOP, optionNOP, optionURLData, 11}, "/k/announce"...), "k", "k", ""},
		{"URLData in pieces with NOPs", append(append([]byte{optionNOP, optionURLData, 5}, "/key1"...), append([]byte{optionNOP, optionURLData, 9}, "/announce"...)...), "key1", "", ""},
		{"end of options stops reading", append([]byte{optionEnd, 0xff, 0xff}, "garbage"...), "", "", ""},
		{"unknown option skipped by length", append([]byte{0x7f, 3, 1, 2, 3, optionURLData, 12}, "/k/announce?"...), "k", "", ""},
		{"open tracker path", append([]byte{optionURLData, 9}, "/announce"...), "", "", ""},
		{"truncated URLData", append([]byte{optionURLData, 30}, "/short"...), "", "", "malformed announce: truncated BEP 41 option"},
		{"missing length", []byte{optionNOP, 0x42}, "", "", "malformed announce: truncated BEP 41 option"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var req bittorrent.AnnounceRequest
			p := announceArgs{hash: "h", peer: "p", port: 1, options: tt.options}.packet()
			if hint := announcedPasskey(p); hint != tt.hint {
				t.Errorf("hinted passkey %q, want %q", hint, tt.hint)
			}
			_, err := parseAnnounce(p, &req)
			if tt.err != "" {
				if err == nil || err.Error() != tt.err {
					t.Fatalf("error %v, want %q", err, tt.err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if req.Passkey != tt.passkey {
				t.Fatalf("passkey %q, want %q", req.Passkey, tt.passkey)
			}
		})
	}
}

// urlDataOption is a BEP 41 URL data option carrying path.
func urlDataOption(path string) []byte {
	return append([]byte{optionURLData, byte(len(path))}, path...)
}

// readerModes are the two ways readers wait for packets: as many readers as
// CPUs block in the kernel, more than that wait in the Go poller.
var readerModes = []struct {
	name    string
	readers func() int
}{
	{"blocking", func() int { return runtime.GOMAXPROCS(0) }},
	{"poller", func() int { return 2*runtime.GOMAXPROCS(0) + 1 }},
}

// The socket test runs the real listener on both loopback families and on
// a dual-stack socket, where IPv4 clients arrive as IPv4-mapped addresses:
// they must be answered, and seen by other peers, as plain IPv4.
func TestListenerBothFamilies(t *testing.T) {
	cases := []struct{ listen, dial string }{
		{"127.0.0.1:0", "127.0.0.1"},
		{"[::1]:0", "::1"},
		{":0", "127.0.0.1"},
		{":0", "::1"},
	}
	for _, mode := range readerModes {
		for _, c := range cases {
			t.Run(mode.name+"/"+c.listen+"/"+c.dial, func(t *testing.T) {
				h := newHarness(t, Config{Addr: c.listen, Readers: mode.readers()})
				h.fe.cfg.Now = time.Now
				local, err := h.fe.ListenAndServe()
				if err != nil {
					if strings.Contains(c.listen, "::1") {
						t.Skipf("no IPv6 loopback: %v", err)
					}
					t.Fatal(err)
				}
				defer h.fe.Shutdown(context.Background())
				port := local.(*net.UDPAddr).Port
				v6 := strings.Contains(c.dial, ":")
				target := net.JoinHostPort(c.dial, fmt.Sprint(port))
				clients := make([]*net.UDPConn, 2)
				for i := range clients {
					conn, err := net.Dial("udp", target)
					if err != nil {
						if v6 {
							t.Skipf("no IPv6 loopback: %v", err)
						}
						t.Fatal(err)
					}
					defer conn.Close()
					clients[i] = conn.(*net.UDPConn)
				}
				roundTrip := func(conn *net.UDPConn, p []byte) []byte {
					conn.SetDeadline(time.Now().Add(5 * time.Second))
					if _, err := conn.Write(p); err != nil {
						t.Fatal(err)
					}
					buf := make([]byte, 2048)
					n, err := conn.Read(buf)
					if err != nil {
						t.Fatal(err)
					}
					return buf[:n]
				}
				var seen []netip.AddrPort
				for i, conn := range clients {
					out := roundTrip(conn, connectPacket(3))
					id := binary.BigEndian.Uint64(out[8:])
					// A seeder, then a leecher.
					a := announceArgs{connID: id, txID: 4, hash: "hash-l", peer: fmt.Sprint("p", i), left: uint64(i), port: 6881, numWant: -1}
					r := decodeAnnounce(t, roundTrip(conn, a.packet()), 4, v6)
					if r.seeders != 1 || r.leechers != uint32(i) {
						t.Fatalf("client %d: %+v", i, r)
					}
					seen = r.peers
				}
				// The second client is told of the first at the
				// address it announced from, in its own family.
				want := netip.AddrPortFrom(netip.MustParseAddr(c.dial), 6881)
				if len(seen) != 1 || seen[0] != want {
					t.Fatalf("second client got peers %v, want [%v]", seen, want)
				}
			})
		}
	}
}

// Many packets in flight at once, from several sockets, are each answered
// once and to the socket that sent them, however the readers batch them.
func TestListenerManyInFlight(t *testing.T) {
	for _, mode := range readerModes {
		t.Run(mode.name, func(t *testing.T) {
			h := newHarness(t, Config{Addr: "127.0.0.1:0", Readers: mode.readers(), Batch: 8})
			h.fe.cfg.Now = time.Now
			local, err := h.fe.ListenAndServe()
			if err != nil {
				t.Fatal(err)
			}
			const sockets, perSocket = 4, 100
			conns := make([]*net.UDPConn, sockets)
			for i := range conns {
				conn, err := net.DialUDP("udp", nil, local.(*net.UDPAddr))
				if err != nil {
					t.Fatal(err)
				}
				defer conn.Close()
				conns[i] = conn
			}
			for _, conn := range conns {
				for tx := range perSocket {
					if _, err := conn.Write(connectPacket(uint32(tx))); err != nil {
						t.Fatal(err)
					}
				}
			}
			for i, conn := range conns {
				got := make(map[uint32]bool)
				buf := make([]byte, 2048)
				conn.SetReadDeadline(time.Now().Add(5 * time.Second))
				for len(got) < perSocket {
					n, err := conn.Read(buf)
					if err != nil {
						t.Fatalf("socket %d: %d answers of %d: %v", i, len(got), perSocket, err)
					}
					if n != connectRespLen || binary.BigEndian.Uint32(buf) != actionConnect {
						t.Fatalf("socket %d: answer %x", i, buf[:n])
					}
					tx := binary.BigEndian.Uint32(buf[4:])
					if tx >= perSocket || got[tx] {
						t.Fatalf("socket %d: unexpected or repeated transaction %d", i, tx)
					}
					got[tx] = true
				}
			}
			// Shutdown returns once every reader has stopped.
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			defer cancel()
			if err := h.fe.Shutdown(ctx); err != nil {
				t.Fatalf("shutdown: %v", err)
			}
		})
	}
}

// countingObserver records how many requests it was told of, and how many
// of them were timed.
type countingObserver struct{ timed, counted int }

func (o *countingObserver) Observe(string, error, time.Duration) { o.timed++ }
func (o *countingObserver) Count(string, error)                  { o.counted++ }

// Every request is reported, and the first of every timingSample is timed:
// the request counters stay exact while the clock is read for a sample.
func TestObserverTimesASample(t *testing.T) {
	obs := &countingObserver{}
	h := newHarness(t, Config{Observer: obs})
	from := netip.MustParseAddrPort("10.0.0.1:6881")
	const requests = 2*timingSample + 1
	for i := range requests {
		if out := h.send(connectPacket(uint32(i)), from); len(out) != connectRespLen {
			t.Fatalf("connect %d answered %x", i, out)
		}
	}
	if obs.timed+obs.counted != requests || obs.timed != 3 {
		t.Fatalf("%d requests timed and %d counted; want all %d reported, 3 of them timed", obs.timed, obs.counted, requests)
	}
}

// hintedTracker records the hints and the announces a frontend hands it.
type hintedTracker struct {
	*tracker.Tracker
	mu sync.Mutex
	// hinted is every hash Warm was given, with the peer id and passkey
	// given beside it; unhinted the hashes of announces and scrapes
	// that came before a hint of them, or of announces hinted with
	// another peer or passkey.
	hinted   map[bittorrent.InfoHash]hint
	unhinted []bittorrent.InfoHash
}

type hint struct {
	peer    bittorrent.PeerID
	passkey string
}

func (h *hintedTracker) Warm(hashes []bittorrent.InfoHash, peers []bittorrent.PeerID, passkeys []string) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if len(peers) != len(hashes) || len(passkeys) != len(hashes) {
		panic(fmt.Sprintf("hinted %d hashes with %d peer ids and %d passkeys", len(hashes), len(peers), len(passkeys)))
	}
	for i, x := range hashes {
		// Copied: the frontend's passkeys are views of its packets.
		h.hinted[x] = hint{peers[i], strings.Clone(passkeys[i])}
	}
	h.Tracker.Warm(hashes, peers, passkeys)
}

func (h *hintedTracker) Announce(ctx context.Context, req *bittorrent.AnnounceRequest, resp *bittorrent.AnnounceResponse) error {
	h.mu.Lock()
	if hi, ok := h.hinted[req.InfoHash]; !ok || hi.peer != req.PeerID || hi.passkey != req.Passkey {
		h.unhinted = append(h.unhinted, req.InfoHash)
	}
	h.mu.Unlock()
	return h.Tracker.Announce(ctx, req, resp)
}

func (h *hintedTracker) Scrape(ctx context.Context, req *bittorrent.ScrapeRequest, resp *bittorrent.ScrapeResponse) error {
	h.mu.Lock()
	for _, x := range req.InfoHashes {
		if _, ok := h.hinted[x]; !ok {
			h.unhinted = append(h.unhinted, x)
		}
	}
	h.mu.Unlock()
	return h.Tracker.Scrape(ctx, req, resp)
}

// The listener hands the info hashes of each read's announces and scrapes
// to the tracker before it answers any of them, and only those (a
// connect's bytes are no info hash), with each announcing peer's id and
// passkey.
func TestListenerHintsAnnouncesAndScrapes(t *testing.T) {
	for _, mode := range readerModes {
		t.Run(mode.name, func(t *testing.T) {
			h := newHarness(t, Config{Addr: "127.0.0.1:0", Readers: mode.readers(), Batch: 8})
			ht := &hintedTracker{Tracker: h.fe.tracker.(*tracker.Tracker), hinted: map[bittorrent.InfoHash]hint{}}
			fe := New(ht, h.fe.cfg, slog.New(slog.DiscardHandler))
			fe.cfg.Now = time.Now
			local, err := fe.ListenAndServe()
			if err != nil {
				t.Fatal(err)
			}
			defer fe.Shutdown(context.Background())
			conn, err := net.DialUDP("udp", nil, local.(*net.UDPAddr))
			if err != nil {
				t.Fatal(err)
			}
			defer conn.Close()
			conn.SetDeadline(time.Now().Add(5 * time.Second))
			buf := make([]byte, 2048)
			if _, err := conn.Write(connectPacket(1)); err != nil {
				t.Fatal(err)
			}
			n, err := conn.Read(buf)
			if err != nil || n != connectRespLen {
				t.Fatalf("connect: %d bytes, %v", n, err)
			}
			id := binary.BigEndian.Uint64(buf[8:])
			// Sent back to back, so that reads hold several.
			const torrents = 20
			for i := range torrents {
				a := announceArgs{connID: id, txID: uint32(i), hash: fmt.Sprint("hinted-", i), peer: fmt.Sprint("p", i), port: 6881, numWant: -1}
				switch i % 3 {
				case 1:
					a.options = urlDataOption(fmt.Sprint("/key", i, "/announce"))
				case 2:
					// NOPs before the URL data, and a query after it.
					a.options = append([]byte{optionNOP, optionNOP}, urlDataOption(fmt.Sprint("/key", i, "/announce?x=1"))...)
				}
				if _, err := conn.Write(a.packet()); err != nil {
					t.Fatal(err)
				}
			}
			const scrapes = 5
			for i := range scrapes {
				if _, err := conn.Write(scrapePacket(id, uint32(torrents+i), fmt.Sprint("scraped-", i, "a"), fmt.Sprint("scraped-", i, "b"))); err != nil {
					t.Fatal(err)
				}
			}
			for range torrents + scrapes {
				if _, err := conn.Read(buf); err != nil {
					t.Fatal(err)
				}
				if a := binary.BigEndian.Uint32(buf); a != actionAnnounce && a != actionScrape {
					t.Fatalf("answer %x, want an announce's or a scrape's", buf[:16])
				}
			}
			ht.mu.Lock()
			defer ht.mu.Unlock()
			if len(ht.unhinted) > 0 {
				t.Fatalf("requests answered before their hint: %q", ht.unhinted)
			}
			if want := torrents + 2*scrapes; len(ht.hinted) != want {
				t.Fatalf("%d hashes hinted, want the %d announced and scraped: %v", len(ht.hinted), want, ht.hinted)
			}
		})
	}
}

// FuzzHandle feeds arbitrary packets from an address that holds no valid
// connection ID: the frontend must never panic, and must never answer with
// more bytes than it received.
func FuzzHandle(f *testing.F) {
	f.Add(connectPacket(1))
	f.Add(announceArgs{connID: 1, hash: "h", peer: "p", port: 1, options: []byte{2, 3, 'a', 'b', 'c', 0}}.packet())
	f.Add(append(binary.BigEndian.AppendUint64(nil, 5), 0, 0, 0, 2, 0, 0, 0, 1, 1, 2, 3))
	f.Add([]byte{0, 0, 4, 23, 39, 16, 25, 128, 0, 0, 0, 0})
	h := newHarness(f, Config{})
	from := netip.MustParseAddrPort("[2001:db8::9]:1")
	f.Fuzz(func(t *testing.T, p []byte) {
		if len(p) > maxPacket {
			return
		}
		out := h.handle(p, from)
		if len(out) > len(p) && binary.BigEndian.Uint32(out) != actionConnect {
			t.Fatalf("answered %d bytes to a %d-byte packet from an unverified address", len(out), len(p))
		}
	})
}

// FuzzParseAnnounce checks the announce parser, options included, on
// packets whose connection ID is valid.
func FuzzParseAnnounce(f *testing.F) {
	f.Add([]byte{optionURLData, 11, '/', 'k', '/', 'a', 'n', 'n', 'o', 'u', 'n', 'c', 'e'})
	f.Add([]byte{optionNOP, 0x33, 200})
	f.Add([]byte{optionURLData, 0})
	h := newHarness(f, Config{})
	id := h.connect(f, seederAddr)
	f.Fuzz(func(t *testing.T, options []byte) {
		p := announceArgs{connID: id, txID: 1, hash: "h", peer: "p", port: 1, numWant: 5, options: options}.packet()
		if len(p) > maxPacket {
			return
		}
		out := h.handle(p, seederAddr)
		switch binary.BigEndian.Uint32(out) {
		case actionAnnounce, actionError:
		default:
			t.Fatalf("answer %x is neither an announce nor an error", out)
		}
	})
}

// swarmPackets connects 50 peers of one swarm and announces each once; it
// returns their addresses and announce packets, which carry a passkey in a
// BEP 41 path as a private tracker's clients send.
func swarmPackets(t testing.TB, h *harness) ([]netip.AddrPort, [][]byte) {
	const swarm = 50
	path := "/0123456789abcdef0123456789abcdef/announce"
	options := append([]byte{optionURLData, byte(len(path))}, path...)
	froms := make([]netip.AddrPort, swarm)
	packets := make([][]byte, swarm)
	for i := range swarm {
		froms[i] = netip.AddrPortFrom(netip.AddrFrom4([4]byte{10, 0, byte(i >> 8), byte(i)}), 1000)
		a := announceArgs{txID: 1, hash: "hash-b", peer: fmt.Sprint("peer", i), port: 6881, left: uint64(i % 2), numWant: 50, options: options}
		a.connID = h.connect(t, froms[i])
		packets[i] = a.packet()
		h.send(packets[i], froms[i])
	}
	return froms, packets
}

// An announce allocates nothing, passkey included: at a few hundred
// thousand packets a second, each allocation is garbage to collect.
func TestAnnounceAllocatesNothing(t *testing.T) {
	h := newHarness(t, Config{})
	froms, packets := swarmPackets(t, h)
	i := 0
	allocs := testing.AllocsPerRun(500, func() {
		if out := h.handle(packets[i%len(packets)], froms[i%len(froms)]); binary.BigEndian.Uint32(out) != actionAnnounce {
			t.Fatalf("answer %x", out)
		}
		i++
	})
	if allocs != 0 {
		t.Fatalf("%v allocations per announce, want none", allocs)
	}
}

// BenchmarkAnnounce measures one announce packet through the frontend, the
// tracker logic and the memory cache into a swarm of 50, with no socket.
func BenchmarkAnnounce(b *testing.B) {
	h := newHarness(b, Config{})
	froms, packets := swarmPackets(b, h)
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; b.Loop(); i++ {
		if out := h.handle(packets[i%len(packets)], froms[i%len(froms)]); len(out) < 20 {
			b.Fatalf("answer %x", out)
		}
	}
}

// BenchmarkConnect measures the connection ID handshake.
func BenchmarkConnect(b *testing.B) {
	h := newHarness(b, Config{})
	p := connectPacket(1)
	b.ReportAllocs()
	for b.Loop() {
		h.handle(p, seederAddr)
	}
}
