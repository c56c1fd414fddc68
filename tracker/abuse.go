package tracker

import (
	"errors"
	"net/netip"
	"strconv"
	"sync/atomic"
	"time"

	"github.com/chihaya/chihaya/bittorrent"
)

// The refusals of the abuse controls. Metrics classify a failure reason by
// its text before any colon, so these stay fixed.
const (
	errTooManyBad       = bittorrent.ClientError("too many bad requests, slow down")
	errTooManyAnnounces = bittorrent.ClientError("too many announces, slow down")
	errClientBlocked    = bittorrent.ClientError("client blocked")
)

// limits holds the per-address rate limiters, keyed by the request's
// Source: the address the request came from, which a frontend has seen
// answer (a TCP handshake, a UDP connection ID), so it cannot be forged to
// spend someone else's budget.
//
//   - bad counts the requests that failed with the client's own mistake
//     (malformed, unknown passkey, unregistered torrent, blocked client,
//     ...): an address that has spent its budget is refused every request
//     before any work, until the budget refills. In private mode this is
//     what makes guessing passkeys slow.
//   - announces counts every announce an address makes.
//
// Either is nil when off.
type limits struct {
	bad, announces atomic.Pointer[RateLimiter]
	// now overrides the clock in tests.
	now func() int64
}

// epoch is the origin of the limiters' clock, which reads the monotonic
// clock so that wall-clock steps neither block nor free anyone.
var epoch = time.Now()

func (l *limits) clock() int64 {
	if l.now != nil {
		return l.now()
	}
	return int64(time.Since(epoch))
}

// configure applies the rates of cfg. A limiter whose rate did not change
// keeps what it knows.
func (l *limits) configure(cfg *Config) {
	l.bad.Store(resized(l.bad.Load(), cfg.BadRequestsPerMinute))
	l.announces.Store(resized(l.announces.Load(), cfg.AnnouncesPerMinute))
}

func resized(cur *RateLimiter, perMinute int) *RateLimiter {
	switch {
	case perMinute <= 0:
		return nil
	case cur != nil && cur.perMinute == perMinute:
		return cur
	}
	return NewRateLimiter(perMinute, DefaultLimiterEntries)
}

// admit refuses a request from an address that has spent its bad-request
// budget and, for an announce, one beyond the announce rate. It costs
// nothing when both limiters are off, and a lock-free look-up when only
// the bad-request limiter is on.
func (l *limits) admit(source netip.Addr, announce bool) error {
	bad := l.bad.Load()
	var ann *RateLimiter
	if announce {
		ann = l.announces.Load()
	}
	if bad != nil && bad.blocked(source, l.clock) {
		return errTooManyBad
	}
	if ann != nil && !ann.Allow(source, l.clock()) {
		return errTooManyAnnounces
	}
	return nil
}

// charge counts a request that failed by the client's own fault against
// its address's bad-request budget.
func (l *limits) charge(source netip.Addr, err error) {
	if err == nil {
		return
	}
	bad := l.bad.Load()
	if bad == nil || !countsAsBad(err) {
		return
	}
	bad.Charge(source, l.clock())
}

// countsAsBad reports whether err is a client's mistake worth counting: a
// refused leecher is a valid user, and the rate limits' own refusals are
// counted by their limiter.
func countsAsBad(err error) bool {
	var ce bittorrent.ClientError
	if !errors.As(err, &ce) {
		return false
	}
	switch ce {
	case errLeechForbidden, errTooManyAnnounces, errTooManyBad:
		return false
	}
	return true
}

// Malformed is for frontends: it counts a request from source that the
// frontend could not read (err, a bittorrent.ClientError) against the
// address's bad-request budget, and returns the error to answer with: err
// itself, or the refusal of an address that has spent its budget. Errors
// that are not the client's are returned as they are, uncounted.
func (t *Tracker) Malformed(source netip.Addr, err error) error {
	bad := t.limits.bad.Load()
	if bad == nil || !countsAsBad(err) {
		return err
	}
	now := t.limits.clock()
	if bad.Blocked(source, now) {
		return errTooManyBad
	}
	bad.Charge(source, now)
	return err
}

// checkClient applies tracker.min_port and tracker.blocked_peer_id_prefixes.
// A stop passes, as with port 0, so that a peer admitted before the rules
// changed can leave.
func checkClient(cfg *Config, req *bittorrent.AnnounceRequest) error {
	if req.Event == bittorrent.Stopped {
		return nil
	}
	if req.Port < cfg.MinPort {
		return bittorrent.ClientError("invalid port: below " + strconv.Itoa(int(cfg.MinPort)))
	}
	for _, p := range cfg.BlockedPeerIDPrefixes {
		if p != "" && len(p) <= len(req.PeerID) && string(req.PeerID[:len(p)]) == p {
			return errClientBlocked
		}
	}
	return nil
}
