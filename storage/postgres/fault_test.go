package postgres_test

import (
	"bytes"
	"context"
	"fmt"
	"log/slog"
	"net"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/chihaya/chihaya/bittorrent"
	"github.com/chihaya/chihaya/storage"
	"github.com/chihaya/chihaya/storage/postgres"
)

// pgServer is a PostgreSQL server of the test's own, which it may stop
// and start at will; the shared one on 5432 serves other tests at the same
// time and must never be restarted.
type pgServer struct {
	t       *testing.T
	bin     string
	dir     string // owned by the server's user; data/ and the socket
	port    int
	cred    *syscall.Credential // nil when not root
	logPath string
	cmd     *exec.Cmd
	exited  chan struct{}
}

// newServer initialises a cluster in a temporary directory (initdb) and
// starts it on a free port. Without the server binaries the test is
// skipped, or fails in CI.
func newServer(t *testing.T) *pgServer {
	t.Helper()
	bins, _ := filepath.Glob("/usr/lib/postgresql/*/bin/postgres")
	if len(bins) == 0 {
		msg := "no PostgreSQL server binaries under /usr/lib/postgresql/*/bin; run scripts/start-services"
		if os.Getenv("CI") != "" {
			t.Fatal(msg)
		}
		t.Skip(msg)
	}
	slices.SortFunc(bins, func(a, b string) int { return versionOf(a) - versionOf(b) })
	s := &pgServer{t: t, bin: filepath.Dir(bins[len(bins)-1])}
	dir, err := os.MkdirTemp("", "chihaya-pg-fault-")
	if err != nil {
		t.Fatal(err)
	}
	s.dir, s.logPath = dir, filepath.Join(dir, "server.log")
	t.Cleanup(func() { os.RemoveAll(dir) })
	if os.Geteuid() == 0 {
		// The server refuses to run as root: run it as the postgres
		// user, in a directory it owns.
		u, err := user.Lookup("postgres")
		if err != nil {
			t.Skipf("running as root and there is no postgres user to run the server as: %v", err)
		}
		uid, _ := strconv.Atoi(u.Uid)
		gid, _ := strconv.Atoi(u.Gid)
		s.cred = &syscall.Credential{Uid: uint32(uid), Gid: uint32(gid)}
		if err := os.Chown(dir, uid, gid); err != nil {
			t.Fatal(err)
		}
	}
	out, err := s.command(filepath.Join(s.bin, "initdb"), "-D", filepath.Join(dir, "data"), "-U", "postgres",
		"--auth=trust", "--encoding=UTF8", "--no-sync").CombinedOutput()
	if err != nil {
		t.Fatalf("initdb: %v\n%s", err, out)
	}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	s.port = l.Addr().(*net.TCPAddr).Port
	l.Close()
	s.start()
	t.Cleanup(func() { s.stop(syscall.SIGINT) })
	return s
}

func versionOf(bin string) int {
	v, _ := strconv.Atoi(filepath.Base(filepath.Dir(filepath.Dir(bin))))
	return v
}

func (s *pgServer) command(name string, args ...string) *exec.Cmd {
	cmd := exec.Command(name, args...)
	cmd.Dir = s.dir
	cmd.SysProcAttr = &syscall.SysProcAttr{Credential: s.cred, Setpgid: true, Pdeathsig: syscall.SIGKILL}
	return cmd
}

// dsn is the server's address for pgx.
func (s *pgServer) dsn() string {
	return fmt.Sprintf("postgres://postgres@127.0.0.1:%d/postgres?sslmode=disable", s.port)
}

// start runs the server and waits until it accepts connections.
func (s *pgServer) start() {
	s.t.Helper()
	logf, err := os.OpenFile(s.logPath, os.O_CREATE|os.O_APPEND|os.O_WRONLY, 0o644)
	if err != nil {
		s.t.Fatal(err)
	}
	s.cmd = s.command(filepath.Join(s.bin, "postgres"), "-D", filepath.Join(s.dir, "data"), "-p", strconv.Itoa(s.port),
		"-k", s.dir, "-c", "listen_addresses=127.0.0.1", "-c", "fsync=off", "-c", "max_connections=60")
	s.cmd.Stdout, s.cmd.Stderr = logf, logf
	if err := s.cmd.Start(); err != nil {
		s.t.Fatal(err)
	}
	exited := make(chan struct{})
	s.exited = exited
	go func() {
		s.cmd.Wait()
		logf.Close()
		close(exited)
	}()
	deadline := time.Now().Add(30 * time.Second)
	for {
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		c, err := pgx.Connect(ctx, s.dsn())
		if err == nil {
			c.Close(ctx)
			cancel()
			return
		}
		cancel()
		if time.Now().After(deadline) {
			log, _ := os.ReadFile(s.logPath)
			s.t.Fatalf("the test server did not come up: %v\n%s", err, log)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// stop stops the server: SIGINT is a fast shutdown (sessions are ended,
// open transactions rolled back), SIGQUIT an immediate one, a crash that
// the next start recovers from.
func (s *pgServer) stop(sig syscall.Signal) {
	select {
	case <-s.exited:
		return
	default:
	}
	_ = s.cmd.Process.Signal(sig)
	select {
	case <-s.exited:
	case <-time.After(30 * time.Second):
		_ = syscall.Kill(-s.cmd.Process.Pid, syscall.SIGKILL)
		<-s.exited
	}
}

// logBuffer collects what the store logs.
type logBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *logBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *logBuffer) lines(substr string) []string {
	b.mu.Lock()
	defer b.mu.Unlock()
	var out []string
	for _, l := range strings.Split(b.buf.String(), "\n") {
		if strings.Contains(l, substr) {
			out = append(out, l)
		}
	}
	return out
}

// TestServerRestartUnderLoad restarts the database twice while announces
// keep coming — once cleanly (fast shutdown), once as a crash (immediate
// shutdown, then recovery) — and checks that every credited byte, snatch
// and completion reaches the tables exactly once, and that Watch finds its
// way back.
func TestServerRestartUnderLoad(t *testing.T) {
	if testing.Short() {
		t.Skip("starts a PostgreSQL server of its own")
	}
	srv := newServer(t)
	db := postgres.NewTestDB(t, srv.dsn(), true, false)
	const users, torrents = 8, 4
	for u := 1; u <= users; u++ {
		db.Exec(t, "INSERT INTO users (id, passkey) VALUES ($1, $2)", u, fmt.Sprintf("user%02d", u))
	}
	for i := 1; i <= torrents; i++ {
		db.Exec(t, "INSERT INTO torrents (id, info_hash) VALUES ($1, decode($2, 'hex'))", i, hexHash(hash(byte(i))))
	}

	// Writes fail fast while the server is away; the flusher retries
	// every 50 ms to 400 ms.
	e := newEnvWith(t, db, map[string]any{"timeout": "2s", "max_conns": 12},
		storage.FlusherConfig{Interval: 50 * time.Millisecond, Timeout: 5 * time.Second, MaxBackoff: 400 * time.Millisecond, MaxPeerRows: 1 << 20})
	logs := &logBuffer{}
	e.store.SetLogger(slog.New(slog.NewTextHandler(logs, nil)))
	e.flusher.Start()
	e.watch()

	// One worker per user and torrent: a session that uploads and
	// downloads a little at every announce and completes halfway.
	type worker struct {
		user, torrent int
		up, down      uint64 // totals reported at the last announce
		completed     bool
	}
	var (
		mu       sync.Mutex
		workers  []*worker
		failures int
	)
	for u := 1; u <= users; u++ {
		for i := 1; i <= torrents; i++ {
			workers = append(workers, &worker{user: u, torrent: i})
		}
	}
	stop := make(chan struct{})
	var wg sync.WaitGroup
	for n, w := range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			// Completions spread over the whole run, restarts included.
			steps := uint64(20 + 8*n)
			a := ann{passkey: fmt.Sprintf("user%02d", w.user), hash: hash(byte(w.torrent)), peer: n + 1, left: steps, event: bittorrent.Started}
			for step := 0; ; step++ {
				if err := e.announce(a); err != nil {
					mu.Lock()
					failures++
					mu.Unlock()
				}
				mu.Lock()
				w.up, w.down = a.up, a.down
				if a.event == bittorrent.Completed {
					w.completed = true
				}
				mu.Unlock()
				select {
				case <-stop:
					return
				case <-time.After(5 * time.Millisecond):
				}
				a.event = bittorrent.None
				a.up += uint64(1000 + step)
				if a.left > 0 {
					a.down += 10
					a.left--
					if a.left == 0 {
						a.event = bittorrent.Completed
					}
				}
			}
		}()
	}

	time.Sleep(400 * time.Millisecond)
	srv.stop(syscall.SIGINT)
	time.Sleep(300 * time.Millisecond)
	srv.start()
	time.Sleep(400 * time.Millisecond)
	srv.stop(syscall.SIGQUIT)
	srv.start()
	time.Sleep(400 * time.Millisecond)
	close(stop)
	wg.Wait()
	if failures > 0 {
		t.Fatalf("%d announces failed: the tracker must not depend on the database", failures)
	}

	// Watch is back: a user added now can announce.
	db.Exec(t, "INSERT INTO users (id, passkey) VALUES (99, 'late')")
	took := eventually(t, 15*time.Second, "an announce by a user added after the restarts", func() error {
		return e.announce(ann{passkey: "late", hash: hash(1), peer: 999, left: 1, event: bittorrent.Started})
	})
	t.Logf("Watch applied a change %v after it was made, after two restarts", took)

	closeCtx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := e.flusher.Close(closeCtx); err != nil {
		t.Fatalf("flusher close: %v", err)
	}

	var retries uint64
	for _, st := range e.flusher.Stats() {
		retries += st.Retries
		if st.Dropped != 0 {
			t.Errorf("%s: %d rows dropped", st.Name, st.Dropped)
		}
	}
	want := map[int][2]int64{}
	completed := 0
	for _, w := range workers {
		v := want[w.user]
		v[0] += int64(w.up)
		v[1] += int64(w.down)
		want[w.user] = v
		if w.completed {
			completed++
		}
	}
	var report []string
	for u := 1; u <= users; u++ {
		got := db.Ints(t, "SELECT uploaded, downloaded FROM user_stats WHERE user_id = $1", u)
		if got[0] != want[u][0] || got[1] != want[u][1] {
			report = append(report, fmt.Sprintf("user %d: uploaded %d (want %d, off by %+d), downloaded %d (want %d, off by %+d)",
				u, got[0], want[u][0], got[0]-want[u][0], got[1], want[u][1], got[1]-want[u][1]))
		}
	}
	if n := db.Int(t, "SELECT count(*) FROM snatches"); n != int64(completed) {
		report = append(report, fmt.Sprintf("snatches: %d rows, want %d", n, completed))
	}
	if n := db.Int(t, "SELECT coalesce(sum(snatches), 0) FROM torrent_stats"); n != int64(completed) {
		report = append(report, fmt.Sprintf("torrent_stats.snatches: %d in all, want %d", n, completed))
	}
	resolved := logs.lines("did commit")
	unknown := logs.lines("outcome stays unknown")
	t.Logf("%d workers, %d completions; %d failed writes retried; %d lost COMMIT answers resolved as committed, %d left unknown",
		len(workers), completed, retries, len(resolved), len(unknown))
	for _, l := range append(resolved, unknown...) {
		t.Log(l)
	}
	if len(report) > 0 {
		t.Errorf("statistics lost or doubled across the restarts:\n%s", strings.Join(report, "\n"))
	}
	if retries == 0 {
		t.Error("no write failed: the restarts did not happen during writes, so the test proved nothing")
	}
	if len(logs.lines("listening for changes again")) == 0 {
		t.Error("Watch never logged that it reconnected")
	}
}
