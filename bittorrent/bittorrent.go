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

// Peer is one endpoint of a peer as it is handed to other peers.
type Peer struct {
	ID       PeerID
	AddrPort netip.AddrPort
}

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
	// tracker logic does not read them.
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
	Peers4      []Peer
	Peers6      []Peer
}

// Reset clears the response for reuse, keeping the peer buffers' capacity.
func (r *AnnounceResponse) Reset() {
	*r = AnnounceResponse{Peers4: r.Peers4[:0], Peers6: r.Peers6[:0]}
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
