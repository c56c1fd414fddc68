package tracker

import (
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/chihaya/chihaya/bittorrent"
	"github.com/chihaya/chihaya/internal/hashtab"
	"github.com/chihaya/chihaya/storage"
)

// Stats receives what announces produce for storage; a storage.Flusher is
// one. Users', torrents' and live peers' rows stay in the tracker until the
// Stats takes them from the sources it is given; AddPeer carries the rows
// of sessions that ended.
type Stats interface {
	SetSources(storage.Sources)
	AddPeer(storage.PeerRow)
	AddSnatch(storage.Snatch)
	AddTokenUse(storage.TokenUse)
	ExpireToken(storage.Token)
	Pending() storage.Pending
}

// PrivateConfig configures the private-tracker rules.
type PrivateConfig struct {
	// PeerLifetime is how long a peer counts as live after its last
	// announce, for the activity reports; the cache's lifetime.
	PeerLifetime time.Duration
	// DeletionMemory is how long announces for a deleted torrent are
	// told why it was deleted.
	DeletionMemory time.Duration
	// DeletionMessage is the failure reason for a torrent deleted with
	// a reason code, from the web application's own list; nil gives
	// the plain "Unregistered torrent".
	DeletionMessage func(reason int) string
	// Now is the clock; nil means time.Now, read through a clock Run
	// keeps (see Private.now).
	Now func() time.Time
}

// Private is the private-tracker state: the in-memory view of users,
// torrents, tokens and the client whitelist (loaded from storage and kept
// current by the site), and the live peers behind the activity reports.
// It implements storage.Policy, so drivers can push changes into it.
type Private struct {
	t     *Tracker
	cfg   PrivateConfig
	stats Stats

	mu sync.RWMutex
	// users and torrents are hash tables of their own so that a batch
	// hint can ask for their slots before looking them up (warm).
	users    hashtab.Table[string, userEntry] // by passkey
	byUserID map[uint32]*userEntry
	torrents hashtab.Table[bittorrent.InfoHash, torrentEntry] // by v1 and v2 hash
	byTorID  map[uint32]*torrentEntry
	tokens   map[tokenKey]struct{}
	deleted  map[bittorrent.InfoHash]deletion

	whitelist atomic.Pointer[[]string]
	live      liveTable
	started   time.Time

	// ownClock: cfg.Now is the system clock, so Run may keep ticks, the
	// time announces record, instead (see now).
	ownClock bool
	ticks    atomic.Pointer[time.Time]

	// dirtyUsers and dirtyTorrents are the entries with a row pending
	// (pending.go).
	dirtyUsers    dirtyList[userEntry]
	dirtyTorrents dirtyList[torrentEntry]
}

type userEntry struct {
	info atomic.Pointer[storage.User]
	row  userRow
	// seeding and leeching count the user's live peers.
	seeding, leeching atomic.Int32
}

type torrentEntry struct {
	info atomic.Pointer[storage.Torrent]
	row  torrentRow
	// live is the torrent's sessions in the live table, nil when it
	// has none. It changes under the table shard's lock; it is atomic
	// so that a batch hint (Private.warm) can follow it without one.
	live atomic.Pointer[liveSwarm]
	// balance is raw uploaded minus downloaded since the tracker
	// started; lastFlushed is when its counters last went to storage,
	// in Unix seconds.
	balance     atomic.Int64
	lastFlushed atomic.Int64
	// snatches is the completed count clients are told: storage's at
	// the last load, plus the completions recorded since.
	snatches atomic.Uint32
}

// tokenKey is a storage.Token as one integer, which a map hashes faster
// than a struct.
type tokenKey uint64

func keyOf(t storage.Token) tokenKey { return tokenKey(t.UserID)<<32 | tokenKey(t.TorrentID) }

func (k tokenKey) token() storage.Token {
	return storage.Token{UserID: uint32(k >> 32), TorrentID: uint32(k)}
}

type deletion struct {
	reason int
	at     time.Time
}

// NewPrivate makes t a private tracker that records statistics into stats.
// Load the first snapshot with Replace before serving.
func NewPrivate(t *Tracker, cfg PrivateConfig, stats Stats) *Private {
	ownClock := cfg.Now == nil
	if ownClock {
		cfg.Now = time.Now
	}
	p := &Private{
		t:        t,
		cfg:      cfg,
		stats:    stats,
		users:    hashtab.New[string, userEntry](),
		byUserID: map[uint32]*userEntry{},
		torrents: hashtab.New[bittorrent.InfoHash, torrentEntry](),
		byTorID:  map[uint32]*torrentEntry{},
		tokens:   map[tokenKey]struct{}{},
		deleted:  map[bittorrent.InfoHash]deletion{},
		started:  cfg.Now(),
		ownClock: ownClock,
	}
	p.live.init(stats.AddPeer)
	stats.SetSources(storage.Sources{
		Users:    &userRows{p: p, seen: map[uint32]int{}},
		Torrents: &torrentRows{p: p, seen: map[uint32]int{}},
		Peers:    &p.live,
	})
	p.whitelist.Store(&[]string{})
	t.private = p
	return p
}

var _ storage.Policy = (*Private)(nil)

// Replace swaps in a freshly loaded snapshot as a diff: known users and
// torrents keep their live state (activity counters, balance), vanished
// ones are forgotten, new ones are added; tokens and the whitelist are
// replaced wholesale.
func (p *Private) Replace(s *storage.Snapshot) {
	p.mu.Lock()
	defer p.mu.Unlock()

	keepUsers := make(map[uint32]bool, len(s.Users))
	for _, u := range s.Users {
		keepUsers[u.ID] = true
		p.putUserLocked(u)
	}
	for id, e := range p.byUserID {
		if !keepUsers[id] {
			delete(p.byUserID, id)
			p.users.Delete(&e.info.Load().Passkey)
		}
	}

	keepTorrents := make(map[uint32]bool, len(s.Torrents))
	for _, t := range s.Torrents {
		keepTorrents[t.ID] = true
		p.putTorrentLocked(t)
	}
	for id, e := range p.byTorID {
		if !keepTorrents[id] {
			p.dropTorrentLocked(id, e)
		}
	}

	clear(p.tokens)
	for _, tok := range s.Tokens {
		p.tokens[keyOf(tok)] = struct{}{}
	}
	wl := slices.Clone(s.Whitelist)
	p.whitelist.Store(&wl)
}

// PutUser implements storage.Policy.
func (p *Private) PutUser(u storage.User) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.putUserLocked(u)
}

func (p *Private) putUserLocked(u storage.User) {
	e, ok := p.byUserID[u.ID]
	if !ok {
		e = &userEntry{}
		p.byUserID[u.ID] = e
	} else if old := e.info.Load(); old.Passkey != u.Passkey {
		p.users.Delete(&old.Passkey)
	}
	e.info.Store(&u)
	p.users.Set(&u.Passkey, e)
}

// UpdateUser implements storage.Policy.
func (p *Private) UpdateUser(passkey string, canLeech, protected bool) bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	e := p.users.Find(&passkey)
	if e == nil {
		return false
	}
	u := *e.info.Load()
	u.CanLeech, u.Protected = canLeech, protected
	e.info.Store(&u)
	return true
}

// RemoveUser implements storage.Policy.
func (p *Private) RemoveUser(passkey string) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if e := p.users.Find(&passkey); e != nil {
		p.users.Delete(&passkey)
		delete(p.byUserID, e.info.Load().ID)
	}
}

// ChangePasskey implements storage.Policy.
func (p *Private) ChangePasskey(oldPasskey, newPasskey string) bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	e := p.users.Find(&oldPasskey)
	if e == nil {
		return false
	}
	u := *e.info.Load()
	u.Passkey = newPasskey
	p.users.Delete(&oldPasskey)
	e.info.Store(&u)
	p.users.Set(&newPasskey, e)
	return true
}

// User implements storage.Policy.
func (p *Private) User(passkey string) (storage.User, bool) {
	p.mu.RLock()
	e := p.users.Find(&passkey)
	p.mu.RUnlock()
	if e == nil {
		return storage.User{}, false
	}
	return *e.info.Load(), true
}

// PutTorrent implements storage.Policy.
func (p *Private) PutTorrent(t storage.Torrent) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.putTorrentLocked(t)
}

func (p *Private) putTorrentLocked(t storage.Torrent) {
	if t.UpMultiplier == 0 && t.DownMultiplier == 0 {
		t.UpMultiplier, t.DownMultiplier = 1, 1
	}
	e, ok := p.byTorID[t.ID]
	if !ok {
		e = &torrentEntry{}
		p.byTorID[t.ID] = e
	} else {
		old := e.info.Load()
		p.torrents.Delete(&old.InfoHash)
		if old.InfoHashV2 != (bittorrent.InfoHash{}) {
			p.torrents.Delete(&old.InfoHashV2)
		}
	}
	e.info.Store(&t)
	e.snatches.Store(t.Snatches)
	p.torrents.Set(&t.InfoHash, e)
	delete(p.deleted, t.InfoHash)
	if t.InfoHashV2 != (bittorrent.InfoHash{}) {
		p.torrents.Set(&t.InfoHashV2, e)
	}
}

// SetLeech implements storage.Policy.
func (p *Private) SetLeech(h bittorrent.InfoHash, l storage.Leech) bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	e := p.torrents.Find(&h)
	if e == nil {
		return false
	}
	t := *e.info.Load()
	t.Leech = l
	e.info.Store(&t)
	return true
}

// DeleteTorrent implements storage.Policy.
func (p *Private) DeleteTorrent(h bittorrent.InfoHash, reason int) {
	p.mu.Lock()
	defer p.mu.Unlock()
	e := p.torrents.Find(&h)
	if e == nil {
		return
	}
	p.dropTorrentLocked(e.info.Load().ID, e)
	now := p.cfg.Now()
	p.deleted[h] = deletion{reason: reason, at: now}
	// Forget reasons past their lifetime here, where deletions happen,
	// so the map stays bounded without a timer of its own.
	for k, d := range p.deleted {
		if now.Sub(d.at) > p.cfg.DeletionMemory {
			delete(p.deleted, k)
		}
	}
}

func (p *Private) dropTorrentLocked(id uint32, e *torrentEntry) {
	t := e.info.Load()
	delete(p.byTorID, id)
	if p.torrents.Find(&t.InfoHash) == e {
		p.torrents.Delete(&t.InfoHash)
	}
	if t.InfoHashV2 != (bittorrent.InfoHash{}) && p.torrents.Find(&t.InfoHashV2) == e {
		p.torrents.Delete(&t.InfoHashV2)
	}
	p.live.dropTorrent(id, p.userCountersLocked)
}

// Torrent implements storage.Policy.
func (p *Private) Torrent(h bittorrent.InfoHash) (storage.Torrent, bool) {
	p.mu.RLock()
	e := p.torrents.Find(&h)
	p.mu.RUnlock()
	if e == nil {
		return storage.Torrent{}, false
	}
	return *e.info.Load(), true
}

// AddToken implements storage.Policy.
func (p *Private) AddToken(t storage.Token) {
	p.mu.Lock()
	p.tokens[keyOf(t)] = struct{}{}
	p.mu.Unlock()
}

// RemoveToken implements storage.Policy.
func (p *Private) RemoveToken(t storage.Token) {
	p.mu.Lock()
	delete(p.tokens, keyOf(t))
	p.mu.Unlock()
}

// TokenHolders implements storage.Policy.
func (p *Private) TokenHolders(torrentID uint32) []uint32 {
	p.mu.RLock()
	defer p.mu.RUnlock()
	var out []uint32
	for k := range p.tokens {
		if t := k.token(); t.TorrentID == torrentID {
			out = append(out, t.UserID)
		}
	}
	slices.Sort(out)
	return out
}

// AddWhitelist implements storage.Policy. A prefix already listed is not
// added again, so repeated calls from the site do not grow the list.
func (p *Private) AddWhitelist(prefix string) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if slices.Contains(*p.whitelist.Load(), prefix) {
		return
	}
	wl := append(slices.Clone(*p.whitelist.Load()), prefix)
	p.whitelist.Store(&wl)
}

// RemoveWhitelist implements storage.Policy; it removes the first entry
// equal to prefix.
func (p *Private) RemoveWhitelist(prefix string) {
	p.mu.Lock()
	defer p.mu.Unlock()
	wl := slices.Clone(*p.whitelist.Load())
	if i := slices.Index(wl, prefix); i >= 0 {
		wl = slices.Delete(wl, i, i+1)
	}
	p.whitelist.Store(&wl)
}

// ReplaceWhitelist implements storage.Policy.
func (p *Private) ReplaceWhitelist(prefixes []string) {
	wl := slices.Clone(prefixes)
	p.whitelist.Store(&wl)
}

// SetAnnounceInterval implements storage.Policy.
func (p *Private) SetAnnounceInterval(d time.Duration) { p.t.interval.Store(int64(d)) }

// SetAnnounceJitter implements storage.Policy.
func (p *Private) SetAnnounceJitter(d time.Duration) { p.t.jitter.Store(int64(d)) }

// AnnounceInterval implements storage.Policy.
func (p *Private) AnnounceInterval() time.Duration { return time.Duration(p.t.interval.Load()) }

// AnnounceJitter implements storage.Policy.
func (p *Private) AnnounceJitter() time.Duration { return time.Duration(p.t.jitter.Load()) }

// UserActivity implements storage.Policy.
func (p *Private) UserActivity(userID uint32) (seeding, leeching int) {
	p.live.expire(p.cfg.Now(), p.cfg.PeerLifetime, p.userCounters)
	p.mu.RLock()
	e, ok := p.byUserID[userID]
	p.mu.RUnlock()
	if !ok {
		return 0, 0
	}
	return int(e.seeding.Load()), int(e.leeching.Load())
}

// TorrentActivity implements storage.Policy.
func (p *Private) TorrentActivity(h bittorrent.InfoHash) (storage.TorrentActivity, bool) {
	p.mu.RLock()
	e := p.torrents.Find(&h)
	p.mu.RUnlock()
	if e == nil {
		return storage.TorrentActivity{}, false
	}
	t := e.info.Load()
	a := storage.TorrentActivity{Torrent: *t, Balance: e.balance.Load()}
	a.Torrent.Snatches = e.snatches.Load()
	if s := e.lastFlushed.Load(); s != 0 {
		a.LastFlushed = time.Unix(s, 0)
	}
	a.Seeders, a.Leechers = p.live.users(t.ID, p.cfg.Now(), p.cfg.PeerLifetime)
	return a, true
}

// Counters implements storage.Policy.
func (p *Private) Counters() storage.Counters {
	p.live.expire(p.cfg.Now(), p.cfg.PeerLifetime, p.userCounters)
	seeders, leechers := p.live.totals()
	return storage.Counters{
		Started:         p.started,
		Announces:       p.t.announces.Load(),
		FailedAnnounces: p.t.failures.Load(),
		Scrapes:         p.t.scrapes.Load(),
		Seeders:         seeders,
		Leechers:        leechers,
		Pending:         p.stats.Pending(),
	}
}

// userCounters moves a user's live peer counts; the live table calls it as
// peers come, change and go.
func (p *Private) userCounters(userID uint32, seeding, leeching int32) {
	p.mu.RLock()
	defer p.mu.RUnlock()
	p.userCountersLocked(userID, seeding, leeching)
}

// userCountersLocked is userCounters for callers that hold p.mu.
func (p *Private) userCountersLocked(userID uint32, seeding, leeching int32) {
	if e, ok := p.byUserID[userID]; ok {
		e.seeding.Add(seeding)
		e.leeching.Add(leeching)
	}
}
