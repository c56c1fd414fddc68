// Package bittorrent holds the wire-level types that every frontend, the
// tracker logic and the cache drivers share: info hashes, peer ids, peers,
// events and the protocol-free announce and scrape requests and responses.
package bittorrent

import (
	"encoding/hex"
	"errors"
	"net/netip"
	"time"
)

// InfoHash identifies a torrent: the SHA-1 of its info dictionary (BEP 3) or,
// for v2 and hybrid torrents, the SHA-256 truncated to 20 bytes (BEP 52).
type InfoHash [20]byte

// String returns the hash as 40 lower-case hex digits, the form operators
// see in logs and lists.
func (h InfoHash) String() string { return hex.EncodeToString(h[:]) }

// ParseInfoHash reads a hash written as 40 hex digits.
func ParseInfoHash(s string) (InfoHash, error) {
	var h InfoHash
	if len(s) != 2*len(h) {
		return h, errors.New("info hash must be 40 hex digits")
	}
	if _, err := hex.Decode(h[:], []byte(s)); err != nil {
		return h, errors.New("info hash must be 40 hex digits")
	}
	return h, nil
}

// PeerID is the 20 bytes a client picks to name itself in a swarm.
type PeerID [20]byte

// String returns the peer id as hex: peer ids are binary and often not
// printable.
func (id PeerID) String() string { return hex.EncodeToString(id[:]) }

// Event is what an announce reports about the peer's session.
type Event uint8

// The announce events of BEP 3, plus paused from BEP 21.
const (
	// None is a regular, periodic announce.
	None Event = iota
	// Started is the first announce of a session.
	Started
	// Stopped means the peer leaves the swarm.
	Stopped
	// Completed means the download has just finished.
	Completed
	// Paused means the peer is a partial seed: it keeps what it has but
	// downloads no more (BEP 21).
	Paused
)

var eventNames = [...]string{None: "", Started: "started", Stopped: "stopped", Completed: "completed", Paused: "paused"}

// String returns the event as it is spelt on the wire.
func (e Event) String() string {
	if int(e) < len(eventNames) {
		return eventNames[e]
	}
	return "unknown"
}

// ParseEvent reads the event parameter of an HTTP announce. The empty string
// and "empty" (sent by some old clients) both mean None.
func ParseEvent(s string) (Event, bool) {
	switch s {
	case "", "empty":
		return None, true
	case "started":
		return Started, true
	case "stopped":
		return Stopped, true
	case "completed":
		return Completed, true
	case "paused":
		return Paused, true
	}
	return None, false
}

// Peers is the peers of one address family in an answer, kept in the
// compact form in which BEP 23 (IPv4) and BEP 7 (IPv6) send them, so that a
// store can copy them out of its own records and a frontend can put them on
// the wire without converting each peer twice. A is [4]byte for IPv4
// peers and [16]byte for IPv6 ones. The zero value is an empty list.
type Peers[A [4]byte | [16]byte] struct {
	// Compact holds the peers' endpoints back to back, each the address
	// (4 or 16 bytes) followed by the port, big-endian.
	Compact []byte
	// IDs holds the peers' ids in the same order when the answer was
	// asked to carry them and the store keeps them; it is empty
	// otherwise.
	IDs []PeerID
}

// Peers4 is a list of IPv4 peers, 6 bytes each.
type Peers4 = Peers[[4]byte]

// Peers6 is a list of IPv6 peers, 18 bytes each.
type Peers6 = Peers[[16]byte]

// Size is the length of one peer's compact endpoint: 6 for IPv4, 18 for
// IPv6.
func (p *Peers[A]) Size() int {
	var a A
	return len(a) + 2
}

// Len returns how many peers the list holds.
func (p *Peers[A]) Len() int { return len(p.Compact) / p.Size() }

// At returns the i-th peer's address and port.
func (p *Peers[A]) At(i int) netip.AddrPort {
	n := p.Size()
	e := p.Compact[i*n : i*n+n]
	addr, _ := netip.AddrFromSlice(e[:n-2])
	return netip.AddrPortFrom(addr, uint16(e[n-2])<<8|uint16(e[n-1]))
}

// ID returns the i-th peer's id, or false when the list carries no ids.
func (p *Peers[A]) ID(i int) (PeerID, bool) {
	if len(p.IDs) != p.Len() {
		return PeerID{}, false
	}
	return p.IDs[i], true
}

// Append adds a peer. It is for answers built outside a store's hot path
// (tests, remote stores): ap must be of the list's family, and id is
// appended only when it is not nil.
func (p *Peers[A]) Append(ap netip.AddrPort, id *PeerID) {
	a16 := ap.Addr().As16()
	addr := a16[16+2-p.Size():]
	p.Compact = append(p.Compact, addr...)
	p.Compact = append(p.Compact, byte(ap.Port()>>8), byte(ap.Port()))
	if id != nil {
		p.IDs = append(p.IDs, *id)
	}
}

// Truncate keeps the first n peers; it does nothing to a shorter list.
func (p *Peers[A]) Truncate(n int) {
	if p.Len() <= n {
		return
	}
	p.Compact = p.Compact[:n*p.Size()]
	if len(p.IDs) > n {
		p.IDs = p.IDs[:n]
	}
}

// Reset empties the list, keeping its buffers' capacity.
func (p *Peers[A]) Reset() { p.Compact, p.IDs = p.Compact[:0], p.IDs[:0] }

// AnnounceRequest is an announce, whatever protocol carried it.
//
// A client reaches the tracker from one address, but may name one address of
// each family (BEP 7's ipv4= and ipv6=, when the operator trusts them). IPv4
// and IPv6 hold those; either may be the zero Addr. Both are unmapped: an
// IPv4-mapped IPv6 address is stored as IPv4.
type AnnounceRequest struct {
	InfoHash   InfoHash
	PeerID     PeerID
	IPv4       netip.Addr
	IPv6       netip.Addr
	Port       uint16
	Uploaded   uint64
	Downloaded uint64
	Left       uint64
	Event      Event
	// NumWant is the number of peers asked for; -1 when the client did
	// not say, so the tracker's default applies.
	NumWant int32
	// Compact and NoPeerID choose the HTTP peer list model (BEP 23); the
	// tracker logic reads them only to ask the store for peer ids when the
	// answer lists them.
	Compact  bool
	NoPeerID bool
	// Key is the client's session key, which lets a tracker recognise a
	// client whose address changed.
	Key uint32
	// Passkey is the secret from /<passkey>/announce, empty on an open
	// tracker URL. Frontends hand it over as a view of their request
	// buffer: it is read during the Announce call and never kept.
	Passkey string
	// Source is the address the request came from, reported back as
	// BEP 24's external ip.
	Source netip.Addr
	// Corrupt is the client's count of bytes it discarded as bad.
	Corrupt uint64
	// UserAgent is the HTTP client's User-Agent header, empty over UDP.
	UserAgent string
}

// Reset clears the request for reuse from a pool.
func (r *AnnounceRequest) Reset() { *r = AnnounceRequest{} }

// AnnounceResponse is the tracker's answer to an announce. Peers4 and Peers6
// are appended to, so a caller that reuses a response keeps its buffers.
type AnnounceResponse struct {
	Interval    time.Duration
	MinInterval time.Duration
	Complete    uint32
	Incomplete  uint32
	Snatches    uint32
	Peers4      Peers4
	Peers6      Peers6
}

// Reset clears the response for reuse, keeping the peer buffers' capacity.
func (r *AnnounceResponse) Reset() {
	r.Peers4.Reset()
	r.Peers6.Reset()
	*r = AnnounceResponse{Peers4: r.Peers4, Peers6: r.Peers6}
}

// Scrape holds the counts of one swarm.
type Scrape struct {
	InfoHash   InfoHash
	Complete   uint32
	Incomplete uint32
	Snatches   uint32
}

// ScrapeRequest asks for the counts of one or more swarms.
type ScrapeRequest struct {
	InfoHashes []InfoHash
	Passkey    string
	Source     netip.Addr
}

// ScrapeResponse holds the counts of every known swarm that was asked for;
// unknown swarms are left out.
type ScrapeResponse struct {
	Files []Scrape
}

// ClientError is an error caused by the client's request. Its text is sent
// to the client as the failure reason, so it must say what was wrong and must
// not leak anything internal.
type ClientError string

// Error returns the failure reason.
func (e ClientError) Error() string { return string(e) }
