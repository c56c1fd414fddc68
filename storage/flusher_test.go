package storage

import (
	"context"
	"errors"
	"log/slog"
	"slices"
	"sync"
	"testing"
	"time"
)

// recorder is a Writer that keeps what it is given and fails on demand,
// standing in for a database whose failures the test controls.
type recorder struct {
	mu       sync.Mutex
	users    map[uint32]UserDelta
	torrents []TorrentStats
	peers    []PeerRow
	snatches []Snatch
	tokens   map[Token]int64
	expired  []Token
	down     bool            // every write fails as if the connection were lost
	bad      map[uint32]bool // user ids the database refuses
	batches  int
	// peerWrites counts WritePeers calls and their sizes; from the
	// peerWritesOK-th on they fail, when peerWritesOK is above zero.
	peerWrites   []int
	peerWritesOK int
}

func newRecorder() *recorder {
	return &recorder{users: map[uint32]UserDelta{}, tokens: map[Token]int64{}, bad: map[uint32]bool{}}
}

var errDown = errors.New("connection refused")

func (r *recorder) WriteUsers(_ context.Context, rows []UserDelta) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.down {
		return errDown
	}
	seen := map[uint32]bool{}
	for _, row := range rows {
		if r.bad[row.UserID] {
			return Permanent(errors.New("foreign key"))
		}
		if seen[row.UserID] {
			return Permanent(errors.New("the same key twice in one batch"))
		}
		seen[row.UserID] = true
	}
	r.batches++
	for _, row := range rows {
		u := r.users[row.UserID]
		u.UserID = row.UserID
		u.Uploaded += row.Uploaded
		u.Downloaded += row.Downloaded
		r.users[row.UserID] = u
	}
	return nil
}

func (r *recorder) WriteTorrents(_ context.Context, rows []TorrentStats) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.down {
		return errDown
	}
	r.torrents = append(r.torrents, rows...)
	return nil
}

func (r *recorder) WritePeers(_ context.Context, rows []PeerRow) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.peerWrites = append(r.peerWrites, len(rows))
	if r.down || r.peerWritesOK > 0 && len(r.peerWrites) >= r.peerWritesOK {
		return errDown
	}
	r.peers = append(r.peers, rows...)
	return nil
}

func (r *recorder) WriteSnatches(_ context.Context, rows []Snatch) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.down {
		return errDown
	}
	r.snatches = append(r.snatches, rows...)
	return nil
}

func (r *recorder) WriteTokens(_ context.Context, rows []TokenUse) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.down {
		return errDown
	}
	for _, row := range rows {
		r.tokens[Token{row.UserID, row.TorrentID}] += row.Downloaded
	}
	return nil
}

func (r *recorder) ExpireTokens(_ context.Context, tokens []Token) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.down {
		return errDown
	}
	r.expired = append(r.expired, tokens...)
	return nil
}

func (r *recorder) setDown(down bool) {
	r.mu.Lock()
	r.down = down
	r.mu.Unlock()
}

func newTestFlusher(w Writer, maxPeers int) *Flusher {
	return NewFlusher(w, FlusherConfig{Interval: 10 * time.Millisecond, Timeout: time.Second, MaxBackoff: 50 * time.Millisecond, MaxPeerRows: maxPeers}, slog.New(slog.DiscardHandler))
}

func TestFlusherSumsPerKey(t *testing.T) {
	rec := newRecorder()
	f := newTestFlusher(rec, 0)
	ctx := context.Background()
	f.AddUser(UserDelta{UserID: 1, Uploaded: 10, Downloaded: 1})
	f.AddUser(UserDelta{UserID: 2, Uploaded: 5})
	f.AddUser(UserDelta{UserID: 1, Uploaded: 7, Downloaded: 2})
	seeded := time.Unix(1000, 0)
	f.AddTorrent(TorrentStats{TorrentID: 9, Seeders: 1, Leechers: 3, Snatches: 1, Balance: 5, Seeded: seeded})
	f.AddTorrent(TorrentStats{TorrentID: 9, Seeders: 2, Leechers: 1, Snatches: 1, Balance: 8})
	f.AddPeer(PeerRow{TorrentID: 9, UserID: 1, Full: true, Uploaded: 5})
	f.AddPeer(PeerRow{TorrentID: 9, UserID: 1, Full: false, Uploaded: 5, Announces: 2})
	f.AddTokenUse(TokenUse{UserID: 1, TorrentID: 9, Downloaded: 3})
	f.AddTokenUse(TokenUse{UserID: 1, TorrentID: 9, Downloaded: 4})
	f.AddSnatch(Snatch{UserID: 1, TorrentID: 9})
	f.AddSnatch(Snatch{UserID: 1, TorrentID: 9})
	f.ExpireToken(Token{1, 9})
	f.ExpireToken(Token{1, 9})
	if p := f.Pending(); p != (Pending{Users: 2, Torrents: 1, Peers: 1, Snatches: 2, Tokens: 1, ExpiredTokens: 1}) {
		t.Fatalf("pending %+v", p)
	}
	if err := f.Flush(ctx); err != nil {
		t.Fatal(err)
	}
	if u := rec.users[1]; u.Uploaded != 17 || u.Downloaded != 3 {
		t.Errorf("user 1 = %+v, want 17 up 3 down", u)
	}
	if len(rec.torrents) != 1 || rec.torrents[0] != (TorrentStats{TorrentID: 9, Seeders: 2, Leechers: 1, Snatches: 2, Balance: 8, Seeded: seeded}) {
		t.Errorf("torrents %+v: want the newest counters and balance, summed snatches, the last seeded time", rec.torrents)
	}
	if len(rec.peers) != 1 || !rec.peers[0].Full || rec.peers[0].Announces != 2 {
		t.Errorf("peers %+v: want one full row with the newest values", rec.peers)
	}
	if rec.tokens[Token{1, 9}] != 7 || len(rec.expired) != 1 || len(rec.snatches) != 2 {
		t.Errorf("tokens %v expired %v snatches %v", rec.tokens, rec.expired, rec.snatches)
	}
	if p := f.Pending(); p != (Pending{}) {
		t.Errorf("still pending after a flush: %+v", p)
	}
}

// While the database is down, rows stay and keep being summed; once it is
// back they are written once.
func TestFlusherKeepsRowsWhileDown(t *testing.T) {
	rec := newRecorder()
	f := newTestFlusher(rec, 0)
	ctx := context.Background()
	rec.setDown(true)
	f.AddUser(UserDelta{UserID: 1, Uploaded: 10})
	f.AddSnatch(Snatch{UserID: 1, TorrentID: 2})
	if err := f.Flush(ctx); !errors.Is(err, errDown) {
		t.Fatalf("flush while down: %v", err)
	}
	f.AddUser(UserDelta{UserID: 1, Uploaded: 5})
	f.AddUser(UserDelta{UserID: 3, Downloaded: 1})
	if err := f.Flush(ctx); err == nil {
		t.Fatal("flush while down succeeded")
	}
	rec.setDown(false)
	if err := f.Flush(ctx); err != nil {
		t.Fatal(err)
	}
	if rec.users[1].Uploaded != 15 || rec.users[3].Downloaded != 1 || len(rec.snatches) != 1 {
		t.Fatalf("after recovery: users %v snatches %v", rec.users, rec.snatches)
	}
	if err := f.Flush(ctx); err != nil || rec.users[1].Uploaded != 15 {
		t.Fatalf("a second flush wrote again: %v %v", err, rec.users)
	}
	for _, st := range f.Stats() {
		if st.Name == "users" && (st.Retries != 2 || st.Written != 2) {
			t.Errorf("users stats %+v", st)
		}
	}
}

// A row the database refuses is found by splitting and dropped alone.
func TestFlusherIsolatesBadRows(t *testing.T) {
	rec := newRecorder()
	rec.bad[5] = true
	f := newTestFlusher(rec, 0)
	for id := uint32(1); id <= 8; id++ {
		f.AddUser(UserDelta{UserID: id, Uploaded: int64(id)})
	}
	if err := f.Flush(context.Background()); err != nil {
		t.Fatal(err)
	}
	if len(rec.users) != 7 || rec.users[8].Uploaded != 8 {
		t.Fatalf("users written: %v; want all but user 5", rec.users)
	}
	if _, ok := rec.users[5]; ok {
		t.Fatal("the refused row was written")
	}
	for _, st := range f.Stats() {
		if st.Name == "users" && st.Dropped != 1 {
			t.Errorf("dropped %d, want 1", st.Dropped)
		}
	}
}

func TestFlusherBoundsPeerRows(t *testing.T) {
	rec := newRecorder()
	f := newTestFlusher(rec, 3)
	for id := uint32(1); id <= 5; id++ {
		f.AddPeer(PeerRow{TorrentID: 1, UserID: id})
	}
	if err := f.Flush(context.Background()); err != nil {
		t.Fatal(err)
	}
	if len(rec.peers) != 3 || rec.peers[0].UserID != 3 {
		t.Fatalf("peers written %+v: want the newest 3", rec.peers)
	}
}

func TestFlusherRunsAndDrainsOnClose(t *testing.T) {
	rec := newRecorder()
	f := newTestFlusher(rec, 0)
	f.Start()
	f.AddUser(UserDelta{UserID: 1, Uploaded: 1})
	deadline := time.Now().Add(5 * time.Second)
	for f.Pending().Users != 0 {
		if time.Now().After(deadline) {
			t.Fatal("the periodic write never happened")
		}
		time.Sleep(5 * time.Millisecond)
	}
	rec.setDown(true)
	f.AddUser(UserDelta{UserID: 2, Uploaded: 2})
	go func() {
		time.Sleep(100 * time.Millisecond)
		rec.setDown(false)
	}()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := f.Close(ctx); err != nil {
		t.Fatal(err)
	}
	if rec.users[2].Uploaded != 2 {
		t.Fatalf("Close did not drain: %v", rec.users)
	}
}

func TestFlusherCloseReportsWhatIsLeft(t *testing.T) {
	rec := newRecorder()
	rec.setDown(true)
	f := newTestFlusher(rec, 0)
	f.AddUser(UserDelta{UserID: 1, Uploaded: 1})
	ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
	defer cancel()
	if err := f.Close(ctx); err == nil {
		t.Fatal("Close with the database down reported success")
	}
	rec.setDown(false)
	if err := f.Close(context.Background()); err != nil || rec.users[1].Uploaded != 1 {
		t.Fatalf("a second Close once the database is back: %v, users %v", err, rec.users)
	}
}

func TestFlusherConcurrentAdds(t *testing.T) {
	rec := newRecorder()
	f := newTestFlusher(rec, 0)
	f.Start()
	var wg sync.WaitGroup
	for g := range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range 2000 {
				f.AddUser(UserDelta{UserID: uint32(i % 50), Uploaded: 1})
				if i%500 == 0 && g == 0 {
					rec.setDown(i%1000 == 0)
				}
			}
		}()
	}
	wg.Wait()
	rec.setDown(false)
	if err := f.Close(context.Background()); err != nil {
		t.Fatal(err)
	}
	var total int64
	for _, u := range rec.users {
		total += u.Uploaded
	}
	if total != 8000 {
		t.Fatalf("wrote %d bytes of upload, counted 8000", total)
	}
}

// source is a Source whose rows the test sets.
type source[R any] struct {
	mu   sync.Mutex
	rows []R
}

func (s *source[R]) put(r ...R) {
	s.mu.Lock()
	s.rows = append(s.rows, r...)
	s.mu.Unlock()
}

func (s *source[R]) Take(dst []R) []R {
	s.mu.Lock()
	defer s.mu.Unlock()
	dst = append(dst, s.rows...)
	s.rows = nil
	return dst
}

func (s *source[R]) Pending() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.rows)
}

// Rows a failed write put back are older than a source's, and a batch holds
// each key once.
func TestFlusherMergesSourceRows(t *testing.T) {
	rec := newRecorder()
	f := newTestFlusher(rec, 0)
	users, peers := &source[UserDelta]{}, &source[PeerRow]{}
	f.SetSources(Sources{Users: users, Peers: peers})
	users.put(UserDelta{UserID: 1, Uploaded: 10}, UserDelta{UserID: 2, Uploaded: 20})
	peers.put(PeerRow{TorrentID: 1, UserID: 1, Full: true, Uploaded: 1}, PeerRow{TorrentID: 1, UserID: 2, Uploaded: 2})
	f.AddUser(UserDelta{UserID: 3, Uploaded: 3})
	if p := f.Pending(); p.Users != 3 || p.Peers != 2 {
		t.Fatalf("pending %+v: want the queue's and the sources' rows", p)
	}
	rec.setDown(true)
	if err := f.Flush(context.Background()); err == nil {
		t.Fatal("a write to a database that is down succeeded")
	}
	if p := f.Pending(); p.Users != 3 || p.Peers != 2 {
		t.Fatalf("pending %+v after a failed write: the rows must be kept", p)
	}
	users.put(UserDelta{UserID: 1, Uploaded: 5})
	peers.put(PeerRow{TorrentID: 1, UserID: 1, Uploaded: 7}, PeerRow{TorrentID: 2, UserID: 1})
	rec.setDown(false)
	if err := f.Flush(context.Background()); err != nil {
		t.Fatal(err)
	}
	if rec.users[1].Uploaded != 15 || rec.users[2].Uploaded != 20 || rec.users[3].Uploaded != 3 {
		t.Fatalf("users %+v: want 15, 20, 3", rec.users)
	}
	if len(rec.peers) != 3 {
		t.Fatalf("peer rows %+v: want one per key", rec.peers)
	}
	for _, r := range rec.peers {
		if r.TorrentID == 1 && r.UserID == 1 && (!r.Full || r.Uploaded != 7) {
			t.Fatalf("row %+v: want the newest values, still full", r)
		}
	}
	if p := f.Pending(); p != (Pending{}) {
		t.Fatalf("pending %+v after a write", p)
	}
}

// A backlog goes out in batches of at most batchRows, each its own write:
// when one fails, the batches before it stay written and only the rest is
// tried again, so a database that writes a backlog more slowly than one
// write may take still works through it.
func TestFlusherWritesBacklogInBatches(t *testing.T) {
	rec := newRecorder()
	rec.peerWritesOK = 3 // the third write fails
	f := newTestFlusher(rec, 0)
	const n = 7*batchRows/2 + 7
	for i := range n {
		f.AddPeer(PeerRow{TorrentID: 1, UserID: uint32(i + 1), Full: true, Active: true})
	}
	if err := f.Flush(context.Background()); err == nil {
		t.Fatal("a flush with a failing write succeeded")
	}
	if want := []int{batchRows, batchRows, batchRows}; !slices.Equal(rec.peerWrites, want) {
		t.Fatalf("writes of %v rows, want %v", rec.peerWrites, want)
	}
	if got := f.Pending().Peers; got != n-2*batchRows {
		t.Fatalf("%d rows pending after two of three batches were written, want %d", got, n-2*batchRows)
	}
	rec.mu.Lock()
	rec.peerWritesOK = 0
	rec.mu.Unlock()
	if err := f.Flush(context.Background()); err != nil {
		t.Fatal(err)
	}
	written := map[uint32]int{}
	for _, r := range rec.peers {
		written[r.UserID]++
	}
	for i := range n {
		if written[uint32(i+1)] != 1 {
			t.Fatalf("row of user %d written %d times, want once", i+1, written[uint32(i+1)])
		}
	}
	if rest := rec.peerWrites[3:]; !slices.Equal(rest, []int{batchRows, n - 3*batchRows}) {
		t.Fatalf("the retry wrote %v rows, want %v", rest, []int{batchRows, n - 3*batchRows})
	}
}
