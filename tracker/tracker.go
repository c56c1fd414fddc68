// Package tracker holds the announce and scrape rules. It is protocol-free:
// the HTTP and UDP frontends hand it bittorrent requests and write out the
// responses it fills, so every protocol answers alike.
//
// Without storage the tracker is open: every torrent is accepted and
// nothing is recorded. With storage (see Private) it is a private tracker:
// users are known by passkey, only registered torrents are served, and the
// transfer each announce reports is credited to its user.
package tracker

import (
	"bytes"
	"context"
	"fmt"
	"math/rand/v2"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/chihaya/chihaya/bittorrent"
	"github.com/chihaya/chihaya/cache"
)

// Swarms is the part of a cache.Store the rules use.
type Swarms interface {
	Announce(ctx context.Context, a *cache.Announce, r *cache.Result) error
	Scrape(ctx context.Context, hashes []bittorrent.InfoHash, dst []bittorrent.Scrape) ([]bittorrent.Scrape, error)
}

// Config holds the rules' settings.
type Config struct {
	// AnnounceInterval and MinAnnounceInterval are sent to clients.
	AnnounceInterval    time.Duration
	MinAnnounceInterval time.Duration
	// AnnounceJitter is the largest random amount added to each
	// interval, so that clients started together drift apart.
	AnnounceJitter time.Duration
	// DefaultNumWant applies when a client does not say; MaxNumWant caps
	// what it may ask for.
	DefaultNumWant int
	MaxNumWant     int
	// MaxScrapeInfoHashes caps the hashes of one scrape.
	MaxScrapeInfoHashes int
	// MinPort refuses announces from lower ports; 0: any port but 0.
	MinPort uint16
	// BlockedPeerIDPrefixes refuses the clients whose peer id starts
	// with one of these.
	BlockedPeerIDPrefixes []string
	// BadRequestsPerMinute is each source address's budget of requests
	// that fail by the client's fault; past it, every request of the
	// address is refused until the budget refills. 0: no limit.
	BadRequestsPerMinute int
	// AnnouncesPerMinute caps each source address's announces; 0: no
	// limit. See abuse.go.
	AnnouncesPerMinute int
}

// Tracker answers announces and scrapes from a swarm store.
type Tracker struct {
	cfg    atomic.Pointer[Config]
	swarms Swarms
	// warmer is swarms when it takes hints of coming requests.
	warmer cache.Warmer
	// hashes is the open tracker's allow or deny list; nil: none.
	hashes atomic.Pointer[HashList]
	// interval and jitter are the configured values until a site
	// changes them at run time.
	interval, jitter atomic.Int64
	// private is nil on an open tracker.
	private *Private
	// limits are the per-address rate limiters (abuse.go).
	limits limits
	// scratch holds the store's request and result so that the hot path
	// does not allocate them: handing their address to an interface
	// method would move them to the heap on every call.
	scratch sync.Pool

	announces, failures, scrapes atomic.Uint64
}

type scratch struct {
	announce cache.Announce
	result   cache.Result
	admitted admission
}

// New returns an open tracker that keeps its swarms in swarms.
func New(cfg Config, swarms Swarms) *Tracker {
	t := &Tracker{
		swarms:  swarms,
		scratch: sync.Pool{New: func() any { return new(scratch) }},
	}
	t.warmer, _ = swarms.(cache.Warmer)
	t.Reconfigure(cfg)
	return t
}

// Warm passes a frontend's hint that announces or scrapes for hashes are
// coming on to the private rules (Private.warm) and to the swarm store,
// when it takes one; see cache.Warmer. peers[i] and passkeys[i], when
// given, are the id and passkey of the peer announcing on hashes[i] (any
// id and "" for a scrape's hash): the private rules fetch that peer's
// session and user. The passkeys are read only during the call.
func (t *Tracker) Warm(hashes []bittorrent.InfoHash, peers []bittorrent.PeerID, passkeys []string) {
	if t.private != nil {
		t.private.warm(hashes, peers, passkeys)
	}
	if t.warmer != nil {
		t.warmer.Warm(hashes)
	}
}

// Reconfigure applies new settings; the swarms are untouched. The interval
// and jitter replace any a web application set at run time.
func (t *Tracker) Reconfigure(cfg Config) {
	t.cfg.Store(&cfg)
	t.limits.configure(&cfg)
	t.interval.Store(int64(cfg.AnnounceInterval))
	t.jitter.Store(int64(cfg.AnnounceJitter))
}

// HashList is an open tracker's list of info hashes: with Allow, only
// these torrents are tracked; without, these are refused.
type HashList struct {
	Allow  bool
	Hashes map[bittorrent.InfoHash]struct{}
}

// permits reports whether the list lets h be tracked.
func (l *HashList) permits(h bittorrent.InfoHash) bool {
	_, listed := l.Hashes[h]
	return listed == l.Allow
}

// SetHashList replaces the open tracker's allow or deny list; nil removes
// it. A private tracker serves its registered torrents and ignores it.
func (t *Tracker) SetHashList(l *HashList) { t.hashes.Store(l) }

var (
	errNotAllowed = bittorrent.ClientError("Unregistered torrent: this tracker serves only the torrents it lists")
	errDenied     = bittorrent.ClientError("Blocked torrent: this tracker refuses to track it")
)

// Announce applies req to its swarm and fills resp, whose peer buffers are
// appended to. An error the client caused is a bittorrent.ClientError.
func (t *Tracker) Announce(ctx context.Context, req *bittorrent.AnnounceRequest, resp *bittorrent.AnnounceResponse) error {
	err := t.limits.admit(req.Source, true)
	if err == nil {
		err = t.announce(ctx, req, resp)
		t.limits.charge(req.Source, err)
	}
	if err != nil {
		t.failures.Add(1)
	} else {
		t.announces.Add(1)
	}
	return err
}

func (t *Tracker) announce(ctx context.Context, req *bittorrent.AnnounceRequest, resp *bittorrent.AnnounceResponse) error {
	if req.Port == 0 && req.Event != bittorrent.Stopped {
		return bittorrent.ClientError("invalid port: 0 is not a port peers can connect to")
	}
	if !req.IPv4.IsValid() && !req.IPv6.IsValid() {
		return bittorrent.ClientError("no address to announce: the request carried no IPv4 or IPv6 address")
	}
	if err := checkClient(t.cfg.Load(), req); err != nil {
		return err
	}
	if l := t.hashes.Load(); l != nil && t.private == nil && !l.permits(req.InfoHash) {
		if l.Allow {
			return errNotAllowed
		}
		return errDenied
	}

	s := t.scratch.Get().(*scratch)
	defer t.scratch.Put(s)
	a := &s.announce
	*a = cache.Announce{
		InfoHash: req.InfoHash,
		PeerID:   req.PeerID,
		IPv4:     req.IPv4,
		IPv6:     req.IPv6,
		Port:     req.Port,
		Seeder:   req.Left == 0,
		Event:    req.Event,
		NumWant:  t.numWant(req),
		// Only BEP 3's dictionary model lists peer ids.
		PeerIDs: !req.Compact && !req.NoPeerID,
	}
	r := &s.result
	resp.Peers4.Reset()
	resp.Peers6.Reset()
	*r = cache.Result{Peers4: resp.Peers4, Peers6: resp.Peers6}

	if t.private != nil {
		// Only a private tracker reads the previous totals back; an open
		// tracker leaves them zero so that the cache stores none.
		a.Uploaded, a.Downloaded = req.Uploaded, req.Downloaded
		if err := t.private.admit(req, a, &s.admitted); err != nil {
			return err
		}
	}
	err := t.swarms.Announce(ctx, a, r)
	// The buffers go back to the caller even on error, so that a pooled
	// response keeps its capacity; the scratch keeps no reference.
	resp.Peers4, resp.Peers6 = r.Peers4, r.Peers6
	r.Peers4, r.Peers6 = bittorrent.Peers4{}, bittorrent.Peers6{}
	if err != nil {
		return err
	}

	resp.Interval = t.nextInterval()
	resp.MinInterval = t.cfg.Load().MinAnnounceInterval
	resp.Complete = r.Complete
	resp.Incomplete = r.Incomplete
	resp.Snatches = r.Snatches
	if t.private != nil {
		err := t.private.record(req, a, r, &s.admitted)
		// A registered torrent's completed count is the web
		// application's, not the swarm's since it last formed.
		resp.Snatches = s.admitted.torrent.snatches.Load()
		return err
	}
	return nil
}

// Counts returns the announces answered, refused or failed, and the
// scrapes asked, since the tracker started.
func (t *Tracker) Counts() (announces, failures, scrapes uint64) {
	return t.announces.Load(), t.failures.Load(), t.scrapes.Load()
}

func (t *Tracker) numWant(req *bittorrent.AnnounceRequest) int {
	cfg := t.cfg.Load()
	switch {
	case req.Event == bittorrent.Stopped:
		return 0
	case req.NumWant < 0:
		return cfg.DefaultNumWant
	case int(req.NumWant) > cfg.MaxNumWant:
		return cfg.MaxNumWant
	}
	return int(req.NumWant)
}

func (t *Tracker) nextInterval() time.Duration {
	interval, jitter := time.Duration(t.interval.Load()), time.Duration(t.jitter.Load())
	if jitter <= 0 {
		return interval
	}
	return interval + rand.N(jitter)
}

// Scrape fills resp with the counts of the known swarms among req's hashes,
// sorted by hash and without repeats, as a bencoded dictionary needs them.
// req.InfoHashes is sorted in place.
func (t *Tracker) Scrape(ctx context.Context, req *bittorrent.ScrapeRequest, resp *bittorrent.ScrapeResponse) error {
	t.scrapes.Add(1)
	if err := t.limits.admit(req.Source, false); err != nil {
		return err
	}
	err := t.scrape(ctx, req, resp)
	t.limits.charge(req.Source, err)
	return err
}

func (t *Tracker) scrape(ctx context.Context, req *bittorrent.ScrapeRequest, resp *bittorrent.ScrapeResponse) error {
	if len(req.InfoHashes) == 0 {
		return bittorrent.ClientError("missing info_hash: this tracker does not serve a scrape of every torrent")
	}
	slices.SortFunc(req.InfoHashes, func(a, b bittorrent.InfoHash) int { return bytes.Compare(a[:], b[:]) })
	req.InfoHashes = slices.Compact(req.InfoHashes)
	if most := t.cfg.Load().MaxScrapeInfoHashes; len(req.InfoHashes) > most {
		return bittorrent.ClientError(fmt.Sprintf("too many info_hash values: %d, at most %d per scrape", len(req.InfoHashes), most))
	}
	if t.private != nil {
		return t.private.scrape(ctx, req, resp)
	}
	if l := t.hashes.Load(); l != nil {
		// Torrents the list keeps out are not tracked, so they are
		// unknown here as anywhere.
		req.InfoHashes = slices.DeleteFunc(req.InfoHashes, func(h bittorrent.InfoHash) bool { return !l.permits(h) })
	}
	files, err := t.swarms.Scrape(ctx, req.InfoHashes, resp.Files[:0])
	resp.Files = files
	return err
}
