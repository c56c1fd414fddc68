package main

import (
	"bytes"
	"encoding/binary"
	"strings"
	"testing"
)

// The offsets below are those frontend/udp/protocol.go reads and writes.

func TestConnectRequest(t *testing.T) {
	p := appendConnectReq(nil, 0xDEADBEEF)
	want := []byte{0, 0, 0x04, 0x17, 0x27, 0x10, 0x19, 0x80, 0, 0, 0, 0, 0xDE, 0xAD, 0xBE, 0xEF}
	if !bytes.Equal(p, want) {
		t.Fatalf("connect = % x, want % x", p, want)
	}
	if len(p) != udpHeaderLen {
		t.Fatalf("length %d", len(p))
	}
}

func TestAnnounceRequestLayout(t *testing.T) {
	a := udpAnnounce{
		downloaded: 11, left: 22, uploaded: 33,
		key: 0xCAFEBABE, numWant: 50, port: 6881,
	}
	copy(a.infoHash[:], "aaaaaaaaaaaaaaaaaaaa")
	copy(a.peerID[:], "-CB0100-000000000042")
	for _, c := range []struct {
		e    event
		code uint32
	}{{evNone, 0}, {evCompleted, 1}, {evStarted, 2}, {evStopped, 3}} {
		a.event = c.e
		p := appendAnnounceReq(nil, 0x0102030405060708, 77, &a)
		if len(p) != udpAnnounceLen {
			t.Fatalf("announce is %d bytes, want %d", len(p), udpAnnounceLen)
		}
		be := binary.BigEndian
		switch {
		case be.Uint64(p[0:8]) != 0x0102030405060708:
			t.Error("connection id")
		case be.Uint32(p[8:12]) != actAnnounce:
			t.Error("action")
		case be.Uint32(p[12:16]) != 77:
			t.Error("transaction id")
		case string(p[16:36]) != "aaaaaaaaaaaaaaaaaaaa":
			t.Error("info hash")
		case string(p[36:56]) != "-CB0100-000000000042":
			t.Error("peer id")
		case be.Uint64(p[56:64]) != 11 || be.Uint64(p[64:72]) != 22 || be.Uint64(p[72:80]) != 33:
			t.Error("downloaded, left, uploaded")
		case be.Uint32(p[80:84]) != c.code:
			t.Errorf("event %v sent as %d, want %d", c.e, be.Uint32(p[80:84]), c.code)
		case be.Uint32(p[84:88]) != 0:
			t.Error("the IP field must be zero")
		case be.Uint32(p[88:92]) != 0xCAFEBABE:
			t.Error("key")
		case int32(be.Uint32(p[92:96])) != 50:
			t.Error("numwant")
		case be.Uint16(p[96:98]) != 6881:
			t.Error("port")
		}
	}
}

func TestAnnounceRequestCarriesPasskeyAsURLData(t *testing.T) {
	a := udpAnnounce{path: "/secret/announce"}
	p := appendAnnounceReq(nil, 1, 2, &a)
	opts := p[udpAnnounceLen:]
	want := append([]byte{bep41URLData, byte(len(a.path))}, a.path...)
	if !bytes.Equal(opts, want) {
		t.Fatalf("options % x, want % x", opts, want)
	}

	// A path longer than one option goes in several, joined in order.
	a.path = "/" + strings.Repeat("k", 300) + "/announce"
	opts = appendAnnounceReq(nil, 1, 2, &a)[udpAnnounceLen:]
	var joined []byte
	for len(opts) > 0 {
		if opts[0] != bep41URLData || int(opts[1]) > len(opts)-2 {
			t.Fatalf("bad option % x", opts[:2])
		}
		joined = append(joined, opts[2:2+int(opts[1])]...)
		opts = opts[2+int(opts[1]):]
	}
	if string(joined) != a.path {
		t.Fatalf("joined URL data %q", joined)
	}
}

func TestScrapeRequest(t *testing.T) {
	p := appendScrapeHeader(nil, 9, 10)
	p = append(p, bytes.Repeat([]byte{'h'}, 40)...)
	if len(p) != udpHeaderLen+40 || binary.BigEndian.Uint32(p[8:12]) != actScrape || binary.BigEndian.Uint32(p[12:16]) != 10 {
		t.Fatalf("scrape % x", p)
	}
	// The largest scrape still fits one Ethernet-sized packet.
	if udpHeaderLen+20*udpMaxScrapeHashes > 1500 {
		t.Fatal("udpMaxScrapeHashes is too large")
	}
}

func answer(action, txID uint32, body ...[]byte) []byte {
	p := binary.BigEndian.AppendUint32(nil, action)
	p = binary.BigEndian.AppendUint32(p, txID)
	for _, b := range body {
		p = append(p, b...)
	}
	return p
}

func u32(vs ...uint32) []byte {
	var b []byte
	for _, v := range vs {
		b = binary.BigEndian.AppendUint32(b, v)
	}
	return b
}

func TestParseAnswers(t *testing.T) {
	var a udpAnswer
	if err := parseAnswer(answer(actConnect, 5, u32(0x11223344, 0x55667788)), false, &a); err != nil || a.txID != 5 || a.connID != 0x1122334455667788 {
		t.Fatalf("connect: %+v, %v", a, err)
	}

	// interval 1800, 4 leechers, 6 seeders, then the peers.
	head := u32(1800, 4, 6)
	v4 := answer(actAnnounce, 6, head, bytes.Repeat([]byte{127, 0, 0, 1, 0x1A, 0xE1}, 3))
	if err := parseAnswer(v4, false, &a); err != nil || a.peers != 3 || a.interval != 1800 || a.leechers != 4 || a.seeders != 6 {
		t.Fatalf("announce v4: %+v, %v", a, err)
	}
	v6 := answer(actAnnounce, 6, head, make([]byte, 2*18))
	if err := parseAnswer(v6, true, &a); err != nil || a.peers != 2 {
		t.Fatalf("announce v6: %+v, %v", a, err)
	}
	if err := parseAnswer(answer(actAnnounce, 6, head), false, &a); err != nil || a.peers != 0 {
		t.Fatalf("announce without peers: %+v, %v", a, err)
	}

	// complete, downloaded, incomplete per hash asked.
	sc := answer(actScrape, 7, u32(1, 2, 3, 4, 5, 6))
	if err := parseAnswer(sc, false, &a); err != nil || a.scraped != 2 {
		t.Fatalf("scrape: %+v, %v", a, err)
	}

	e := answer(actError, 8, []byte("connection ID expired"))
	if err := parseAnswer(e, false, &a); err != nil || a.action != actError || string(a.msg) != "connection ID expired" || a.txID != 8 {
		t.Fatalf("error: %+v, %v", a, err)
	}

	for name, p := range map[string][]byte{
		"short":          {0, 0, 0, 1},
		"short connect":  answer(actConnect, 1, u32(1)),
		"short announce": answer(actAnnounce, 1, u32(1, 2)),
		"ragged peers":   answer(actAnnounce, 1, head, []byte{1, 2, 3, 4, 5}),
		"v4 peers as v6": answer(actAnnounce, 1, head, make([]byte, 12)),
		"ragged scrape":  answer(actScrape, 1, u32(1, 2)),
		"unknown action": answer(9, 1),
	} {
		v6 := name == "v4 peers as v6"
		if err := parseAnswer(p, v6, &a); err == nil {
			t.Errorf("%s: accepted", name)
		}
	}
}
