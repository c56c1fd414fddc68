//go:build linux

package gazelle_test

// Fault tests: a database that dies under load (a MariaDB server the test
// owns, killed with SIGKILL and restarted, since the shared server must stay
// up for the other packages), a batch holding rows the database no longer
// has a parent for, and values wider than their columns.

import (
	"context"
	"fmt"
	"maps"
	mrand "math/rand/v2"
	"net"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/go-sql-driver/mysql"

	"github.com/chihaya/chihaya/bittorrent"
	"github.com/chihaya/chihaya/storage"
	"github.com/chihaya/chihaya/storage/gazelle"
)

// ownedServer is a MariaDB server the test installs, starts, kills and
// restarts on its own data directory and port.
type ownedServer struct {
	t       testing.TB
	bin     string
	dir     string
	port    int
	user    string
	cmd     *exec.Cmd
	exited  chan struct{}
	waitErr error
}

// findBinary looks for the first of names on PATH and in the sbin
// directories PATH often lacks.
func findBinary(names ...string) string {
	for _, n := range names {
		if p, err := exec.LookPath(n); err == nil {
			return p
		}
		for _, dir := range []string{"/usr/sbin", "/usr/local/sbin", "/usr/libexec", "/usr/local/mysql/bin"} {
			p := filepath.Join(dir, n)
			if fi, err := os.Stat(p); err == nil && !fi.IsDir() && fi.Mode()&0o111 != 0 {
				return p
			}
		}
	}
	return ""
}

// startOwnedServer installs a fresh data directory and starts a server on
// a free loopback port, stopped when the test ends. Without the MariaDB
// binaries it fails in CI and skips elsewhere.
func startOwnedServer(t *testing.T) *ownedServer {
	t.Helper()
	install := findBinary("mariadb-install-db", "mysql_install_db")
	server := findBinary("mariadbd", "mysqld")
	if install == "" || server == "" {
		if os.Getenv("CI") != "" {
			t.Fatal("mariadb-install-db and mariadbd are needed for the fault tests (CI is set, so this fails); scripts/start-services installs them")
		}
		t.Skip("mariadb-install-db or mariadbd not found; install mariadb-server (scripts/start-services) to run the fault tests")
	}
	u, err := user.Current()
	if err != nil {
		t.Fatal(err)
	}
	// A short path: the server's socket path must fit sun_path.
	dir, err := os.MkdirTemp("", "chihaya-mdb-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	s := &ownedServer{t: t, bin: server, dir: dir, port: freePort(t), user: u.Username}

	out, err := exec.Command(install, "--no-defaults", "--auth-root-authentication-method=normal",
		"--datadir="+filepath.Join(dir, "data"), "--user="+s.user, "--skip-test-db",
		"--innodb-log-file-size=8M", "--innodb-buffer-pool-size=16M").CombinedOutput()
	if err != nil {
		t.Fatalf("%s: %v\n%s", install, err, out)
	}
	s.start()
	t.Cleanup(s.stop)
	return s
}

// freePort returns a free loopback port below the ephemeral range: the
// server is restarted on its port, and while it is down the clients'
// connection attempts (and anything else on the host) take ephemeral ports,
// one of which could otherwise be the server's (a TCP self-connect even
// holds it), making the restart fail with "Address already in use".
func freePort(t testing.TB) int {
	t.Helper()
	low := 32768
	if b, err := os.ReadFile("/proc/sys/net/ipv4/ip_local_port_range"); err == nil {
		if f := strings.Fields(string(b)); len(f) == 2 {
			if n, err := strconv.Atoi(f[0]); err == nil {
				low = n
			}
		}
	}
	for range 100 {
		port := 10000 + mrand.IntN(max(low-10000, 1000))
		ln, err := net.Listen("tcp", fmt.Sprintf("127.0.0.1:%d", port))
		if err == nil {
			ln.Close()
			return port
		}
	}
	t.Fatal("no free port below the ephemeral range")
	return 0
}

// start starts the server and waits until it accepts connections; it
// returns how long that took.
func (s *ownedServer) start() time.Duration {
	s.t.Helper()
	begin := time.Now()
	cmd := exec.Command(s.bin, "--no-defaults",
		"--datadir="+filepath.Join(s.dir, "data"),
		"--socket="+filepath.Join(s.dir, "sock"),
		"--pid-file="+filepath.Join(s.dir, "pid"),
		"--log-error="+filepath.Join(s.dir, "error.log"),
		fmt.Sprintf("--port=%d", s.port), "--bind-address=127.0.0.1",
		"--user="+s.user, "--skip-log-bin",
		"--innodb-buffer-pool-size=16M", "--innodb-log-file-size=8M")
	// The server dies with the test binary, even when a timeout panic
	// skips the cleanups.
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		s.t.Fatalf("start %s: %v", s.bin, err)
	}
	s.cmd, s.exited = cmd, make(chan struct{})
	go func(exited chan struct{}) {
		s.waitErr = cmd.Wait()
		close(exited)
	}(s.exited)
	deadline := time.Now().Add(60 * time.Second)
	for {
		if ping(s.base(), time.Second) == nil {
			return time.Since(begin)
		}
		select {
		case <-s.exited:
			log, _ := os.ReadFile(filepath.Join(s.dir, "error.log"))
			s.t.Fatalf("mariadbd exited (%v):\n%s", s.waitErr, log)
		case <-time.After(50 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			s.t.Fatal("mariadbd did not accept connections within 60s")
		}
	}
}

// kill stops the server the hard way: SIGKILL, no shutdown.
func (s *ownedServer) kill() {
	s.t.Helper()
	if err := s.cmd.Process.Kill(); err != nil {
		s.t.Fatalf("kill mariadbd: %v", err)
	}
	<-s.exited
}

// stop shuts the server down (SIGTERM, then SIGKILL after 20 s).
func (s *ownedServer) stop() {
	select {
	case <-s.exited:
		return
	default:
	}
	_ = s.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-s.exited:
	case <-time.After(20 * time.Second):
		_ = s.cmd.Process.Kill()
		<-s.exited
	}
}

func (s *ownedServer) base() *mysql.Config {
	cfg := mysql.NewConfig()
	cfg.User = "root"
	cfg.Net = "tcp"
	cfg.Addr = fmt.Sprintf("127.0.0.1:%d", s.port)
	return cfg
}

// writeLog wraps the Writer the flusher gets and records the writes that
// failed after reaching the server (any error but a refused connection,
// which the server never saw): the kill may have cut off the reply to a
// write the server committed, which the flusher then writes again.
type writeLog struct {
	storage.Writer
	mu sync.Mutex
	// users are the in-doubt users batches; snatchRows and
	// torrentSnatches count the snatch rows and the torrent snatch
	// increments in in-doubt batches.
	users                       [][]storage.UserDelta
	snatchRows, torrentSnatches int64
}

func inDoubt(err error) bool {
	return err != nil && !strings.Contains(err.Error(), "connection refused")
}

func (w *writeLog) WriteUsers(ctx context.Context, rows []storage.UserDelta) error {
	err := w.Writer.WriteUsers(ctx, rows)
	if inDoubt(err) {
		w.mu.Lock()
		w.users = append(w.users, slices.Clone(rows))
		w.mu.Unlock()
	}
	return err
}

func (w *writeLog) WriteSnatches(ctx context.Context, rows []storage.Snatch) error {
	err := w.Writer.WriteSnatches(ctx, rows)
	if inDoubt(err) {
		w.mu.Lock()
		w.snatchRows += int64(len(rows))
		w.mu.Unlock()
	}
	return err
}

func (w *writeLog) WriteTorrents(ctx context.Context, rows []storage.TorrentStats) error {
	err := w.Writer.WriteTorrents(ctx, rows)
	if inDoubt(err) {
		w.mu.Lock()
		for _, r := range rows {
			w.torrentSnatches += int64(r.Snatches)
		}
		w.mu.Unlock()
	}
	return err
}

func pendingRows(p storage.Pending) int {
	return p.Users + p.Torrents + p.Peers + p.Snatches + p.Tokens + p.ExpiredTokens
}

// The database is killed (SIGKILL) under load and restarted on the same
// data directory and port: announces go on without an error, the flusher
// keeps its rows, and once the server is back every credited byte, snatch
// and counter is in the database exactly once. CHIHAYA_FAULT_CYCLES repeats
// the kill (shorter outages after the first), to look for the
// lost-acknowledgement double count.
func TestFaultOutage(t *testing.T) {
	srv := startOwnedServer(t)
	cycles := 1
	if n, err := strconv.Atoi(os.Getenv("CHIHAYA_FAULT_CYCLES")); err == nil && n > 0 {
		cycles = n
	}
	for _, dialect := range []string{gazelle.DialectOPS, gazelle.DialectWhat} {
		t.Run(dialect, func(t *testing.T) { outage(t, srv, dialect, cycles) })
	}
}

func outage(t *testing.T, srv *ownedServer, dialect string, cycles int) {
	const (
		clients  = 6
		snatcher = 120
	)
	users := []uint32{snatcher}
	for i := range clients {
		users = append(users, uint32(100+i))
	}
	db := createDB(t, srv.base(), dialect, loadUsers(dialect, users...))
	wl := &writeLog{}
	r := newRig(t, db, rigOptions{
		realClock: true, start: true, timeout: "2s",
		flusher: storage.FlusherConfig{Interval: 100 * time.Millisecond, Timeout: 2 * time.Second, MaxBackoff: 400 * time.Millisecond},
		wrap:    func(w storage.Writer) storage.Writer { wl.Writer = w; return wl },
	})

	var (
		stop      = make(chan struct{})
		wg        sync.WaitGroup
		announces atomic.Int64
		failures  atomic.Int64
		firstErr  atomic.Value
		totals    = make([][2]uint64, clients) // per client: uploaded, downloaded reported last
		snatched  atomic.Int64
	)
	fail := func(err error) {
		failures.Add(1)
		firstErr.CompareAndSwap(nil, err)
	}
	torrentOf := func(i int) byte {
		if i%2 == 0 {
			return normalT
		}
		return extraT
	}
	for i := range clients {
		wg.Add(1)
		go func() {
			defer wg.Done()
			a := ann{user: uint32(100 + i), t: torrentOf(i), peer: fmt.Sprintf("-TR4050-load%02d", i), left: 1 << 40, event: bittorrent.Started}
			var up, dn uint64
			for {
				if _, err := r.announce(a); err != nil {
					fail(err)
				}
				announces.Add(1)
				select {
				case <-stop:
					a.event = bittorrent.Stopped
					if _, err := r.announce(a); err != nil {
						fail(err)
					}
					totals[i] = [2]uint64{up, dn}
					return
				case <-time.After(time.Millisecond):
				}
				// Each announce moves a known number of bytes.
				up += uint64(1000 + i)
				dn += uint64(500 + i)
				a.up, a.down, a.event = up, dn, bittorrent.None
			}
		}()
	}
	// One client completes a download again and again: snatches are the
	// rows the flusher never merges.
	wg.Add(1)
	go func() {
		defer wg.Done()
		for n := 0; ; n++ {
			select {
			case <-stop:
				return
			case <-time.After(2 * time.Millisecond):
			}
			peer := fmt.Sprintf("-qB4630-sn%06d", n)
			for _, a := range []ann{
				{user: snatcher, t: extraT, peer: peer, left: 100, event: bittorrent.Started},
				{user: snatcher, t: extraT, peer: peer, down: 100, left: 0, event: bittorrent.Completed},
				{user: snatcher, t: extraT, peer: peer, down: 100, left: 0, event: bittorrent.Stopped},
			} {
				if _, err := r.announce(a); err != nil {
					fail(err)
				}
				announces.Add(1)
			}
			snatched.Add(1)
		}
	}()
	stopLoad := func() {
		select {
		case <-stop:
		default:
			close(stop)
			wg.Wait()
		}
	}
	t.Cleanup(stopLoad)

	usersWritten := func() uint64 {
		for _, q := range r.flusher.Stats() {
			if q.Name == "users" {
				return q.Written
			}
		}
		return 0
	}
	var (
		maxPending, maxSnatches int
		worstStart, worstRecov  time.Duration
		during                  int64
		pendingAtRestart        storage.Pending
	)
	watch := func(d time.Duration, every time.Duration) {
		for end := time.Now().Add(d); time.Now().Before(end); {
			p := r.flusher.Pending()
			maxPending = max(maxPending, pendingRows(p))
			maxSnatches = max(maxSnatches, p.Snatches)
			time.Sleep(every)
		}
	}
	for c := range cycles {
		down := 3 * time.Second
		if c > 0 {
			down = 300 * time.Millisecond
		}
		// Kill at a varying point of the flush interval.
		time.Sleep(300*time.Millisecond + time.Duration(c*7%100)*time.Millisecond)
		for wait := time.Now(); usersWritten() == 0; time.Sleep(10 * time.Millisecond) {
			if time.Since(wait) > 10*time.Second {
				t.Fatal("no users row written before the outage")
			}
		}
		srv.kill()
		before := announces.Load()
		watch(down, 10*time.Millisecond)
		if c == 0 {
			during = announces.Load() - before
			pendingAtRestart = r.flusher.Pending()
			if during == 0 {
				t.Fatal("no announce answered while the database was down")
			}
			// A kind's rows are not pending while its write is in
			// flight (waiting out the dead connection), so no one
			// kind is sure to show; together they must.
			if pendingAtRestart.Users+pendingAtRestart.Snatches+pendingAtRestart.Peers == 0 || maxSnatches < 10 {
				t.Errorf("pending rows did not pile up during the outage: %+v (max snatches %d)", pendingAtRestart, maxSnatches)
			}
		}

		// Back up: on the same data directory and port.
		writtenAtRestart := usersWritten()
		worstStart = max(worstStart, srv.start())
		restarted := time.Now()
		for usersWritten() == writtenAtRestart {
			if time.Since(restarted) > 30*time.Second {
				t.Fatalf("no users row written 30s after the restart; pending %+v, stats %+v", r.flusher.Pending(), r.flusher.Stats())
			}
			watch(5*time.Millisecond, 5*time.Millisecond)
		}
		worstRecov = max(worstRecov, time.Since(restarted))
	}
	time.Sleep(300 * time.Millisecond)
	stopLoad()
	closeStart := time.Now()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := r.close(ctx); err != nil {
		t.Fatalf("flusher.Close: %v", err)
	}
	closeTook := time.Since(closeStart)
	if n := failures.Load(); n != 0 {
		t.Fatalf("%d announces failed, the first: %v", n, firstErr.Load())
	}
	if p := r.flusher.Pending(); p != (storage.Pending{}) {
		t.Fatalf("pending after Close: %+v", p)
	}

	// Every credited byte, once.
	want := map[uint32][2]int64{snatcher: {0, 100 * snatched.Load()}}
	for i := range clients {
		want[uint32(100+i)] = [2]int64{int64(totals[i][0]), int64(totals[i][1])}
	}
	over := map[uint32][2]int64{}
	for id, w := range want {
		up, dn := db.userTotals(t, id)
		if up < w[0] || dn < w[1] {
			t.Errorf("user %d: Uploaded/Downloaded %d/%d, want %d/%d: transfer LOST", id, up, dn, w[0], w[1])
		}
		if up != w[0] || dn != w[1] {
			over[id] = [2]int64{up - w[0], dn - w[1]}
		}
	}
	wl.mu.Lock()
	doubtUsers, doubtSnatches, doubtTorrentSnatches := wl.users, wl.snatchRows, wl.torrentSnatches
	wl.mu.Unlock()
	var doubles []string
	if len(over) > 0 {
		// A write the server committed but whose reply the kill cut
		// off is retried: the flusher's at-least-once caveat. Accept
		// it only if the excess is exactly what some in-doubt writes
		// carried.
		if k := explainExcess(over, doubtUsers); k >= 0 {
			doubles = append(doubles, fmt.Sprintf("users: %d batch(es) applied twice, excess %v", k, over))
		} else {
			t.Errorf("users' totals off by %v, not explained by the %d in-doubt batches %+v", over, len(doubtUsers), doubtUsers)
		}
	}
	n := snatched.Load()
	if got := db.count(t, "SELECT COUNT(*) FROM xbt_snatched WHERE fid = 6 AND uid = ?", snatcher); got < n || got > n+doubtSnatches {
		t.Errorf("xbt_snatched holds %d completions, want %d (+ at most %d in doubt)", got, n, doubtSnatches)
	} else if got > n {
		doubles = append(doubles, fmt.Sprintf("xbt_snatched: %d rows written twice", got-n))
	}
	if got := db.torrent(t, extraT).Snatched; got < n || got > n+doubtTorrentSnatches {
		t.Errorf("torrent 6 Snatched %d, want %d (+ at most %d in doubt)", got, n, doubtTorrentSnatches)
	} else if got > n {
		doubles = append(doubles, fmt.Sprintf("torrent 6 Snatched: %d counted twice", got-n))
	}
	for _, id := range []uint32{normalT, extraT} {
		if c := db.torrent(t, id); c.Seeders != 0 || c.Leechers != 0 {
			t.Errorf("torrent %d: %+v after every peer stopped, want 0 seeders 0 leechers", id, c)
		}
	}
	for i := range clients {
		row, ok := db.peer(t, uint32(100+i), uint32(torrentOf(i)), padPeer(fmt.Sprintf("-TR4050-load%02d", i)))
		if !ok || row.Active != 0 || row.Uploaded != int64(totals[i][0]) || row.Downloaded != int64(totals[i][1]) {
			t.Errorf("client %d's peer row %+v (found %v), want inactive with %v", i, row, ok, totals[i])
		}
	}
	var retries, dropped uint64
	for _, q := range r.flusher.Stats() {
		retries += q.Retries
		dropped += q.Dropped
	}
	if dropped != 0 {
		t.Errorf("the flusher dropped %d rows", dropped)
	}
	t.Logf("%s: %d kill(s); %d announces (%d during the first, 3s outage; none failed), %d snatches; worst server restart %v, worst first users write after it %v, Close %v; max pending rows %d (snatches %d), pending at the first restart %+v; %d failed writes put back; in doubt: %d users batches, %d snatch rows, %d torrent snatches",
		dialect, cycles, announces.Load(), during, n, worstStart.Round(time.Millisecond), worstRecov.Round(time.Millisecond), closeTook.Round(time.Millisecond),
		maxPending, maxSnatches, pendingAtRestart, retries, len(doubtUsers), doubtSnatches, doubtTorrentSnatches)
	for _, d := range doubles {
		t.Logf("DOUBLE COUNT (the flusher's at-least-once caveat: a write committed, its reply lost to the kill, retried): %s", d)
	}
}

// explainExcess finds a subset of the in-doubt users batches whose rows sum
// to the excess exactly, and returns its size, or -1.
func explainExcess(over map[uint32][2]int64, doubt [][]storage.UserDelta) int {
	if len(doubt) > 16 {
		return -1
	}
	for mask := 1; mask < 1<<len(doubt); mask++ {
		sum := map[uint32][2]int64{}
		size := 0
		for i, rows := range doubt {
			if mask&(1<<i) == 0 {
				continue
			}
			size++
			for _, r := range rows {
				s := sum[r.UserID]
				sum[r.UserID] = [2]int64{s[0] + r.Uploaded, s[1] + r.Downloaded}
			}
		}
		if maps.Equal(sum, over) {
			return size
		}
	}
	return -1
}

// A batch that holds rows for a torrent and a user the site deleted (while
// the tracker still knows them) and a row the database cannot hold: the
// good rows are written, nothing stays pending, nothing fails again.
func TestFaultDeletedRows(t *testing.T) {
	// dave's total is so large that any credit overflows BIGINT.
	const huge = "UPDATE %s SET Uploaded = 9223372036854775000 WHERE %s = 4;"
	eachDialect(t, "", func(t *testing.T, db *extDB) {
		table, idCol := "users_leech_stats", "UserID"
		if db.dialect == gazelle.DialectWhat {
			table, idCol = "users_main", "ID"
		}
		db.exec(t, fmt.Sprintf(huge, table, idCol))
		r := newRig(t, db, rigOptions{})
		r.ok(ann{user: alice, t: extraT, peer: "-TR4050-alice", left: 0, event: bittorrent.Started})
		r.ok(ann{user: gina, t: extraT, peer: "-qB4630-gina", left: 10_000, event: bittorrent.Started})
		r.ok(ann{user: alice, t: normalT, peer: "-TR4050-alice", left: 0, event: bittorrent.Started})
		r.ok(ann{user: gina, t: normalT, peer: "-qB4630-gina", left: 10_000, event: bittorrent.Started})
		r.ok(ann{user: erin, t: normalT, peer: "-qB4630-erin", left: 10_000, event: bittorrent.Started})
		r.ok(ann{user: dave, t: normalT, peer: "-qB4630-dave", left: 10_000, event: bittorrent.Started})
		r.flush()

		// The site deletes torrent 6 and user erin without telling the
		// tracker.
		if db.dialect == gazelle.DialectOPS {
			db.exec(t, "DELETE FROM torrents_leech_stats WHERE TorrentID = 6")
			db.exec(t, "DELETE FROM users_leech_stats WHERE UserID = 5")
		}
		db.exec(t, "DELETE FROM torrents WHERE ID = 6")
		db.exec(t, "DELETE FROM users_main WHERE ID = 5")

		r.clock.add(time.Minute)
		r.ok(ann{user: alice, t: extraT, peer: "-TR4050-alice", up: 10_000, left: 0})
		r.ok(ann{user: gina, t: extraT, peer: "-qB4630-gina", up: 7, down: 10_000, left: 0, event: bittorrent.Completed})
		r.ok(ann{user: alice, t: normalT, peer: "-TR4050-alice", up: 4000, left: 0})
		r.ok(ann{user: gina, t: normalT, peer: "-qB4630-gina", up: 3, down: 2000, left: 8000})
		r.ok(ann{user: erin, t: normalT, peer: "-qB4630-erin", up: 1000, down: 1000, left: 9000})
		r.ok(ann{user: dave, t: normalT, peer: "-qB4630-dave", up: 1_000_000, down: 1000, left: 9000})
		pendingBefore := pendingRows(r.flusher.Pending())
		start := time.Now()
		if err := r.flusher.Flush(context.Background()); err != nil {
			t.Fatalf("flush: %v", err)
		}
		took := time.Since(start)
		if p := r.flusher.Pending(); p != (storage.Pending{}) {
			t.Fatalf("rows still pending: %+v", p)
		}
		if err := r.flusher.Flush(context.Background()); err != nil {
			t.Fatalf("second flush: %v", err)
		}

		// The good rows are written.
		wantUser(t, db, alice, 1000+14_000, 500)
		wantUser(t, db, gina, 10, 12_000)
		wantTorrent(t, db, normalT, torrentCounters{1, 3, 10, 4000 + 3 - 2000 + 0 + 1_000_000 - 1000, unix(time.Minute)})
		wantPeer(t, db, gina, normalT, "-qB4630-gina", peerRow{Active: 1, Uploaded: 3, Downloaded: 2000, Remaining: 8000, DownSpeed: 33, TimeSpent: 60, Announced: 2, Mtime: unix(time.Minute), IP: "10.0.0.7", UserAgent: "Transmission/4.0.5"})
		// No junk rows for the deleted torrent and user; their peer and
		// snatch rows are kept, as Ocelot keeps them (no foreign keys
		// there; Gazelle purges them).
		if n := db.count(t, "SELECT (SELECT COUNT(*) FROM torrents WHERE ID = 6) + (SELECT COUNT(*) FROM users_main WHERE ID = 5)"); n != 0 {
			t.Errorf("%d rows recreated for the deleted torrent and user", n)
		}
		if db.dialect == gazelle.DialectOPS {
			if n := db.count(t, "SELECT (SELECT COUNT(*) FROM torrents_leech_stats WHERE TorrentID = 6) + (SELECT COUNT(*) FROM users_leech_stats WHERE UserID = 5)"); n != 0 {
				t.Errorf("%d leech-stats rows recreated for the deleted torrent and user", n)
			}
		}
		wantSnatches(t, db, extraT, snatch{UID: gina, FID: extraT, Tstamp: unix(time.Minute), IP: "10.0.0.7"})
		// dave's row cannot be written (BIGINT overflow): found by
		// splitting the batch and dropped, the others written.
		if up, dn := db.userTotals(t, dave); up != 9223372036854775000 || dn != 0 {
			t.Errorf("dave: %d/%d, want his stored totals untouched", up, dn)
		}
		var dropped uint64
		for _, q := range r.flusher.Stats() {
			if q.LastError != "" {
				t.Errorf("%s queue: last error %q", q.Name, q.LastError)
			}
			if q.Name == "users" {
				dropped = q.Dropped
			} else if q.Dropped != 0 {
				t.Errorf("%s queue dropped %d rows", q.Name, q.Dropped)
			}
		}
		if dropped != 1 {
			t.Errorf("users queue dropped %d rows, want dave's 1", dropped)
		}

		// The site tells the tracker at last: announces are refused,
		// nothing more is pending.
		r.update("delete_torrent&info_hash=" + encodedHash(extraT) + "&id=6&reason=0")
		r.refused(ann{user: alice, t: extraT, peer: "-TR4050-alice", up: 20_000, left: 0}, "Unregistered torrent: Dupe")
		r.update("remove_user&passkey=" + passkeys[erin])
		r.refused(ann{user: erin, t: normalT, peer: "-qB4630-erin", up: 2000, left: 9000}, "Passkey not found")
		r.flush()
		t.Logf("%s: %d pending rows written in %v; users queue dropped %d", db.dialect, pendingBefore, took.Round(time.Millisecond), dropped)
	})
}

// A heavy row whose User-Agent is longer than xbt_files_users.useragent (and
// not ASCII) is cut to the column and written, with the rest of its batch.
func TestFaultLongUserAgent(t *testing.T) {
	eachDialect(t, "", func(t *testing.T, db *extDB) {
		r := newRig(t, db, rigOptions{})
		long := "Mozilla/5.0 (X11; Linux x86_64) libtorrent/2.0.9 \xe2\x9c\x93 " + strings.Repeat("x", 300)
		r.ok(ann{user: gina, t: normalT, peer: "-qB4630-gina", left: 1000, event: bittorrent.Started, ua: long})
		r.ok(ann{user: alice, t: normalT, peer: "-TR4050-alice", left: 0, event: bittorrent.Started})
		r.ok(ann{user: dave, t: normalT, peer: "-TR4050-dave", left: 5, event: bittorrent.Started, ua: strings.Repeat("\xff", 80)})
		r.flush()
		wantPeer(t, db, gina, normalT, "-qB4630-gina", peerRow{Active: 1, Remaining: 1000, Announced: 1, Mtime: unix(0), IP: "10.0.0.7",
			UserAgent: "Mozilla/5.0 (X11; Linux x86_64) libtorrent/2.0.9 ??"})
		wantPeer(t, db, alice, normalT, "-TR4050-alice", peerRow{Active: 1, Announced: 1, Mtime: unix(0), IP: "10.0.0.1", UserAgent: "Transmission/4.0.5"})
		wantPeer(t, db, dave, normalT, "-TR4050-dave", peerRow{Active: 1, Remaining: 5, Announced: 1, Mtime: unix(0), UserAgent: strings.Repeat("?", 51)})
		for _, q := range r.flusher.Stats() {
			if q.Dropped != 0 || q.Retries != 0 {
				t.Errorf("%s queue: %+v", q.Name, q)
			}
		}
	})
}
