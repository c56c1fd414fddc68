package tracker

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"log/slog"
	"math"
	"sync"
	"sync/atomic"
	"time"

	"github.com/chihaya/chihaya/bittorrent"
	"github.com/chihaya/chihaya/cache"
	"github.com/chihaya/chihaya/storage"
)

// SharedPolicy is the policy view of one of several tracker processes that
// share a cache: every change a web application pushes into it is applied
// to the local Private and passed on through the cache's Broadcaster, and
// Run applies the changes the other instances pass on. So a site that
// calls one instance (Gazelle sends its updates to a single address)
// changes them all, within a round trip to the cache.
//
// Each change travels as one JSON object naming the instance it comes from,
// its sequence number there and the Policy method, e.g.
//
//	{"from":"3f2a…","seq":42,"op":"put_torrent","torrent":{"id":7,"info_hash":"…",…}}
//
// Several may share one message, separated by newlines. An instance skips
// its own, which the cache hands back, and ignores what it cannot read.
// The sequence numbers let a receiver skip a change delivered twice (a
// publish retried after a timeout) and notice missing ones.
//
// Reads and Replace (a reload, which every instance does for itself) stay
// local, as does what Private keeps of its own: the live sessions behind
// the activity reports and the completions counted since the last load.
//
// Publishing is asynchronous: a change is applied at once and queued, and
// one goroutine publishes the queue in order, retrying while the cache is
// unreachable. A receiver that lost its subscription misses what was
// published meanwhile; it calls SharedConfig.Resync when it is back, and
// when it finds another instance's sequence numbers missing.
type SharedPolicy struct {
	p   *Private
	b   cache.Broadcaster
	id  string
	log *slog.Logger
	cfg SharedConfig
	// echo is how this instance's messages start.
	echo []byte

	// mu makes the order in which local changes are applied the order
	// in which they are queued, and so the order the others apply them.
	mu      sync.Mutex
	seq     uint64   // the last change's sequence number
	queue   [][]byte // encoded events, oldest first
	dropped bool     // changes were dropped since the queue last had room
	wake    chan struct{}

	subscribedOnce atomic.Bool
	ready          chan struct{}
	resync         chan struct{}
	// senders is the receiving side's record of the other instances;
	// forget asks it to start over, after a new subscription, whose
	// resync covers the gaps it would find.
	senders map[string]sender
	forget  atomic.Bool
}

// SharedConfig configures a SharedPolicy.
type SharedConfig struct {
	// Resync is called when changes the other instances published did
	// not arrive: when the subscription is back after it was lost, and
	// when a sender's sequence numbers skip. A reload from storage
	// catches up with them. It is called from one goroutine, never
	// twice at once; nil does nothing.
	Resync func()
	// Log receives the few state changes worth a line (publishing
	// failing and recovering, the subscription coming back); nil
	// discards them. Nothing is logged per change.
	Log *slog.Logger
}

var _ storage.Policy = (*SharedPolicy)(nil)

// Limits of the publishing queue: how many changes it holds at most (more
// are dropped while the cache is unreachable), and how many, or how many
// bytes, go in one message.
const (
	sharedQueueMax    = 100_000
	sharedBatchEvents = 256
	sharedBatchBytes  = 64 << 10
)

// Timeout and back-off of a publish.
const (
	sharedPublishTimeout = 5 * time.Second
	sharedMinBackoff     = 100 * time.Millisecond
	sharedMaxBackoff     = 5 * time.Second
)

// NewSharedPolicy shares p's changes through b. Start Run, then hand the
// SharedPolicy to whatever applies the web application's changes.
func NewSharedPolicy(p *Private, b cache.Broadcaster, cfg SharedConfig) *SharedPolicy {
	var id [8]byte
	_, _ = rand.Read(id[:])
	log := cfg.Log
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	s := &SharedPolicy{
		p:      p,
		b:      b,
		id:     hex.EncodeToString(id[:]),
		log:    log,
		cfg:    cfg,
		wake:   make(chan struct{}, 1),
		ready:  make(chan struct{}),
		resync: make(chan struct{}, 1),

		senders: map[string]sender{},
	}
	// The id is hex: nothing to escape.
	s.echo = []byte(`{"from":"` + s.id + `",`)
	return s
}

// ID is the random id this instance signs its changes with.
func (s *SharedPolicy) ID() string { return s.id }

// Ready is closed once the first subscription is in place: from then on,
// changes the other instances publish arrive.
func (s *SharedPolicy) Ready() <-chan struct{} { return s.ready }

// Run publishes this instance's changes and applies the others' until ctx
// ends or the cache is closed, and returns the reason.
func (s *SharedPolicy) Run(ctx context.Context) error {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	var wg sync.WaitGroup
	wg.Go(func() { s.publishLoop(ctx) })
	wg.Go(func() { s.resyncLoop(ctx) })
	err := s.b.Subscribe(ctx, s.receive, s.subscribed)
	cancel()
	wg.Wait()
	return err
}

// subscribed is called by the Broadcaster each time its subscription is
// in place.
func (s *SharedPolicy) subscribed() {
	if s.subscribedOnce.CompareAndSwap(false, true) {
		close(s.ready)
		return
	}
	s.forget.Store(true)
	s.requestResync()
}

// requestResync asks resyncLoop for a resync: changes passed on by the
// other instances were missed.
func (s *SharedPolicy) requestResync() {
	select {
	case s.resync <- struct{}{}:
	default: // one is pending already
	}
}

func (s *SharedPolicy) resyncLoop(ctx context.Context) {
	for {
		select {
		case <-ctx.Done():
			return
		case <-s.resync:
		}
		if s.cfg.Resync == nil {
			s.log.Warn("changes passed on by the other instances were missed (the link to them was interrupted, or one dropped changes); they are missing until the next reload")
			continue
		}
		s.log.Warn("changes passed on by the other instances were missed (the link to them was interrupted, or one dropped changes); reloading to catch up")
		s.cfg.Resync()
	}
}

// change applies a local change and queues it for the others, as one step
// so that concurrent changes are published in the order they took effect.
func (s *SharedPolicy) change(ev event, apply func()) {
	s.mu.Lock()
	defer s.mu.Unlock()
	apply()
	// A dropped change still takes its number, so that the others see
	// the gap.
	s.seq++
	ev.From, ev.Seq = s.id, s.seq
	msg, err := json.Marshal(&ev)
	if err != nil { // not for these types; applied locally regardless
		return
	}
	if len(s.queue) >= sharedQueueMax {
		if !s.dropped {
			s.dropped = true
			s.log.Error("too many changes waiting to be passed on to the other instances; dropping changes until the cache takes them (the others catch up at their next reload)", "waiting", len(s.queue))
		}
		return
	}
	s.queue = append(s.queue, msg)
	select {
	case s.wake <- struct{}{}:
	default:
	}
}

// next takes the next message off the queue: up to sharedBatchEvents
// events, newline-separated, or nil if the queue is empty.
func (s *SharedPolicy) next() []byte {
	s.mu.Lock()
	defer s.mu.Unlock()
	if len(s.queue) == 0 {
		return nil
	}
	n, size := 0, 0
	for n < len(s.queue) && n < sharedBatchEvents && (n == 0 || size+len(s.queue[n]) < sharedBatchBytes) {
		size += len(s.queue[n]) + 1
		n++
	}
	msg := bytes.Join(s.queue[:n], []byte{'\n'})
	clear(s.queue[:n])
	s.queue = s.queue[n:]
	if len(s.queue) == 0 {
		s.queue = nil
		if s.dropped {
			s.dropped = false
			s.log.Info("the queue of changes for the other instances has drained")
		}
	}
	return msg
}

// publishLoop publishes the queue in order until ctx ends. A message that
// cannot be published is tried again, with back-off, before the next.
func (s *SharedPolicy) publishLoop(ctx context.Context) {
	failing := false
	for {
		msg := s.next()
		if msg == nil {
			select {
			case <-ctx.Done():
				return
			case <-s.wake:
			}
			continue
		}
		backoff := sharedMinBackoff
		for {
			pctx, cancel := context.WithTimeout(ctx, sharedPublishTimeout)
			err := s.b.Publish(pctx, msg)
			cancel()
			if err == nil {
				break
			}
			if ctx.Err() != nil {
				return
			}
			if !failing {
				failing = true
				s.log.Warn("cannot pass changes on to the other instances; retrying", "err", err)
			}
			t := time.NewTimer(backoff)
			select {
			case <-ctx.Done():
				t.Stop()
				return
			case <-t.C:
			}
			backoff = min(2*backoff, sharedMaxBackoff)
		}
		if failing {
			failing = false
			s.log.Info("changes reach the other instances again")
		}
	}
}

// receive applies the changes in a message from the cache: one or more
// JSON events. Its own events, and what cannot be read, are skipped; a
// message that stops making sense is dropped from there on.
func (s *SharedPolicy) receive(msg []byte) {
	if bytes.HasPrefix(msg, s.echo) {
		// A message of this instance's (they are never mixed): skip
		// it without decoding.
		return
	}
	if s.forget.Swap(false) {
		clear(s.senders)
	}
	dec := json.NewDecoder(bytes.NewReader(msg))
	for {
		var ev event
		if err := dec.Decode(&ev); err != nil {
			return
		}
		if ev.From != s.id && s.fresh(&ev) {
			s.apply(&ev)
		}
	}
}

// fresh tracks each sender's sequence numbers: it reports false for an
// event seen already (a publish that timed out on the sender's side after
// Redis had taken it is published again), and asks for a resync when
// numbers are missing. Events without a number are taken as they come.
// Only receive calls it, one message at a time.
func (s *SharedPolicy) fresh(ev *event) bool {
	if ev.Seq == 0 {
		return true
	}
	now := time.Now()
	st, known := s.senders[ev.From]
	switch {
	case !known:
		if len(s.senders) >= 64 {
			// Instances that restarted come back under a new id.
			for id, old := range s.senders {
				if now.Sub(old.seen) > time.Hour {
					delete(s.senders, id)
				}
			}
		}
	case ev.Seq <= st.seq:
		return false
	case ev.Seq > st.seq+1:
		s.requestResync()
	}
	s.senders[ev.From] = sender{seq: ev.Seq, seen: now}
	return true
}

// sender is what a receiver knows of another instance: the last sequence
// number it applied, and when.
type sender struct {
	seq  uint64
	seen time.Time
}

// The operations, one per mutating method of storage.Policy.
const (
	opPutUser             = "put_user"
	opUpdateUser          = "update_user"
	opRemoveUser          = "remove_user"
	opChangePasskey       = "change_passkey"
	opPutTorrent          = "put_torrent"
	opSetLeech            = "set_leech"
	opDeleteTorrent       = "delete_torrent"
	opAddToken            = "add_token"
	opRemoveToken         = "remove_token"
	opAddWhitelist        = "add_whitelist"
	opRemoveWhitelist     = "remove_whitelist"
	opReplaceWhitelist    = "replace_whitelist"
	opSetAnnounceInterval = "set_announce_interval"
	opSetAnnounceJitter   = "set_announce_jitter"
)

// event is one change on the wire. Which fields an operation uses is in
// the methods below; a field left out reads as its zero value, which is
// why zero values may be omitted.
type event struct {
	From string `json:"from"`
	// Seq numbers the sender's changes from 1, so that receivers can
	// skip one delivered twice and notice missing ones.
	Seq uint64 `json:"seq"`
	Op  string `json:"op"`

	User       *wireUser    `json:"user,omitempty"`
	Passkey    byteString   `json:"passkey,omitempty"`
	NewPasskey byteString   `json:"new_passkey,omitempty"`
	CanLeech   bool         `json:"can_leech,omitempty"`
	Protected  bool         `json:"protected,omitempty"`
	Torrent    *wireTorrent `json:"torrent,omitempty"`
	InfoHash   string       `json:"info_hash,omitempty"`
	Leech      uint8        `json:"leech,omitempty"`
	Reason     int          `json:"reason,omitempty"`
	Token      *wireToken   `json:"token,omitempty"`
	Prefix     byteString   `json:"prefix,omitempty"`
	// Prefixes is a pointer so that a missing list is told apart from
	// an empty one (which allows every client).
	Prefixes *[]byteString `json:"prefixes,omitempty"`
	// Nanos is a duration in nanoseconds.
	Nanos int64 `json:"ns,omitempty"`
}

type wireUser struct {
	ID        uint32     `json:"id"`
	Passkey   byteString `json:"passkey"`
	CanLeech  bool       `json:"can_leech"`
	Protected bool       `json:"protected"`
}

type wireTorrent struct {
	ID             uint32  `json:"id"`
	InfoHash       string  `json:"info_hash"`
	InfoHashV2     string  `json:"info_hash_v2,omitempty"`
	Leech          uint8   `json:"leech"`
	UpMultiplier   float64 `json:"up_multiplier"`
	DownMultiplier float64 `json:"down_multiplier"`
	Snatches       uint32  `json:"snatches"`
}

type wireToken struct {
	UserID    uint32 `json:"user_id"`
	TorrentID uint32 `json:"torrent_id"`
}

// apply applies another instance's event to the local Private, after
// checking that it carries what its operation needs; anything else is
// ignored.
func (s *SharedPolicy) apply(ev *event) {
	p := s.p
	switch ev.Op {
	case opPutUser:
		if u := ev.User; u != nil && u.Passkey != "" {
			p.PutUser(storage.User{ID: u.ID, Passkey: string(u.Passkey), CanLeech: u.CanLeech, Protected: u.Protected})
		}
	case opUpdateUser:
		if ev.Passkey != "" {
			p.UpdateUser(string(ev.Passkey), ev.CanLeech, ev.Protected)
		}
	case opRemoveUser:
		if ev.Passkey != "" {
			p.RemoveUser(string(ev.Passkey))
		}
	case opChangePasskey:
		if ev.Passkey != "" && ev.NewPasskey != "" {
			p.ChangePasskey(string(ev.Passkey), string(ev.NewPasskey))
		}
	case opPutTorrent:
		if t, ok := ev.Torrent.torrent(); ok {
			p.PutTorrent(t)
		}
	case opSetLeech:
		if h, err := bittorrent.ParseInfoHash(ev.InfoHash); err == nil && validLeech(ev.Leech) {
			p.SetLeech(h, storage.Leech(ev.Leech))
		}
	case opDeleteTorrent:
		if h, err := bittorrent.ParseInfoHash(ev.InfoHash); err == nil {
			p.DeleteTorrent(h, ev.Reason)
		}
	case opAddToken:
		if ev.Token != nil {
			p.AddToken(storage.Token{UserID: ev.Token.UserID, TorrentID: ev.Token.TorrentID})
		}
	case opRemoveToken:
		if ev.Token != nil {
			p.RemoveToken(storage.Token{UserID: ev.Token.UserID, TorrentID: ev.Token.TorrentID})
		}
	case opAddWhitelist:
		p.AddWhitelist(string(ev.Prefix))
	case opRemoveWhitelist:
		p.RemoveWhitelist(string(ev.Prefix))
	case opReplaceWhitelist:
		if ev.Prefixes != nil {
			wl := make([]string, len(*ev.Prefixes))
			for i, prefix := range *ev.Prefixes {
				wl[i] = string(prefix)
			}
			p.ReplaceWhitelist(wl)
		}
	case opSetAnnounceInterval:
		// Zero or less would have clients announce in a loop.
		if ev.Nanos > 0 {
			p.SetAnnounceInterval(time.Duration(ev.Nanos))
		}
	case opSetAnnounceJitter:
		if ev.Nanos >= 0 {
			p.SetAnnounceJitter(time.Duration(ev.Nanos))
		}
	}
}

// byteString is a string of arbitrary bytes (a passkey, a peer id prefix)
// on the wire: each byte travels as the character with the same code
// (Latin-1), so that ASCII reads as itself and no byte is lost to JSON's
// UTF-8.
type byteString string

// MarshalJSON implements json.Marshaler.
func (b byteString) MarshalJSON() ([]byte, error) {
	r := make([]rune, len(b))
	for i := range len(b) {
		r[i] = rune(b[i])
	}
	return json.Marshal(string(r))
}

// UnmarshalJSON implements json.Unmarshaler.
func (b *byteString) UnmarshalJSON(data []byte) error {
	var s string
	if err := json.Unmarshal(data, &s); err != nil {
		return err
	}
	out := make([]byte, 0, len(s))
	for _, r := range s {
		if r > 0xff {
			return errors.New("tracker: a shared change holds a character outside Latin-1")
		}
		out = append(out, byte(r))
	}
	*b = byteString(out)
	return nil
}

func validLeech(l uint8) bool { return storage.Leech(l) <= storage.Neutral }

func wireTorrentOf(t storage.Torrent) *wireTorrent {
	w := &wireTorrent{
		ID:             t.ID,
		InfoHash:       t.InfoHash.String(),
		Leech:          uint8(t.Leech),
		UpMultiplier:   t.UpMultiplier,
		DownMultiplier: t.DownMultiplier,
		Snatches:       t.Snatches,
	}
	if t.InfoHashV2 != (bittorrent.InfoHash{}) {
		w.InfoHashV2 = t.InfoHashV2.String()
	}
	return w
}

// torrent checks and converts a torrent from the wire.
func (w *wireTorrent) torrent() (storage.Torrent, bool) {
	if w == nil || !validLeech(w.Leech) {
		return storage.Torrent{}, false
	}
	h, err := bittorrent.ParseInfoHash(w.InfoHash)
	if err != nil {
		return storage.Torrent{}, false
	}
	t := storage.Torrent{
		ID: w.ID, InfoHash: h, Leech: storage.Leech(w.Leech),
		UpMultiplier: w.UpMultiplier, DownMultiplier: w.DownMultiplier, Snatches: w.Snatches,
	}
	if w.InfoHashV2 != "" {
		if t.InfoHashV2, err = bittorrent.ParseInfoHash(w.InfoHashV2); err != nil {
			return storage.Torrent{}, false
		}
	}
	for _, m := range []float64{t.UpMultiplier, t.DownMultiplier} {
		if m < 0 || math.IsInf(m, 0) || math.IsNaN(m) {
			return storage.Torrent{}, false
		}
	}
	return t, true
}

// PutUser implements storage.Policy.
func (s *SharedPolicy) PutUser(u storage.User) {
	s.change(event{Op: opPutUser, User: &wireUser{ID: u.ID, Passkey: byteString(u.Passkey), CanLeech: u.CanLeech, Protected: u.Protected}},
		func() { s.p.PutUser(u) })
}

// UpdateUser implements storage.Policy. The change is passed on even when
// this instance does not know the passkey: another one may.
func (s *SharedPolicy) UpdateUser(passkey string, canLeech, protected bool) (ok bool) {
	s.change(event{Op: opUpdateUser, Passkey: byteString(passkey), CanLeech: canLeech, Protected: protected},
		func() { ok = s.p.UpdateUser(passkey, canLeech, protected) })
	return ok
}

// RemoveUser implements storage.Policy.
func (s *SharedPolicy) RemoveUser(passkey string) {
	s.change(event{Op: opRemoveUser, Passkey: byteString(passkey)}, func() { s.p.RemoveUser(passkey) })
}

// ChangePasskey implements storage.Policy; passed on whatever the local
// answer, as UpdateUser.
func (s *SharedPolicy) ChangePasskey(oldPasskey, newPasskey string) (ok bool) {
	s.change(event{Op: opChangePasskey, Passkey: byteString(oldPasskey), NewPasskey: byteString(newPasskey)},
		func() { ok = s.p.ChangePasskey(oldPasskey, newPasskey) })
	return ok
}

// User implements storage.Policy.
func (s *SharedPolicy) User(passkey string) (storage.User, bool) { return s.p.User(passkey) }

// PutTorrent implements storage.Policy.
func (s *SharedPolicy) PutTorrent(t storage.Torrent) {
	s.change(event{Op: opPutTorrent, Torrent: wireTorrentOf(t)}, func() { s.p.PutTorrent(t) })
}

// SetLeech implements storage.Policy; passed on whatever the local answer,
// as UpdateUser.
func (s *SharedPolicy) SetLeech(h bittorrent.InfoHash, l storage.Leech) (ok bool) {
	s.change(event{Op: opSetLeech, InfoHash: h.String(), Leech: uint8(l)}, func() { ok = s.p.SetLeech(h, l) })
	return ok
}

// DeleteTorrent implements storage.Policy.
func (s *SharedPolicy) DeleteTorrent(h bittorrent.InfoHash, reason int) {
	s.change(event{Op: opDeleteTorrent, InfoHash: h.String(), Reason: reason}, func() { s.p.DeleteTorrent(h, reason) })
}

// Torrent implements storage.Policy.
func (s *SharedPolicy) Torrent(h bittorrent.InfoHash) (storage.Torrent, bool) { return s.p.Torrent(h) }

// AddToken implements storage.Policy.
func (s *SharedPolicy) AddToken(t storage.Token) {
	s.change(event{Op: opAddToken, Token: &wireToken{UserID: t.UserID, TorrentID: t.TorrentID}}, func() { s.p.AddToken(t) })
}

// RemoveToken implements storage.Policy.
func (s *SharedPolicy) RemoveToken(t storage.Token) {
	s.change(event{Op: opRemoveToken, Token: &wireToken{UserID: t.UserID, TorrentID: t.TorrentID}}, func() { s.p.RemoveToken(t) })
}

// TokenHolders implements storage.Policy.
func (s *SharedPolicy) TokenHolders(torrentID uint32) []uint32 { return s.p.TokenHolders(torrentID) }

// AddWhitelist implements storage.Policy.
func (s *SharedPolicy) AddWhitelist(prefix string) {
	s.change(event{Op: opAddWhitelist, Prefix: byteString(prefix)}, func() { s.p.AddWhitelist(prefix) })
}

// RemoveWhitelist implements storage.Policy.
func (s *SharedPolicy) RemoveWhitelist(prefix string) {
	s.change(event{Op: opRemoveWhitelist, Prefix: byteString(prefix)}, func() { s.p.RemoveWhitelist(prefix) })
}

// ReplaceWhitelist implements storage.Policy.
func (s *SharedPolicy) ReplaceWhitelist(prefixes []string) {
	wl := make([]byteString, len(prefixes)) // never nil: an empty list is sent as []
	for i, prefix := range prefixes {
		wl[i] = byteString(prefix)
	}
	s.change(event{Op: opReplaceWhitelist, Prefixes: &wl}, func() { s.p.ReplaceWhitelist(prefixes) })
}

// SetAnnounceInterval implements storage.Policy.
func (s *SharedPolicy) SetAnnounceInterval(d time.Duration) {
	s.change(event{Op: opSetAnnounceInterval, Nanos: int64(d)}, func() { s.p.SetAnnounceInterval(d) })
}

// SetAnnounceJitter implements storage.Policy.
func (s *SharedPolicy) SetAnnounceJitter(d time.Duration) {
	s.change(event{Op: opSetAnnounceJitter, Nanos: int64(d)}, func() { s.p.SetAnnounceJitter(d) })
}

// AnnounceInterval implements storage.Policy.
func (s *SharedPolicy) AnnounceInterval() time.Duration { return s.p.AnnounceInterval() }

// AnnounceJitter implements storage.Policy.
func (s *SharedPolicy) AnnounceJitter() time.Duration { return s.p.AnnounceJitter() }

// Replace implements storage.Policy. A reload is this instance's own: it
// is not passed on.
func (s *SharedPolicy) Replace(snap *storage.Snapshot) { s.p.Replace(snap) }

// UserActivity implements storage.Policy, from this instance's sessions.
func (s *SharedPolicy) UserActivity(userID uint32) (seeding, leeching int) {
	return s.p.UserActivity(userID)
}

// TorrentActivity implements storage.Policy, from this instance's
// sessions.
func (s *SharedPolicy) TorrentActivity(h bittorrent.InfoHash) (storage.TorrentActivity, bool) {
	return s.p.TorrentActivity(h)
}

// Counters implements storage.Policy, for this instance.
func (s *SharedPolicy) Counters() storage.Counters { return s.p.Counters() }
