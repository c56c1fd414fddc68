package udp

import (
	"encoding/binary"
	"fmt"
	"net/netip"
	"testing"
	"time"

	"github.com/chihaya/chihaya/tracker"
)

// Packets the frontend cannot parse, after a valid connection ID, spend the
// source's bad-request budget in the tracker; packets with a wrong
// connection ID, which anyone can forge in another's name, do not.
func TestBadRequestLimit(t *testing.T) {
	h := newHarness(t, Config{})
	h.fe.tracker.(*tracker.Tracker).Reconfigure(tracker.Config{
		AnnounceInterval: 30 * time.Minute, MinAnnounceInterval: 15 * time.Minute,
		DefaultNumWant: 50, MaxNumWant: 200, MaxScrapeInfoHashes: 74,
		BadRequestsPerMinute: 3,
	})

	// Forged packets in the victim's name: invalid connection IDs.
	victim := seederAddr
	for range 10 {
		forged := announceArgs{connID: 12345, txID: 1, hash: "hash-l", peer: "victim", port: 6881}
		if msg := decodeError(t, h.send(forged.packet(), victim), 1); msg != "invalid connection ID" {
			t.Fatalf("forged packet: %q", msg)
		}
	}
	id := h.connect(t, victim)
	valid := announceArgs{connID: id, txID: 2, hash: "hash-l", peer: "victim", port: 6881, numWant: -1}
	decodeAnnounce(t, h.send(valid.packet(), victim), 2, false)

	abuser := leecherAddr
	id = h.connect(t, abuser)
	ok := announceArgs{connID: id, txID: 3, hash: "hash-l", peer: "abuser", port: 6881, numWant: -1}
	unknown := ok.packet()
	binary.BigEndian.PutUint32(unknown[8:], 9)
	// txID 3, like the announces.
	scrape := func(hashes ...string) []byte {
		p := binary.BigEndian.AppendUint64(nil, id)
		p = binary.BigEndian.AppendUint32(p, actionScrape)
		p = binary.BigEndian.AppendUint32(p, 3)
		for _, s := range hashes {
			p = append(p, fmt.Sprintf("%-20s", s)...)
		}
		return p
	}
	for i, p := range [][]byte{ok.packet()[:97], unknown, scrape()} {
		if msg := decodeError(t, h.send(p, abuser), 3); msg == "too many bad requests, slow down" {
			t.Fatalf("bad packet %d refused within the budget", i+1)
		}
	}
	for _, p := range [][]byte{ok.packet()[:97], ok.packet(), scrape("hash-l")} {
		if msg := decodeError(t, h.send(p, abuser), 3); msg != "too many bad requests, slow down" {
			t.Fatalf("from a blocked address: %q", msg)
		}
	}
	// The same host from another port is the same address.
	other := netip.AddrPortFrom(abuser.Addr(), abuser.Port()+1)
	p := announceArgs{connID: h.connect(t, other), txID: 4, hash: "hash-l", peer: "abuser", port: 6881}.packet()
	if msg := decodeError(t, h.send(p, other), 4); msg != "too many bad requests, slow down" {
		t.Fatalf("another port of a blocked address: %q", msg)
	}
	decodeAnnounce(t, h.send(valid.packet(), victim), 2, false)
}
