// Package cache defines the swarm store: the fast-changing state of every
// swarm, shared by all tracker processes that use the same store. Drivers
// register themselves by name, as database/sql drivers do, and are chosen by
// the configuration.
package cache

import (
	"context"
	"encoding/json"
	"log/slog"
	"net/netip"
	"time"

	"github.com/chihaya/chihaya/bittorrent"
	"github.com/chihaya/chihaya/internal/registry"
)

// Announce is what the tracker logic asks of the store for one announce. A
// driver answers it in one step (for a remote store: one round trip).
type Announce struct {
	InfoHash bittorrent.InfoHash
	// UserID and PeerID identify the peer: on a private tracker two
	// users' peers are different peers even with equal peer ids. UserID
	// is 0 on an open tracker.
	UserID uint32
	PeerID bittorrent.PeerID
	// IPv4 and IPv6 are the peer's endpoints; a zero Addr means the
	// request carried no address of that family. The port is shared.
	IPv4 netip.Addr
	IPv6 netip.Addr
	Port uint16
	// Seeder is true when the peer has nothing left to download.
	Seeder bool
	// Event is the announce's event. Stopped removes the peer; Completed
	// counts a snatch the first time a peer reports it; Paused marks a
	// partial seed, which is handed only to peers that download.
	Event bittorrent.Event
	// Uploaded and Downloaded are the session totals the client reported,
	// kept so the next announce can be turned into a transfer delta.
	Uploaded   uint64
	Downloaded uint64
	// NumWant is how many peers to return per address family the request
	// has an address in. Zero returns none.
	NumWant int
	// PeerIDs asks for the peers' ids beside their endpoints, for an
	// answer in BEP 3's dictionary model. A store that keeps no ids
	// leaves them out.
	PeerIDs bool
}

// Result is the store's answer. Peers4 and Peers6 are appended to, in the
// compact form the wire carries, so that the store's records go out with
// one copy.
type Result struct {
	Complete   uint32
	Incomplete uint32
	Snatches   uint32
	// Snatched is true when this announce counted a snatch: the first
	// Completed event of this peer while it is in the swarm.
	Snatched bool
	Peers4   bittorrent.Peers4
	Peers6   bittorrent.Peers6
	// Known is true when the peer was in the swarm before this announce;
	// PrevUploaded and PrevDownloaded then hold the totals it reported
	// last, from which the logic computes the transfer delta.
	Known          bool
	PrevUploaded   uint64
	PrevDownloaded uint64
}

// Store is an open swarm store.
type Store interface {
	// Announce updates or removes the peer, picks peers for it at random
	// (seeders get only peers that download, never the peer itself) and
	// returns the swarm's counts.
	Announce(ctx context.Context, a *Announce, r *Result) error
	// Scrape appends the counts of each known swarm among hashes to dst,
	// in the order asked; unknown swarms are left out.
	Scrape(ctx context.Context, hashes []bittorrent.InfoHash, dst []bittorrent.Scrape) ([]bittorrent.Scrape, error)
	// Close stops the store's background work and releases it.
	Close() error
}

// Warmer is a Store that can fetch swarms' state into the CPU's caches
// ahead of the announces and scrapes that need it. A frontend that holds
// several requests at once (a UDP batch) hands their info hashes over
// first: the fetches then wait on memory together instead of one after
// another. It is a hint only; a swarm may change or go before its request.
type Warmer interface {
	Warm(hashes []bittorrent.InfoHash)
}

// Options are the settings every driver gets from the tracker, beside its
// own configuration block.
type Options struct {
	// PeerLifetime is how long a peer stays in a swarm after its last
	// announce.
	PeerLifetime time.Duration
	// Now is the clock; nil means the system clock, which a driver may
	// read through a coarser clock of its own (time.Now on every request
	// costs). Tests inject their own.
	Now func() time.Time
	// Log receives what a driver reports on its own, outside any request
	// (a snapshot loaded or ignored, say); nil discards it.
	Log *slog.Logger
}

// Driver opens stores of one kind.
type Driver interface {
	// Open validates config, the driver's own JSON block (possibly
	// empty), and opens a store. Errors name the offending key.
	Open(config json.RawMessage, opts Options) (Store, error)
}

var drivers = registry.New[Driver]("cache")

// Register makes a driver available under name. It is meant to be called
// from the driver package's init and panics if name is taken or driver is
// nil, since either is a programming error.
func Register(name string, driver Driver) { drivers.Register(name, driver) }

// Drivers returns the names of the registered drivers, sorted.
func Drivers() []string { return drivers.Names() }

// Open opens a store with the driver registered as name.
func Open(name string, config json.RawMessage, opts Options) (Store, error) {
	driver, err := drivers.Lookup(name)
	if err != nil {
		return nil, err
	}
	return driver.Open(config, opts)
}

// Walker is implemented by stores that can list every swarm, for a full
// scrape and for the swarm totals in metrics. Walk calls fn with the counts
// of each swarm, in no particular order, until fn returns an error. It
// must not hold up announces for long: a store may walk in parts.
type Walker interface {
	Walk(ctx context.Context, fn func(bittorrent.Scrape) error) error
}

// Pinger is implemented by stores behind a network connection; Ping
// reports whether the store answers, for readiness checks.
type Pinger interface {
	Ping(ctx context.Context) error
}
