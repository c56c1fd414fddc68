package gazelle

import (
	"fmt"
	"slices"
	"sync"
	"time"

	"github.com/chihaya/chihaya/bittorrent"
	"github.com/chihaya/chihaya/storage"
)

// recordingPolicy is a test double of storage.Policy: plain maps, and a log
// of the changing calls so tests can see exactly what the site handler did.
type recordingPolicy struct {
	mu        sync.Mutex
	users     map[string]storage.User
	torrents  map[bittorrent.InfoHash]storage.Torrent
	deleted   map[bittorrent.InfoHash]int
	tokens    map[storage.Token]bool
	whitelist []string
	interval  time.Duration
	jitter    time.Duration
	counters  storage.Counters
	activity  map[uint32][2]int // user id → seeding, leeching
	swarms    map[bittorrent.InfoHash]storage.TorrentActivity
	calls     []string
}

func newRecordingPolicy() *recordingPolicy {
	return &recordingPolicy{
		users:    map[string]storage.User{},
		torrents: map[bittorrent.InfoHash]storage.Torrent{},
		deleted:  map[bittorrent.InfoHash]int{},
		tokens:   map[storage.Token]bool{},
		activity: map[uint32][2]int{},
		swarms:   map[bittorrent.InfoHash]storage.TorrentActivity{},
		interval: 30 * time.Minute,
		jitter:   4 * time.Minute,
	}
}

func (p *recordingPolicy) record(format string, args ...any) {
	p.calls = append(p.calls, fmt.Sprintf(format, args...))
}

// takeCalls returns the calls since the last take.
func (p *recordingPolicy) takeCalls() []string {
	p.mu.Lock()
	defer p.mu.Unlock()
	c := p.calls
	p.calls = nil
	return c
}

func (p *recordingPolicy) PutUser(u storage.User) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.record("PutUser(%+v)", u)
	for k, old := range p.users {
		if old.ID == u.ID {
			delete(p.users, k)
		}
	}
	p.users[u.Passkey] = u
}

func (p *recordingPolicy) UpdateUser(passkey string, canLeech, protected bool) bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.record("UpdateUser(%s, %v, %v)", passkey, canLeech, protected)
	u, ok := p.users[passkey]
	if ok {
		u.CanLeech, u.Protected = canLeech, protected
		p.users[passkey] = u
	}
	return ok
}

func (p *recordingPolicy) RemoveUser(passkey string) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.record("RemoveUser(%s)", passkey)
	delete(p.users, passkey)
}

func (p *recordingPolicy) ChangePasskey(oldPasskey, newPasskey string) bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.record("ChangePasskey(%s, %s)", oldPasskey, newPasskey)
	u, ok := p.users[oldPasskey]
	if ok {
		delete(p.users, oldPasskey)
		u.Passkey = newPasskey
		p.users[newPasskey] = u
	}
	return ok
}

func (p *recordingPolicy) User(passkey string) (storage.User, bool) {
	p.mu.Lock()
	defer p.mu.Unlock()
	u, ok := p.users[passkey]
	return u, ok
}

func (p *recordingPolicy) PutTorrent(t storage.Torrent) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.record("PutTorrent(%d, %s, %v)", t.ID, t.InfoHash, t.Leech)
	p.torrents[t.InfoHash] = t
}

func (p *recordingPolicy) SetLeech(h bittorrent.InfoHash, l storage.Leech) bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	t, ok := p.torrents[h]
	if ok {
		p.record("SetLeech(%s, %v)", h, l)
		t.Leech = l
		p.torrents[h] = t
	}
	return ok
}

func (p *recordingPolicy) DeleteTorrent(h bittorrent.InfoHash, reason int) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.record("DeleteTorrent(%s, %d)", h, reason)
	delete(p.torrents, h)
	p.deleted[h] = reason
}

func (p *recordingPolicy) Torrent(h bittorrent.InfoHash) (storage.Torrent, bool) {
	p.mu.Lock()
	defer p.mu.Unlock()
	t, ok := p.torrents[h]
	return t, ok
}

func (p *recordingPolicy) AddToken(t storage.Token) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.record("AddToken(%d, %d)", t.UserID, t.TorrentID)
	p.tokens[t] = true
}

func (p *recordingPolicy) RemoveToken(t storage.Token) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.record("RemoveToken(%d, %d)", t.UserID, t.TorrentID)
	delete(p.tokens, t)
}

func (p *recordingPolicy) TokenHolders(torrentID uint32) []uint32 {
	p.mu.Lock()
	defer p.mu.Unlock()
	var ids []uint32
	for t := range p.tokens {
		if t.TorrentID == torrentID {
			ids = append(ids, t.UserID)
		}
	}
	slices.Sort(ids)
	return ids
}

func (p *recordingPolicy) AddWhitelist(prefix string) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.record("AddWhitelist(%q)", prefix)
	p.whitelist = append(p.whitelist, prefix)
}

func (p *recordingPolicy) RemoveWhitelist(prefix string) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.record("RemoveWhitelist(%q)", prefix)
	if i := slices.Index(p.whitelist, prefix); i >= 0 {
		p.whitelist = slices.Delete(p.whitelist, i, i+1)
	}
}

func (p *recordingPolicy) ReplaceWhitelist(prefixes []string) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.record("ReplaceWhitelist(%q)", prefixes)
	p.whitelist = slices.Clone(prefixes)
}

func (p *recordingPolicy) SetAnnounceInterval(d time.Duration) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.record("SetAnnounceInterval(%v)", d)
	p.interval = d
}

func (p *recordingPolicy) SetAnnounceJitter(d time.Duration) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.record("SetAnnounceJitter(%v)", d)
	p.jitter = d
}

func (p *recordingPolicy) AnnounceInterval() time.Duration {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.interval
}

func (p *recordingPolicy) AnnounceJitter() time.Duration {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.jitter
}

func (p *recordingPolicy) Replace(s *storage.Snapshot) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.record("Replace")
}

func (p *recordingPolicy) UserActivity(userID uint32) (seeding, leeching int) {
	p.mu.Lock()
	defer p.mu.Unlock()
	a := p.activity[userID]
	return a[0], a[1]
}

func (p *recordingPolicy) TorrentActivity(h bittorrent.InfoHash) (storage.TorrentActivity, bool) {
	p.mu.Lock()
	defer p.mu.Unlock()
	t, ok := p.torrents[h]
	if !ok {
		return storage.TorrentActivity{}, false
	}
	a := p.swarms[h]
	a.Torrent = t
	return a, true
}

func (p *recordingPolicy) Counters() storage.Counters {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.counters
}

var _ storage.Policy = (*recordingPolicy)(nil)
