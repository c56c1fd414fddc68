// Package storage defines the link to a web application's database: the
// source of users, registered torrents, freeleech tokens and the client
// whitelist, and the sink for the statistics the tracker collects. Drivers
// register themselves by name, as database/sql drivers do. A tracker with
// no storage configured is an open tracker.
//
// Storage is never on the announce path: the tracker loads a Snapshot at
// start (and on reloads), keeps it in memory, and hands the statistics it
// produces to a Flusher, which sums them per key and writes them in batches.
package storage

import (
	"context"
	"encoding/json"
	"errors"
	"net/netip"
	"time"

	"github.com/chihaya/chihaya/bittorrent"
	"github.com/chihaya/chihaya/internal/registry"
)

// Storage is an open link to a web application's database.
type Storage interface {
	Loader
	Writer
	// Close releases the connection. Pending statistics are the
	// Flusher's, which is closed first.
	Close() error
}

// Loader reads what the tracker's rules need.
type Loader interface {
	// Load reads every enabled user, registered torrent, active token
	// and whitelist entry.
	Load(ctx context.Context) (*Snapshot, error)
}

// Writer writes batches of statistics. Each batch holds at most one row per
// key (the Flusher sums them first), so a driver may use upserts that
// refuse a key twice. A write either applies the whole batch or returns an
// error; an error wrapped with Permanent says the batch holds a row that can
// never be written, and the Flusher then splits the batch to find it.
type Writer interface {
	WriteUsers(ctx context.Context, rows []UserDelta) error
	WriteTorrents(ctx context.Context, rows []TorrentStats) error
	WritePeers(ctx context.Context, rows []PeerRow) error
	WriteSnatches(ctx context.Context, rows []Snatch) error
	WriteTokens(ctx context.Context, rows []TokenUse) error
	// ExpireTokens tells the web application that these tokens are used
	// up (their holder completed the torrent).
	ExpireTokens(ctx context.Context, tokens []Token) error
}

// Starter is implemented by drivers that prepare the database when the
// tracker starts, before the first Load (Gazelle's drivers clear the peer
// table and the live counters, which the tracker rebuilds).
type Starter interface {
	Start(ctx context.Context) error
}

// Snapshot is everything the tracker's rules read from storage.
type Snapshot struct {
	Users     []User
	Torrents  []Torrent
	Tokens    []Token
	Whitelist []string
}

// User is a member who may announce.
type User struct {
	ID uint32
	// Passkey is the secret in the user's announce URLs.
	Passkey string
	// CanLeech false means the user may seed but not download.
	CanLeech bool
	// Protected users' addresses are not written to the database.
	Protected bool
}

// Leech says how a torrent's transfers count against users.
type Leech uint8

const (
	// Normal: uploads and downloads count.
	Normal Leech = iota
	// Free (freeleech): uploads count, downloads do not.
	Free
	// Neutral: neither counts.
	Neutral
)

// String names the state as operators know it.
func (l Leech) String() string {
	switch l {
	case Free:
		return "freeleech"
	case Neutral:
		return "neutral"
	}
	return "normal"
}

// Torrent is a registered torrent.
type Torrent struct {
	ID       uint32
	InfoHash bittorrent.InfoHash
	// InfoHashV2 is the truncated v2 hash of a hybrid torrent (BEP 52),
	// the zero hash when there is none. Both hashes reach one torrent.
	InfoHashV2 bittorrent.InfoHash
	Leech      Leech
	// UpMultiplier and DownMultiplier scale the credited transfer after
	// the Leech state and tokens are applied; 1 is no change.
	UpMultiplier   float64
	DownMultiplier float64
	// Snatches is the completed count so far.
	Snatches uint32
}

// Token is a user's freeleech token for one torrent.
type Token struct {
	UserID    uint32
	TorrentID uint32
}

// UserDelta is transfer to credit to a user, after freeleech, tokens and
// multipliers.
type UserDelta struct {
	UserID     uint32
	Uploaded   int64
	Downloaded int64
}

// TorrentStats is a torrent's current swarm counters plus the snatches
// since the last write.
type TorrentStats struct {
	TorrentID uint32
	Seeders   uint32
	Leechers  uint32
	// Snatches is added to the stored count.
	Snatches uint32
	// Balance is the torrent's raw uploaded minus downloaded since the
	// tracker started, a cheat indicator; it replaces the stored value.
	Balance int64
	// Seeded is the last time the swarm had a seeder, zero if it had
	// none since the last write.
	Seeded time.Time
}

// PeerRow is the state of one peer of one user on one torrent.
type PeerRow struct {
	TorrentID uint32
	UserID    uint32
	PeerID    bittorrent.PeerID
	// Full is false for a row that only says the peer is still there
	// (times and counters); a driver may then leave transfer columns
	// alone.
	Full bool
	// Active is false once the peer has stopped.
	Active     bool
	Uploaded   uint64
	Downloaded uint64
	Left       uint64
	Corrupt    uint64
	// UpSpeed and DownSpeed are bytes per second since the previous
	// announce.
	UpSpeed   uint64
	DownSpeed uint64
	// TimeSpent is the time since the session's first announce;
	// Announces counts the session's announces.
	TimeSpent time.Duration
	Announces uint32
	// Addr is the peer's address, the zero Addr for protected users.
	Addr      netip.Addr
	Port      uint16
	UserAgent string
	Time      time.Time
}

// Snatch records one completion.
type Snatch struct {
	UserID    uint32
	TorrentID uint32
	Time      time.Time
	// Addr is the zero Addr for protected users.
	Addr netip.Addr
}

// TokenUse is download a token spared its holder.
type TokenUse struct {
	UserID     uint32
	TorrentID  uint32
	Downloaded int64
}

// permanent marks an error caused by the rows, not by the connection.
type permanent struct{ err error }

func (p permanent) Error() string { return p.err.Error() }
func (p permanent) Unwrap() error { return p.err }

// Permanent wraps err to say that retrying the same rows cannot succeed
// (a constraint or data error, not a lost connection).
func Permanent(err error) error {
	if err == nil {
		return nil
	}
	return permanent{err}
}

// IsPermanent reports whether err was wrapped with Permanent.
func IsPermanent(err error) bool {
	var p permanent
	return errors.As(err, &p)
}

// Driver opens storages of one kind.
type Driver interface {
	// Open validates config, the driver's own JSON block, and connects.
	// Errors name the offending key.
	Open(config json.RawMessage) (Storage, error)
}

var drivers = registry.New[Driver]("storage")

// Register makes a driver available under name. It is meant to be called
// from the driver package's init and panics if name is taken or driver is
// nil, since either is a programming error.
func Register(name string, driver Driver) { drivers.Register(name, driver) }

// Drivers returns the names of the registered drivers, sorted.
func Drivers() []string { return drivers.Names() }

// Open opens a storage with the driver registered as name.
func Open(name string, config json.RawMessage) (Storage, error) {
	driver, err := drivers.Lookup(name)
	if err != nil {
		return nil, err
	}
	return driver.Open(config)
}
