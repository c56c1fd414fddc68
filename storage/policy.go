package storage

import (
	"context"
	"net/http"
	"time"

	"github.com/chihaya/chihaya/bittorrent"
)

// Policy is the tracker's in-memory view of what storage holds. Drivers
// whose web application pushes changes (an HTTP call, a database
// notification) apply them here, so they take effect at the next announce
// without a reload. Every method is safe for concurrent use.
type Policy interface {
	// PutUser adds a user or replaces the one with the same ID (a new
	// passkey replaces the old one).
	PutUser(u User)
	// UpdateUser changes a known user's flags; false if the passkey is
	// unknown.
	UpdateUser(passkey string, canLeech, protected bool) bool
	// RemoveUser forgets the user with this passkey.
	RemoveUser(passkey string)
	// ChangePasskey moves a user to a new passkey; false if the old one
	// is unknown.
	ChangePasskey(oldPasskey, newPasskey string) bool
	// User returns the user with this passkey.
	User(passkey string) (User, bool)

	// PutTorrent adds a torrent or replaces the one with the same ID.
	PutTorrent(t Torrent)
	// SetLeech changes a known torrent's freeleech state; false if the
	// hash is unknown.
	SetLeech(h bittorrent.InfoHash, l Leech) bool
	// DeleteTorrent forgets a torrent. For a while, announces for it are
	// refused with the web application's message for the reason code.
	DeleteTorrent(h bittorrent.InfoHash, reason int)
	// Torrent returns the torrent with this hash (v1 or v2).
	Torrent(h bittorrent.InfoHash) (Torrent, bool)

	// AddToken and RemoveToken change a user's freeleech token.
	AddToken(t Token)
	RemoveToken(t Token)
	// TokenHolders returns the users holding a token for the torrent.
	TokenHolders(torrentID uint32) []uint32

	// AddWhitelist, RemoveWhitelist and ReplaceWhitelist change the
	// client whitelist, a list of peer id prefixes; empty allows every
	// client.
	AddWhitelist(prefix string)
	RemoveWhitelist(prefix string)
	ReplaceWhitelist(prefixes []string)

	// SetAnnounceInterval and SetAnnounceJitter change the interval sent
	// to clients until the next restart.
	SetAnnounceInterval(d time.Duration)
	SetAnnounceJitter(d time.Duration)
	// AnnounceInterval and AnnounceJitter return the values in force.
	AnnounceInterval() time.Duration
	AnnounceJitter() time.Duration

	// Replace swaps in a freshly loaded snapshot, keeping the swarms.
	Replace(s *Snapshot)

	// Activity reports the live peers of a user and of a torrent.
	UserActivity(userID uint32) (seeding, leeching int)
	TorrentActivity(h bittorrent.InfoHash) (TorrentActivity, bool)
	// Counters returns the tracker's running totals, for reports.
	Counters() Counters
}

// TorrentActivity is what a site's torrent report shows.
type TorrentActivity struct {
	Torrent  Torrent
	Seeders  []uint32 // user ids with a seeding peer
	Leechers []uint32 // user ids with a downloading peer
	// Balance is raw uploaded minus downloaded since the tracker
	// started.
	Balance int64
	// LastFlushed is when the torrent's counters were last handed to
	// the flusher.
	LastFlushed time.Time
}

// Counters are running totals since the tracker started, and the current
// size of the swarms and of the statistics waiting to be written.
type Counters struct {
	Started         time.Time
	Announces       uint64
	FailedAnnounces uint64
	Scrapes         uint64
	// Seeders and Leechers are the live peers of registered torrents.
	Seeders  int
	Leechers int
	// Pending counts the rows waiting for the next write, per kind.
	Pending Pending
}

// Pending counts rows waiting to be written, per kind.
type Pending struct {
	Users, Torrents, Peers, Snatches, Tokens, ExpiredTokens int
}

// SiteHandler is implemented by drivers whose web application calls the
// tracker over HTTP (Gazelle's update and report calls). The handler is
// served on the tracker's public HTTP port, under paths the frontend does
// not serve itself.
type SiteHandler interface {
	SiteHandler(p Policy) http.Handler
}

// Watcher is implemented by drivers that learn of changes from the
// database itself (PostgreSQL's LISTEN/NOTIFY). Watch applies them to p
// until ctx ends.
type Watcher interface {
	Watch(ctx context.Context, p Policy) error
}
