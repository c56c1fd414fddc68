package bittorrent

import (
	"net/netip"
	"testing"
)

// TestPeersRoundTrip: what Append puts in a list comes back from At and ID
// in order, in the compact form BEP 23 and BEP 7 send on the wire.
func TestPeersRoundTrip(t *testing.T) {
	var p4 Peers4
	var p6 Peers6
	eps4 := []netip.AddrPort{netip.MustParseAddrPort("10.1.2.3:6881"), netip.MustParseAddrPort("192.0.2.9:65535")}
	eps6 := []netip.AddrPort{netip.MustParseAddrPort("[2001:db8::1]:1"), netip.MustParseAddrPort("[::ffff:10.0.0.1]:443")}
	for i := range 2 {
		id := PeerID{byte(i + 1)}
		p4.Append(eps4[i], &id)
		p6.Append(eps6[i], &id)
	}
	if got, want := string(p4.Compact), "\x0a\x01\x02\x03\x1a\xe1\xc0\x00\x02\x09\xff\xff"; got != want {
		t.Errorf("IPv4 compact list %x, want %x", got, want)
	}
	if p4.Len() != 2 || p6.Len() != 2 || len(p6.Compact) != 36 {
		t.Fatalf("lengths %d and %d (%d bytes), want 2 and 2 (36 bytes)", p4.Len(), p6.Len(), len(p6.Compact))
	}
	for i := range 2 {
		if p4.At(i) != eps4[i] || p6.At(i) != eps6[i] {
			t.Errorf("peer %d: %v and %v, want %v and %v", i, p4.At(i), p6.At(i), eps4[i], eps6[i])
		}
		if id, ok := p6.ID(i); !ok || id[0] != byte(i+1) {
			t.Errorf("peer %d: id %x, %v", i, id, ok)
		}
	}

	p6.Truncate(1)
	if p6.Len() != 1 || len(p6.IDs) != 1 || p6.At(0) != eps6[0] {
		t.Errorf("after Truncate(1): %d peers, %d ids, first %v", p6.Len(), len(p6.IDs), p6.At(0))
	}
	p6.Truncate(5)
	if p6.Len() != 1 {
		t.Errorf("Truncate beyond the length changed it to %d", p6.Len())
	}

	// A list without ids says so rather than handing out zero ids.
	var bare Peers4
	bare.Append(eps4[0], nil)
	if _, ok := bare.ID(0); ok {
		t.Error("a list without ids reported an id")
	}
	bare.Reset()
	if bare.Len() != 0 || cap(bare.Compact) == 0 {
		t.Errorf("Reset left %d peers and capacity %d", bare.Len(), cap(bare.Compact))
	}
}
