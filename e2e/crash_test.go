//go:build linux

package e2e

import (
	"bytes"
	"crypto/rand"
	"fmt"
	"io"
	mrand "math/rand/v2"
	"net/http"
	"os"
	"slices"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// These tests hold the tracker to the README's data-loss guarantee
// ("Limits and guarantees", Statistics): a graceful stop writes every
// counted transfer; a crash (kill -9) loses at most what was counted since
// the last successful write, one flush interval of statistics while the
// database is up. Clients are plain HTTP announces sent by hand, so the
// test knows to the byte what every answered announce reported.

const (
	// crashUsers × crashTorrents sessions announce at once, each every
	// crashPauseMin–crashPauseMax: about 1,500 announces a second.
	crashUsers    = 20
	crashTorrents = 3
	crashPauseMin = 20 * time.Millisecond
	crashPauseMax = 50 * time.Millisecond
	// crashMaxDelta bounds the bytes one announce adds to uploaded.
	crashMaxDelta = 1 << 20
	// crashFlush is the tracker's storage.flush_interval.
	crashFlush = time.Second
	// crashSlack is added to the flush interval to bound what a crash may
	// lose; see TestCrashLosesAtMostOneFlushInterval.
	crashSlack = 500 * time.Millisecond
	// crashAnnouncing is how long the clients announce before the signal.
	crashAnnouncing = 2 * time.Second
	// crashExitTimeout bounds the wait for the tracker to exit after
	// SIGTERM (it writes what is pending first).
	crashExitTimeout = 15 * time.Second
)

// TestCrashLosesAtMostOneFlushInterval kills the tracker (SIGKILL to its
// process group) while 60 sessions of 20 users announce, then compares the
// users' stored upload with what the answered announces reported:
//
//   - never more than was reported (nothing counted twice), apart from
//     the announces that were in flight at the kill, which the tracker may
//     have counted without its answer reaching the client;
//   - the loss (reported − stored) is at most what was answered in the last
//     flush interval plus crashSlack before the kill.
//
// Then it starts the tracker again on the same database and lets the
// sessions go on: the first announce of each session after the restart
// finds no baseline and is a new session's baseline (what the clients
// reported during the gap is not credited, by design), and from then on the
// stored totals grow by exactly the reported growth, nothing twice.
func TestCrashLosesAtMostOneFlushInterval(t *testing.T) {
	rig := newCrashRig(t)
	tr := rig.start(t)

	// Phase 1: announce, then kill -9 while the clients are busy, timed
	// against the flusher's writes to aim at the worst case: just before
	// the next write takes the pending rows, when nearly a whole interval
	// is pending, or just after, while that write may still be running.
	run := rig.announce(tr, "started")
	time.Sleep(crashAnnouncing)
	// Two writes seen in a row also show the flusher's period: the
	// bound below assumes one flush interval and a quick write.
	previous := rig.waitForWrite(t)
	written := rig.waitForWrite(t)
	if period := written.Sub(previous); period > crashFlush+crashSlack {
		t.Errorf("the users' totals were written %v apart; want every flush interval (%v)", period.Round(time.Millisecond), crashFlush)
	} else {
		t.Logf("the users' totals are written every %v", period.Round(time.Millisecond))
	}
	aim := crashFlush - 200*time.Millisecond + mrand.N(250*time.Millisecond)
	time.Sleep(time.Until(written.Add(aim)))
	takeOverStop(t, tr)
	kill := run.signal(t, tr, syscall.SIGKILL)
	if tr.proc.err == nil || !strings.Contains(tr.proc.err.Error(), "killed") {
		t.Errorf("the tracker exited with %v after SIGKILL, want signal: killed", tr.proc.err)
	}
	run.checkErrors(t)
	checkNoWriteFailures(t, tr)
	rig.waitForQuietDB(t)
	stored := rig.stored(t)

	// What the loss may be. The flusher takes the pending user rows every
	// flush interval (the next one timed from the end of the previous
	// write) and writes them; a kill loses the rows taken after the last
	// take whose write committed. That take was at most one interval plus
	// the durations of the last two writes before the kill (the last
	// write may have been in progress and lost too). A row is taken no
	// earlier than the announce added it, and the announce adds it before
	// its answer is written, so every lost row belongs to an announce
	// answered after kill − interval − (two write durations). crashSlack
	// covers those writes (milliseconds on a local database) and timer
	// and scheduling delays; what was answered after kill − crashFlush −
	// crashSlack bounds the loss.
	windowStart := kill.Add(-crashFlush - crashSlack)
	var (
		totalLoss, totalWindow, totalExpected int64
		worstLoss                             int64
		worstFrac                             float64
		worstUser                             int
	)
	for u, user := range rig.users {
		expected, inFlight, window := run.credit(u, windowStart)
		got := stored[user.id]
		totalExpected += expected
		if got > expected+inFlight {
			t.Errorf("user %d: stored Uploaded %d, more than the %d reported in answered announces plus the %d of announces in flight at the kill: counted twice",
				user.id, got, expected, inFlight)
		} else if got > expected {
			t.Logf("user %d: stored %d, %d more than answered announces reported: an announce in flight at the kill was counted, its answer lost", user.id, got, got-expected)
		}
		loss := max(expected-got, 0)
		if loss > window {
			t.Errorf("user %d: lost %d bytes of %d reported; only %d were answered in the last %v before the kill",
				user.id, loss, expected, window, crashFlush+crashSlack)
		}
		totalLoss += loss
		totalWindow += window
		if loss > worstLoss {
			worstLoss, worstUser = loss, u
		}
		if window > 0 {
			worstFrac = max(worstFrac, float64(loss)/float64(window))
		}
	}
	if totalExpected-totalLoss <= 0 {
		t.Errorf("nothing was stored before the kill (%d bytes reported): the test proves nothing", totalExpected)
	}
	t.Logf("kill -9 %v after a write was seen to commit, %d announces answered: lost %d of %d bytes reported (%.1f%% of the %d answered in the last %v); the loss is what was answered in the last %v before the kill; worst user %d lost %d bytes, worst fraction of a user's window %.1f%%",
		aim, run.answered(), totalLoss, totalExpected, 100*float64(totalLoss)/float64(max(totalWindow, 1)), totalWindow,
		crashFlush+crashSlack, run.lostSpan(kill, totalLoss).Round(time.Millisecond), rig.users[worstUser].id, worstLoss, 100*worstFrac)

	// Phase 2: the same sessions go on with a restarted tracker. Its
	// Start empties xbt_files_users; the memory cache starts empty, so no
	// session has a baseline.
	tr2 := rig.start(t)
	run2 := rig.announce(tr2, "")
	time.Sleep(2 * time.Second)
	run2.stop()
	run2.checkErrors(t)
	want := map[int64]int64{}
	for u, user := range rig.users {
		expected, _, _ := run2.credit(u, time.Time{})
		want[user.id] = stored[user.id] + expected
	}
	rig.waitForStored(t, want, "after the restart, the stored totals grow by exactly the growth reported after each session's new baseline")
	checkNoWriteFailures(t, tr2)
}

// TestGracefulStopWritesEverything stops the tracker with SIGTERM while
// the clients announce: once it has exited, every user's stored upload is
// exactly what the answered announces reported.
func TestGracefulStopWritesEverything(t *testing.T) {
	rig := newCrashRig(t)
	tr := rig.start(t)
	run := rig.announce(tr, "started")
	time.Sleep(crashAnnouncing)
	// Just before the next periodic write, so that nearly a whole
	// interval is pending when the signal arrives.
	written := rig.waitForWrite(t)
	aim := crashFlush - 150*time.Millisecond + mrand.N(100*time.Millisecond)
	time.Sleep(time.Until(written.Add(aim)))
	takeOverStop(t, tr)
	run.signal(t, tr, syscall.SIGTERM)
	if tr.proc.err != nil {
		t.Errorf("the tracker exited with %v after SIGTERM, want status 0", tr.proc.err)
	}
	run.checkErrors(t)
	checkNoWriteFailures(t, tr)
	if log, _ := os.ReadFile(tr.proc.logPath); bytes.Contains(log, []byte("statistics lost at shutdown")) {
		t.Errorf("the tracker logged statistics lost at shutdown")
	}
	stored := rig.stored(t)
	var total, unanswered int64
	for u, user := range rig.users {
		expected, inFlight, _ := run.credit(u, time.Time{})
		total += expected
		unanswered += inFlight
		if got := stored[user.id]; got != expected {
			t.Errorf("user %d: stored Uploaded %d after a graceful stop, want the %d reported (difference %d)", user.id, got, expected, got-expected)
		}
	}
	t.Logf("SIGTERM %v after a write was seen to commit, %d announces answered: %d bytes reported, all stored (%d bytes in announces the stopping tracker did not answer)",
		aim, run.answered(), total, unanswered)
}

// crashRig is a fresh ops database with crashUsers users and crashTorrents
// torrents, and the tracker configuration for it.
type crashRig struct {
	db       *gazelleDB
	site     gzSite
	users    []gzUser
	torrents []*testTorrent
	// registered: the torrents are in the database (add_torrent sent).
	registered bool
	sessions   []*crashSession
}

// crashSession is one user's client on one torrent. uploaded is the total
// it reported last; it only grows.
type crashSession struct {
	user, torrent int
	peerID        string
	port          int
	uploaded      uint64
}

func newCrashRig(t *testing.T) *crashRig {
	t.Helper()
	if testing.Short() {
		t.Skip("end-to-end test skipped in -short mode")
	}
	r := &crashRig{db: newGazelleDB(t), site: gzSite{sitePassword: gzSecret(), reportPassword: gzSecret()}}
	for range crashUsers {
		r.users = append(r.users, r.db.addUser(t))
	}
	for range crashTorrents {
		tt := &testTorrent{size: 1 << 30}
		rand.Read(tt.infoHash[:])
		r.torrents = append(r.torrents, tt)
	}
	for u := range r.users {
		for tor := range r.torrents {
			i := len(r.sessions)
			r.sessions = append(r.sessions, &crashSession{
				user: u, torrent: tor,
				peerID: fmt.Sprintf("-E2E001-%012d", i),
				port:   20000 + i,
				// Earlier sessions' upload: the started announce
				// reports it, and it must not be credited.
				uploaded: mrand.Uint64N(1 << 30),
			})
		}
	}
	return r
}

// start starts a tracker on the rig's database (registering the torrents
// the first time).
func (r *crashRig) start(t *testing.T) *tracker {
	t.Helper()
	tr := startTracker(t, func(cfg map[string]any, _ int) {
		cfg["storage"] = map[string]any{
			"driver": "gazelle",
			"config": map[string]any{
				"dsn":             r.db.dsn,
				"dialect":         "ops",
				"site_password":   r.site.sitePassword,
				"report_password": r.site.reportPassword,
			},
			"flush_interval": crashFlush.String(),
		}
		tc := cfg["tracker"].(map[string]any)
		// Every client announces from 127.0.0.1.
		tc["rate_limit"] = map[string]any{"bad_requests_per_minute": 0}
	})
	r.site.addr = fmt.Sprintf("127.0.0.1:%d", tr.port)
	if !r.registered {
		for _, tt := range r.torrents {
			r.db.addTorrent(t, r.site, tt)
		}
		r.registered = true
	}
	return tr
}

// crashAnnounce is one announce as its client saw it.
type crashAnnounce struct {
	// delta is the growth of uploaded over the session's previous
	// announce; baseline marks the session's first announce to this
	// tracker, which credits nothing.
	delta    int64
	baseline bool
	answered time.Time
	ok       bool
	err      error
}

// crashRun is the clients' announces to one tracker.
type crashRun struct {
	rig    *crashRig
	client *http.Client
	// signalled is when the test sent the tracker a signal (zero: not
	// yet); only announces answered after it may fail. Set while the
	// clients run, read once they have stopped.
	signalled time.Time
	done      chan struct{}
	wg        sync.WaitGroup
	// log[i] is session i's announces, in order.
	log [][]crashAnnounce
}

// announce starts one goroutine per session announcing to tr: first with
// firstEvent ("started", or "" for a session that goes on), then every
// crashPauseMin–crashPauseMax with a random growth of uploaded, until
// stop, or until an announce fails.
func (r *crashRig) announce(tr *tracker, firstEvent string) *crashRun {
	run := &crashRun{
		rig: r,
		client: &http.Client{
			Timeout:   5 * time.Second,
			Transport: &http.Transport{MaxIdleConnsPerHost: 2 * len(r.sessions), DisableCompression: true},
		},
		done: make(chan struct{}),
		log:  make([][]crashAnnounce, len(r.sessions)),
	}
	for i, s := range r.sessions {
		base := tr.url("http", "127.0.0.1", "/"+r.users[s.user].passkey+"/announce") +
			"?info_hash=" + escapeBytes(r.torrents[s.torrent].infoHash[:]) +
			"&peer_id=" + escapeBytes([]byte(s.peerID)) +
			fmt.Sprintf("&port=%d&downloaded=0&left=0&compact=1&numwant=0", s.port)
		run.wg.Add(1)
		go func() {
			defer run.wg.Done()
			for n := 0; ; n++ {
				select {
				case <-run.done:
					return
				default:
				}
				a := crashAnnounce{baseline: n == 0}
				u := base
				if n == 0 && firstEvent != "" {
					u += "&event=" + firstEvent
				}
				if n > 0 || firstEvent == "" {
					a.delta = 1 + mrand.Int64N(crashMaxDelta)
				}
				s.uploaded += uint64(a.delta)
				a.err = run.get(fmt.Sprintf("%s&uploaded=%d", u, s.uploaded))
				a.answered = time.Now()
				a.ok = a.err == nil
				run.log[i] = append(run.log[i], a)
				if !a.ok {
					return
				}
				select {
				case <-run.done:
					return
				case <-time.After(crashPauseMin + mrand.N(crashPauseMax-crashPauseMin)):
				}
			}
		}()
	}
	return run
}

// get sends one announce and checks that it succeeded.
func (run *crashRun) get(u string) error {
	resp, err := run.client.Get(u)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, 1<<16))
	if err != nil {
		return err
	}
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("%s: %q", resp.Status, body)
	}
	v, err := bdecode(body)
	if err != nil {
		return fmt.Errorf("announce response %q: %w", body, err)
	}
	d, _ := v.(map[string]any)
	if reason, ok := d["failure reason"]; ok {
		return fmt.Errorf("announce refused: %v", reason)
	}
	if _, ok := d["interval"]; !ok {
		return fmt.Errorf("announce response %q has no interval", body)
	}
	return nil
}

// stop stops the clients and waits for them.
func (run *crashRun) stop() {
	close(run.done)
	run.wg.Wait()
	run.client.CloseIdleConnections()
}

// signal sends sig to the tracker's process group while the clients
// announce, waits for the tracker to exit, then stops the clients. It
// returns the time the signal was sent.
func (run *crashRun) signal(t *testing.T, tr *tracker, sig syscall.Signal) time.Time {
	t.Helper()
	at := time.Now()
	run.signalled = at
	if err := syscall.Kill(-tr.proc.cmd.Process.Pid, sig); err != nil {
		t.Fatalf("kill %v: %v", sig, err)
	}
	select {
	case <-tr.proc.done:
	case <-time.After(crashExitTimeout):
		run.stop()
		t.Fatalf("the tracker did not exit within %v of %v", crashExitTimeout, sig)
	}
	t.Logf("the tracker exited %v after %v (%v)", time.Since(at).Round(time.Millisecond), map[syscall.Signal]string{syscall.SIGKILL: "SIGKILL", syscall.SIGTERM: "SIGTERM"}[sig], sig)
	run.stop()
	return at
}

// checkErrors fails the test for announces that failed before the signal:
// only the tracker's going away may make one fail. A session stops at its
// first failure, so only its last announce can have failed.
func (run *crashRun) checkErrors(t *testing.T) {
	t.Helper()
	for i, l := range run.log {
		if len(l) == 0 {
			t.Errorf("session %d sent no announce", i)
			continue
		}
		if last := l[len(l)-1]; !last.ok && (run.signalled.IsZero() || last.answered.Before(run.signalled)) {
			t.Errorf("session %d: announce %d failed before the tracker was stopped: %v", i, len(l), last.err)
		}
	}
}

// credit sums session announces of user u: expected is what the answered
// announces reported beyond their session's baseline (what the tracker
// must credit), inFlight what unanswered ones reported (the tracker may
// have counted them before it died), window the part of expected answered
// after from.
func (run *crashRun) credit(u int, from time.Time) (expected, inFlight, window int64) {
	for i, s := range run.rig.sessions {
		if s.user != u {
			continue
		}
		for _, a := range run.log[i] {
			switch {
			case a.baseline:
			case !a.ok:
				inFlight += a.delta
			default:
				expected += a.delta
				if a.answered.After(from) {
					window += a.delta
				}
			}
		}
	}
	return expected, inFlight, window
}

// answered counts the answered announces.
func (run *crashRun) answered() int {
	n := 0
	for _, l := range run.log {
		for _, a := range l {
			if a.ok {
				n++
			}
		}
	}
	return n
}

// lostSpan is how far back before at the announces go whose credit adds up
// to loss: the loss expressed as the last stretch of traffic before the
// kill.
func (run *crashRun) lostSpan(at time.Time, loss int64) time.Duration {
	var all []crashAnnounce
	for _, l := range run.log {
		for _, a := range l {
			if a.ok && !a.baseline {
				all = append(all, a)
			}
		}
	}
	slices.SortFunc(all, func(a, b crashAnnounce) int { return b.answered.Compare(a.answered) })
	var sum int64
	for _, a := range all {
		if sum >= loss {
			return at.Sub(a.answered)
		}
		sum += a.delta
	}
	if len(all) > 0 {
		return at.Sub(all[len(all)-1].answered)
	}
	return 0
}

// takeOverStop replaces the harness's checks at cleanup, which treat an
// exit before the cleanup as a crash, by the one that still applies to a
// tracker the test stops itself: no data race reported in its log.
func takeOverStop(t *testing.T, tr *tracker) {
	tr.proc.beforeStop = nil
	tr.proc.afterStop = func() {
		log, _ := os.ReadFile(tr.proc.logPath)
		if i := bytes.Index(log, []byte("WARNING: DATA RACE")); i >= 0 {
			report := log[i:]
			if len(report) > 8000 {
				report = report[:8000]
			}
			t.Errorf("the race detector reported a data race in the tracker:\n%s", report)
		}
	}
}

// checkNoWriteFailures fails the test if the tracker logged a failed
// write: the database was up all along, and the bound on a crash's loss
// holds only while writes succeed.
func checkNoWriteFailures(t *testing.T, tr *tracker) {
	t.Helper()
	log, _ := os.ReadFile(tr.proc.logPath)
	for l := range strings.Lines(string(log)) {
		if strings.Contains(l, "storage write failed") || strings.Contains(l, "storage refused a row") {
			t.Errorf("the tracker logged a failed write with the database up: %s", strings.TrimSpace(l))
		}
	}
}

// waitForQuietDB waits until no other connection runs a statement on the
// rig's database: a statement the killed tracker had sent may still be
// running, and commit, after the process is gone.
func (r *crashRig) waitForQuietDB(t *testing.T) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		var n int
		err := r.db.db.QueryRow("SELECT COUNT(*) FROM information_schema.PROCESSLIST WHERE DB = DATABASE() AND ID <> CONNECTION_ID() AND COMMAND NOT IN ('Sleep', 'Daemon')").Scan(&n)
		if err != nil {
			t.Fatalf("reading the process list: %v", err)
		}
		if n == 0 {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%d statements still running on the database 10s after the kill", n)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// waitForWrite polls the users' total upload until a write of the flusher
// changes it, and returns when that was seen (within a few milliseconds of
// its commit).
func (r *crashRig) waitForWrite(t *testing.T) time.Time {
	t.Helper()
	sum := func() int64 {
		var n int64
		if err := r.db.db.QueryRow("SELECT COALESCE(SUM(Uploaded), 0) FROM users_leech_stats").Scan(&n); err != nil {
			t.Fatal(err)
		}
		return n
	}
	first, deadline := sum(), time.Now().Add(3*crashFlush)
	for {
		time.Sleep(2 * time.Millisecond)
		if sum() != first {
			return time.Now()
		}
		if time.Now().After(deadline) {
			t.Fatalf("no write of the users' totals seen for %v", 3*crashFlush)
		}
	}
}

// stored returns users_leech_stats.Uploaded by user id.
func (r *crashRig) stored(t *testing.T) map[int64]int64 {
	t.Helper()
	rows, err := r.db.db.Query("SELECT UserID, Uploaded FROM users_leech_stats")
	if err != nil {
		t.Fatal(err)
	}
	defer rows.Close()
	out := map[int64]int64{}
	for rows.Next() {
		var id, up int64
		if err := rows.Scan(&id, &up); err != nil {
			t.Fatal(err)
		}
		out[id] = up
	}
	if err := rows.Err(); err != nil {
		t.Fatal(err)
	}
	return out
}

// waitForStored polls until every user's stored upload is exactly want,
// then checks that it stays so for more than a flush interval (a late
// write would be a transfer counted twice).
func (r *crashRig) waitForStored(t *testing.T, want map[int64]int64, what string) {
	t.Helper()
	diff := func() []string {
		got := r.stored(t)
		var p []string
		for _, u := range r.users {
			if got[u.id] != want[u.id] {
				p = append(p, fmt.Sprintf("user %d: stored %d, want %d (difference %d)", u.id, got[u.id], want[u.id], got[u.id]-want[u.id]))
			}
		}
		return p
	}
	deadline := time.Now().Add(5 * crashFlush)
	for {
		p := diff()
		if len(p) == 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s: not so after %v:\n  %s", what, 5*crashFlush, strings.Join(p, "\n  "))
		}
		time.Sleep(100 * time.Millisecond)
	}
	time.Sleep(crashFlush + crashSlack)
	if p := diff(); len(p) > 0 {
		t.Fatalf("%s: so at first, then changed:\n  %s", what, strings.Join(p, "\n  "))
	}
	t.Logf("%s: yes, for all %d users", what, len(r.users))
}
