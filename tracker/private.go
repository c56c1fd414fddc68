package tracker

import (
	"context"
	"math"
	"net/netip"
	"time"
	"unsafe"

	"github.com/chihaya/chihaya/bittorrent"
	"github.com/chihaya/chihaya/cache"
	"github.com/chihaya/chihaya/internal/prefetch"
	"github.com/chihaya/chihaya/storage"
)

// The failure reasons Gazelle's users know from Ocelot.
const (
	errPasskeyNotFound = bittorrent.ClientError("Passkey not found")
	errUnregistered    = bittorrent.ClientError("Unregistered torrent")
	errNotCompact      = bittorrent.ClientError("Your client does not support compact announces")
	errNotWhitelisted  = bittorrent.ClientError("Your client is not on the whitelist")
	errLeechForbidden  = bittorrent.ClientError("Access denied, leeching forbidden")
)

// admission is what admit learned, for record.
type admission struct {
	user    *userEntry
	torrent *torrentEntry
	// leechDenied: the user may not download and has something left; the
	// announce is recorded (its transfer counts) but the peer leaves the
	// swarm and the client is refused.
	leechDenied bool
	// live is record's request to the live table, kept here so that
	// passing it by address does not move it to the heap.
	live liveAnnounce
	// last is the row of a session the announce ended.
	last storage.PeerRow
}

// admit applies the private rules before the swarm is touched: who the
// user is, whether the torrent is registered, whether the client may
// announce. It turns the cache request into the user's peer on the
// torrent's canonical hash.
func (p *Private) admit(req *bittorrent.AnnounceRequest, a *cache.Announce, ad *admission) error {
	// Field by field: the scratch's other fields are large and record
	// sets them before use.
	ad.user, ad.torrent, ad.leechDenied = nil, nil, false
	p.mu.RLock()
	user := p.users.Find(&req.Passkey)
	tor := p.torrents.Find(&req.InfoHash)
	var del deletion
	var deleted bool
	if tor == nil {
		del, deleted = p.deleted[req.InfoHash]
	}
	p.mu.RUnlock()

	switch {
	case user == nil:
		return errPasskeyNotFound
	case tor == nil:
		return p.unregistered(del, deleted)
	case !req.Compact:
		// Peer ids stay private: only the dictionary model carries
		// them, and they are half of a peer's identity here.
		return errNotCompact
	case !p.whitelisted(req.PeerID):
		return errNotWhitelisted
	}
	u := user.info.Load()
	t := tor.info.Load()
	ad.user, ad.torrent = user, tor
	a.UserID = u.ID
	a.InfoHash = t.InfoHash
	if !u.CanLeech && req.Left > 0 {
		ad.leechDenied = true
		a.Event = bittorrent.Stopped
		a.NumWant = 0
	}
	return nil
}

// warmChunk is how many torrents warm follows at once: the entries it
// keeps on the stack while their lines arrive.
const warmChunk = 32

// warm is the private rules' part of a batch hint (Tracker.Warm): it asks
// the CPU for the memory the announces for hashes will read, torrent by
// torrent in four rounds: the registry's and the users' table slots of
// each torrent and announcing user (passkeys[i], for hashes[i]), then the
// entries in them and the passkeys' bytes, which a lookup compares, then
// each torrent's and user's settings and the torrent's live swarm with
// its tags, then the session whose tag matches the announcing peer's id
// (peers[i]), which is the one its announce will find and update. Each
// round's misses overlap one another; taken by the announces one at a
// time, each waits for the one before. Only the table lookups need a
// lock, one read lock for the chunk; the rest follows atomic pointers and
// words and prefetches, which read nothing (see package prefetch), so
// that no locked instruction orders the loads between them.
func (p *Private) warm(hashes []bittorrent.InfoHash, peers []bittorrent.PeerID, passkeys []string) {
	var (
		torrentHash, userHash [warmChunk]uint64
		entries               [warmChunk]*torrentEntry
		users                 [warmChunk]*userEntry
		swarms                [warmChunk]*liveSwarm
	)
	for len(hashes) > 0 {
		n := min(len(hashes), warmChunk)
		keys := passkeys[:min(n, len(passkeys))]
		p.mu.RLock()
		for i := range hashes[:n] {
			torrentHash[i] = p.torrents.Hash(&hashes[i])
			p.torrents.Prefetch(torrentHash[i])
		}
		for i := range keys {
			if keys[i] != "" {
				userHash[i] = p.users.Hash(&keys[i])
				p.users.Prefetch(userHash[i])
			}
		}
		for i := range hashes[:n] {
			e := p.torrents.FindHashed(&hashes[i], torrentHash[i])
			entries[i] = e
			if e != nil {
				prefetch.Line(unsafe.Pointer(e))
			}
		}
		clear(users[:n])
		for i, k := range keys {
			if k == "" {
				continue
			}
			// By hash alone: comparing the passkey would wait for
			// its bytes, which are elsewhere; they are asked for
			// instead, for the announce's own lookup.
			if key, u := p.users.Hinted(userHash[i]); u != nil {
				prefetch.Line(unsafe.Pointer(unsafe.StringData(*key)))
				prefetch.Line(unsafe.Pointer(u))
				users[i] = u
			}
		}
		p.mu.RUnlock()
		for i, e := range entries[:n] {
			if u := users[i]; u != nil {
				prefetch.Line(unsafe.Pointer(u.info.Load()))
			}
			swarms[i] = nil
			if e == nil {
				continue
			}
			prefetch.Line(unsafe.Pointer(e.info.Load()))
			if sw := e.live.Load(); sw != nil {
				// The swarm and its tags.
				prefetch.Lines(unsafe.Pointer(sw), 2, prefetch.LineSize)
				swarms[i] = sw
			}
		}
		for i, sw := range swarms[:n] {
			if sw == nil || i >= len(peers) {
				continue
			}
			if first, off, ok := sw.hinted(&peers[i]); ok {
				prefetch.LinesFrom(unsafe.Pointer(first), off, 2, prefetch.LineSize)
			}
		}
		hashes = hashes[n:]
		peers = peers[min(n, len(peers)):]
		passkeys = passkeys[min(n, len(passkeys)):]
	}
}

func (p *Private) unregistered(d deletion, deleted bool) error {
	if !deleted || p.cfg.Now().Sub(d.at) > p.cfg.DeletionMemory || p.cfg.DeletionMessage == nil {
		return errUnregistered
	}
	return bittorrent.ClientError(p.cfg.DeletionMessage(d.reason))
}

func (p *Private) whitelisted(id bittorrent.PeerID) bool {
	wl := *p.whitelist.Load()
	if len(wl) == 0 {
		return true
	}
	for _, prefix := range wl {
		if len(prefix) <= len(id) && string(id[:len(prefix)]) == prefix {
			return true
		}
	}
	return false
}

// record turns an announce the swarm has taken into statistics: the user's
// credited transfer, the torrent's counters, the peer's row, a snatch,
// token use.
func (p *Private) record(req *bittorrent.AnnounceRequest, a *cache.Announce, r *cache.Result, ad *admission) error {
	now := p.now()
	u := ad.user.info.Load()
	t := ad.torrent.info.Load()
	addr := req.IPv4
	if !addr.IsValid() {
		addr = req.IPv6
	}
	// leaving is the client's own stop; a refused leecher is taken out of
	// the swarm but its session goes on, so its transfer keeps counting.
	// The swarm holds the baseline of peers in it; a refused leecher is
	// not in the swarm, so its session's totals are the baseline.
	la := &ad.live
	*la = liveAnnounce{
		entry: ad.torrent, torrent: t.ID, user: u.ID, peer: req.PeerID, now: now, lifetime: p.cfg.PeerLifetime,
		event: req.Event, stopped: req.Event == bittorrent.Stopped, seeding: req.Left == 0,
		uploaded: req.Uploaded, downloaded: req.Downloaded, left: req.Left, corrupt: req.Corrupt,
		addr: hidden(addr, u.Protected), port: req.Port, userAgent: req.UserAgent,
		known: r.Known, prevUp: r.PrevUploaded, prevDown: r.PrevDownloaded, sessionBaseline: ad.leechDenied,
	}
	up, down, ended := p.live.update(la, &ad.last, p.userCounters)
	// The scratch is pooled: it keeps no request's string or entry.
	la.userAgent, la.entry = "", nil
	if ended {
		p.stats.AddPeer(ad.last)
		ad.last = storage.PeerRow{}
	}
	ad.torrent.balance.Add(int64(up) - int64(down))

	// A token matters only to download and to a completion; most
	// announces have neither and skip the lookup.
	var token bool
	if down > 0 || r.Snatched {
		token = p.hasToken(storage.Token{UserID: u.ID, TorrentID: t.ID})
	}
	creditUp, creditDown := up, down
	var spared uint64
	switch {
	case t.Leech == storage.Neutral:
		creditUp, creditDown = 0, 0
	case token:
		spared, creditDown = creditDown, 0
	case t.Leech == storage.Free:
		creditDown = 0
	}
	creditUp, creditDown = scale(creditUp, t.UpMultiplier), scale(creditDown, t.DownMultiplier)
	if creditUp != 0 || creditDown != 0 {
		p.credit(ad.user, int64(creditUp), int64(creditDown))
	}
	if spared != 0 {
		p.stats.AddTokenUse(storage.TokenUse{UserID: u.ID, TorrentID: t.ID, Downloaded: int64(spared)})
	}

	if r.Snatched {
		ad.torrent.snatches.Add(1)
		p.stats.AddSnatch(storage.Snatch{UserID: u.ID, TorrentID: t.ID, Time: now, Addr: hidden(addr, u.Protected)})
		if token {
			// A completed download has used its token up.
			tok := storage.Token{UserID: u.ID, TorrentID: t.ID}
			p.RemoveToken(tok)
			p.stats.ExpireToken(tok)
		}
	}

	p.count(ad.torrent, r.Complete, r.Incomplete, r.Snatched, r.Complete > 0, now)

	if ad.leechDenied {
		return errLeechForbidden
	}
	return nil
}

func (p *Private) hasToken(t storage.Token) bool {
	p.mu.RLock()
	defer p.mu.RUnlock()
	if len(p.tokens) == 0 {
		return false
	}
	_, ok := p.tokens[keyOf(t)]
	return ok
}

// hidden blanks a protected user's address.
func hidden(a netip.Addr, protected bool) netip.Addr {
	if protected {
		return netip.Addr{}
	}
	return a
}

// scale applies a multiplier to a byte count, saturating.
func scale(n uint64, m float64) uint64 {
	if m == 1 {
		return n
	}
	if m <= 0 {
		return 0
	}
	v := math.Round(float64(n) * m)
	if v >= math.MaxInt64 {
		return math.MaxInt64
	}
	return uint64(v)
}

// scrape answers a private scrape: a known passkey, registered torrents
// only, each answered under the hash it was asked by.
func (p *Private) scrape(ctx context.Context, req *bittorrent.ScrapeRequest, resp *bittorrent.ScrapeResponse) error {
	p.mu.RLock()
	ok := p.users.Find(&req.Passkey) != nil
	canonical := make([]bittorrent.InfoHash, 0, len(req.InfoHashes))
	asked := make([]bittorrent.InfoHash, 0, len(req.InfoHashes))
	entries := make([]*torrentEntry, 0, len(req.InfoHashes))
	for _, h := range req.InfoHashes {
		if e := p.torrents.Find(&h); e != nil {
			asked = append(asked, h)
			canonical = append(canonical, e.info.Load().InfoHash)
			entries = append(entries, e)
		}
	}
	p.mu.RUnlock()
	if !ok {
		return errPasskeyNotFound
	}
	files, err := p.t.swarms.Scrape(ctx, canonical, nil)
	if err != nil {
		return err
	}
	byHash := make(map[bittorrent.InfoHash]bittorrent.Scrape, len(files))
	for _, f := range files {
		byHash[f.InfoHash] = f
	}
	resp.Files = resp.Files[:0]
	for i, h := range asked {
		f := byHash[canonical[i]]
		f.InfoHash = h
		f.Snatches = entries[i].snatches.Load()
		resp.Files = append(resp.Files, f)
	}
	return nil
}

// Run keeps the live-peer view and the torrents' stored counters current
// as peers go silent, until ctx ends: every interval it drops expired
// sessions and writes fresh counters for the torrents that lost peers, so a
// swarm that empties shows 0 seeders and 0 leechers on the site.
//
// While it runs, it also keeps the clock announces read (see now).
func (p *Private) Run(ctx context.Context, interval time.Duration) {
	tick := time.NewTicker(interval)
	defer tick.Stop()
	var clock <-chan time.Time
	if p.ownClock {
		c := time.NewTicker(clockTick)
		defer c.Stop()
		defer p.ticks.Store(nil)
		p.setTick(time.Now())
		clock = c.C
	}
	for {
		select {
		case <-ctx.Done():
			return
		case <-clock:
			p.setTick(time.Now())
		case <-tick.C:
			p.refresh(ctx)
		}
	}
}

// clockTick is the resolution of the time announces record while Run
// runs: finer than the seconds sessions, speeds and the database count in.
const clockTick = 100 * time.Millisecond

func (p *Private) setTick(t time.Time) { p.ticks.Store(&t) }

// now is the time an announce records. Reading the system clock is a
// tenth of a private announce's time in profiles, so while Run keeps a
// clock, announces read its last tick instead.
func (p *Private) now() time.Time {
	if t := p.ticks.Load(); t != nil {
		return *t
	}
	return p.cfg.Now()
}

func (p *Private) refresh(ctx context.Context) {
	touched := p.live.expire(p.cfg.Now(), p.cfg.PeerLifetime, p.userCounters)
	if len(touched) == 0 {
		return
	}
	type target struct {
		entry *torrentEntry
		info  *storage.Torrent
	}
	targets := make([]target, 0, len(touched))
	hashes := make([]bittorrent.InfoHash, 0, len(touched))
	p.mu.RLock()
	for _, id := range touched {
		if e := p.byTorID[id]; e != nil {
			t := e.info.Load()
			targets = append(targets, target{e, t})
			hashes = append(hashes, t.InfoHash)
		}
	}
	p.mu.RUnlock()
	files, err := p.t.swarms.Scrape(ctx, hashes, nil)
	if err != nil {
		return
	}
	counts := make(map[bittorrent.InfoHash]bittorrent.Scrape, len(files))
	for _, f := range files {
		counts[f.InfoHash] = f
	}
	now := p.cfg.Now()
	for _, tg := range targets {
		c := counts[tg.info.InfoHash]
		p.count(tg.entry, c.Complete, c.Incomplete, false, false, now)
	}
}
