package tracker

import (
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/chihaya/chihaya/bittorrent"
)

// liveTable tracks the sessions of the live peers of registered torrents:
// when each started, how many announces it made, when it last announced
// and whether it seeds. Peer rows need the first three; the per-user and
// per-torrent activity reports need the rest. It is sharded by torrent so
// announces on different torrents rarely share a lock.
type liveTable struct {
	shards [64]liveShard
	// seeders and leechers count every live peer.
	seeders, leechers atomic.Int64
	// lastExpire is when expire last ran (Unix seconds), so that
	// frequent callers do not each walk the table.
	lastExpire atomic.Int64
}

type liveShard struct {
	mu       sync.Mutex
	torrents map[uint32]map[liveKey]livePeer
}

type liveKey struct {
	user uint32
	peer bittorrent.PeerID
}

type livePeer struct {
	// uploaded and downloaded are the totals last reported.
	uploaded, downloaded uint64
	// started and seen are Unix seconds.
	started, seen uint32
	announces     uint32
	seeding       bool
}

// counterFunc moves a user's seeding and leeching counts.
type counterFunc func(userID uint32, seeding, leeching int32)

func (l *liveTable) init() {
	for i := range l.shards {
		l.shards[i].torrents = map[uint32]map[liveKey]livePeer{}
	}
}

func (l *liveTable) shard(torrentID uint32) *liveShard {
	return &l.shards[torrentID%uint32(len(l.shards))]
}

func unixSeconds(t time.Time) uint32 { return uint32(t.Unix()) }

// update records an announce and returns the peer's session before it;
// found is false for a new session (or one that had expired). A stopped
// peer leaves the table.
func (l *liveTable) update(torrentID, userID uint32, peerID bittorrent.PeerID, now time.Time, lifetime time.Duration, seeding, stopped, restart bool, uploaded, downloaded uint64, counters counterFunc) (prev livePeer, found bool) {
	sh := l.shard(torrentID)
	key := liveKey{userID, peerID}
	nowS := unixSeconds(now)
	sh.mu.Lock()
	peers := sh.torrents[torrentID]
	if peers == nil {
		if stopped {
			sh.mu.Unlock()
			return livePeer{}, false
		}
		peers = map[liveKey]livePeer{}
		sh.torrents[torrentID] = peers
	}
	prev, found = peers[key]
	if found && time.Duration(nowS-prev.seen)*time.Second > lifetime {
		// Expired but not yet swept: a new session.
		found = false
	}
	next := livePeer{uploaded: uploaded, downloaded: downloaded, started: nowS, seen: nowS, announces: 1, seeding: seeding}
	if found && !restart {
		next.started, next.announces = prev.started, prev.announces+1
	}
	if stopped {
		delete(peers, key)
		if len(peers) == 0 {
			delete(sh.torrents, torrentID)
		}
	} else {
		peers[key] = next
	}
	sh.mu.Unlock()

	// Counters follow the entry that was in the table, found or not.
	old, had := prev, prev != (livePeer{})
	switch {
	case had && stopped:
		l.count(userID, old.seeding, -1, counters)
	case had && old.seeding != seeding:
		l.count(userID, old.seeding, -1, counters)
		l.count(userID, seeding, +1, counters)
	case !had && !stopped:
		l.count(userID, seeding, +1, counters)
	}
	return prev, found
}

func (l *liveTable) count(userID uint32, seeding bool, n int32, counters counterFunc) {
	if seeding {
		l.seeders.Add(int64(n))
		counters(userID, n, 0)
	} else {
		l.leechers.Add(int64(n))
		counters(userID, 0, n)
	}
}

// expire drops sessions not seen for lifetime and returns the torrents
// that lost peers. It runs at most every ten seconds.
func (l *liveTable) expire(now time.Time, lifetime time.Duration, counters counterFunc) []uint32 {
	last := l.lastExpire.Load()
	if now.Unix()-last < 10 || !l.lastExpire.CompareAndSwap(last, now.Unix()) {
		return nil
	}
	nowS := unixSeconds(now)
	var touched []uint32
	for i := range l.shards {
		sh := &l.shards[i]
		type gone struct {
			user    uint32
			seeding bool
		}
		var dropped []gone
		sh.mu.Lock()
		for id, peers := range sh.torrents {
			n := len(dropped)
			for k, p := range peers {
				if time.Duration(nowS-p.seen)*time.Second > lifetime {
					delete(peers, k)
					dropped = append(dropped, gone{k.user, p.seeding})
				}
			}
			if len(dropped) > n {
				touched = append(touched, id)
			}
			if len(peers) == 0 {
				delete(sh.torrents, id)
			}
		}
		sh.mu.Unlock()
		for _, g := range dropped {
			l.count(g.user, g.seeding, -1, counters)
		}
	}
	return touched
}

// dropTorrent forgets a deleted torrent's sessions.
func (l *liveTable) dropTorrent(torrentID uint32, counters counterFunc) {
	sh := l.shard(torrentID)
	sh.mu.Lock()
	peers := sh.torrents[torrentID]
	delete(sh.torrents, torrentID)
	sh.mu.Unlock()
	for k, p := range peers {
		l.count(k.user, p.seeding, -1, counters)
	}
}

// users returns the ids of the users seeding and leeching a torrent.
func (l *liveTable) users(torrentID uint32, now time.Time, lifetime time.Duration) (seeders, leechers []uint32) {
	nowS := unixSeconds(now)
	sh := l.shard(torrentID)
	sh.mu.Lock()
	for k, p := range sh.torrents[torrentID] {
		if time.Duration(nowS-p.seen)*time.Second > lifetime {
			continue
		}
		if p.seeding {
			seeders = append(seeders, k.user)
		} else {
			leechers = append(leechers, k.user)
		}
	}
	sh.mu.Unlock()
	slices.Sort(seeders)
	slices.Sort(leechers)
	return slices.Compact(seeders), slices.Compact(leechers)
}

func (l *liveTable) totals() (seeders, leechers int) {
	return int(l.seeders.Load()), int(l.leechers.Load())
}
