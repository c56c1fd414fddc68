//go:build linux

package e2e

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/netip"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

const (
	// transferTimeout bounds one seeder-to-leecher transfer, from starting
	// the seeder to the leecher exiting. A healthy run needs a few seconds.
	transferTimeout = 90 * time.Second
	// trackerStartTimeout bounds the wait for the tracker to answer HTTP.
	trackerStartTimeout = 30 * time.Second
	// logTailLines is how much of each log is shown when a test fails.
	logTailLines = 40
)

// TestTransferHTTP moves a random file between two real BitTorrent clients
// that can only learn about each other from chihaya's HTTP announce
// endpoint, over IPv4 and over IPv6, in both directions between aria2 and
// libtorrent.
//
// These two because both work over 127.0.0.1 and [::1]; transmission never
// dials loopback peers and fails over IPv6. Running each client as seeder
// and as leecher means two independent implementations parse the tracker's
// responses (peers and peers6) and are found through its peer lists.
func TestTransferHTTP(t *testing.T) {
	pairs := []pair{
		{seeder: aria2{}, leecher: libtorrent{}, seederScheme: "http", leecherScheme: "http"},
		{seeder: libtorrent{}, leecher: aria2{}, seederScheme: "http", leecherScheme: "http"},
	}
	requireE2E(t, pairs)
	tr := startTracker(t)
	runTransfers(t, pairs, func(scheme, host string) string {
		return tr.url(scheme, host, "/announce")
	})
}

// TestTransferUDP is the same transfer through the UDP tracker protocol
// (BEP 15). aria2 has no UDP tracker support, so both ends are libtorrent.
func TestTransferUDP(t *testing.T) {
	pairs := []pair{{seeder: libtorrent{}, leecher: libtorrent{}, seederScheme: "udp", leecherScheme: "udp"}}
	requireE2E(t, pairs)
	tr := startTracker(t)
	runTransfers(t, pairs, func(scheme, host string) string {
		return tr.url(scheme, host, "/announce")
	})
}

// TestTransferMixed puts one client on HTTP and the other on UDP: the
// tracker must serve them as one swarm.
func TestTransferMixed(t *testing.T) {
	pairs := []pair{
		{seeder: aria2{}, leecher: libtorrent{}, seederScheme: "http", leecherScheme: "udp"},
		{seeder: libtorrent{}, leecher: aria2{}, seederScheme: "udp", leecherScheme: "http"},
	}
	requireE2E(t, pairs)
	tr := startTracker(t)
	runTransfers(t, pairs, func(scheme, host string) string {
		return tr.url(scheme, host, "/announce")
	})
}

// pair is a seeder and a leecher for one transfer, and the tracker
// protocol ("http", "udp") each of them announces with.
type pair struct {
	seeder, leecher             client
	seederScheme, leecherScheme string
}

func (p pair) String() string {
	return p.seeder.name() + "-" + p.seederScheme + "-to-" + p.leecher.name() + "-" + p.leecherScheme
}

// families are the loopback addresses every transfer test runs on.
var families = []struct{ name, host string }{
	{"ipv4", "127.0.0.1"},
	{"ipv6", "::1"},
}

// runTransfers runs one transfer per address family and pair, as subtests
// named family/seeder-to-leecher. announceURL builds the announce URL for a
// scheme and a loopback host, which lets callers choose the path
// (/announce, /<passkey>/announce).
func runTransfers(t *testing.T, pairs []pair, announceURL func(scheme, host string) string) {
	for _, f := range families {
		t.Run(f.name, func(t *testing.T) {
			// The transfers are mostly waiting on the network and on
			// announce round trips; running them together keeps the
			// whole test short.
			t.Parallel()
			for _, p := range pairs {
				t.Run(p.String(), func(t *testing.T) {
					// Every transfer has its own torrent, hence its own
					// swarm, so they can share the tracker and run
					// side by side.
					t.Parallel()
					transfer(t, announceURL(p.seederScheme, f.host), announceURL(p.leecherScheme, f.host), p.seeder, p.leecher, nil)
				})
			}
		})
	}
}

// requireE2E skips (or, in CI, fails) tests that cannot run here.
func requireE2E(t *testing.T, pairs []pair) {
	t.Helper()
	if testing.Short() {
		t.Skip("end-to-end test with real BitTorrent clients skipped in -short mode")
	}
	var clients []client
	for _, p := range pairs {
		clients = append(clients, p.seeder, p.leecher)
	}
	requireClients(t, clients...)
}

// transfer seeds a fresh random payload with seeder, downloads it with
// leecher, each announcing to its own URL of one tracker, and checks what
// arrived.
//
// register, when not nil, is called with the torrent before the seeder
// starts, so a private tracker's test can register it the way its web
// application would.
func transfer(t *testing.T, seederURL, leecherURL string, seeder, leecher client, register func(*testTorrent)) *testTorrent {
	var host string
	for _, c := range []struct {
		client
		url string
	}{{seeder, seederURL}, {leecher, leecherURL}} {
		u, err := url.Parse(c.url)
		if err != nil {
			t.Fatal(err)
		}
		if !c.supports(u.Scheme) {
			t.Fatalf("test bug: %s cannot announce to %s trackers", c.name(), u.Scheme)
		}
		host = u.Hostname()
	}
	if addr, err := netip.ParseAddr(host); err == nil && addr.Is6() {
		requireIPv6(t)
	}

	seedDir, leechDir := t.TempDir(), t.TempDir()
	tt := makeTorrent(t, mkdir(t, seedDir, "data"), t.TempDir(), "payload.bin", seederURL)
	leecherTorrent := tt.withAnnounce(t, t.TempDir(), leecherURL)
	if register != nil {
		register(tt)
	}
	t.Logf("torrent %x, %d bytes, seeder announces to %s, leecher to %s", tt.infoHash, tt.size, seederURL, leecherURL)

	begin := time.Now()
	deadline := time.NewTimer(transferTimeout)
	defer deadline.Stop()

	sp := seeder.start(t, clientRun{
		role: seeding, torrent: tt,
		dataDir: filepath.Join(seedDir, "data"), logDir: seedDir,
		host: host, port: freePort(t),
	})
	// Start the leecher only once the tracker lists the seeder: its first
	// announce then already returns a peer, instead of the transfer
	// depending on re-announce timing.
	waitForSeeder(t, seederURL, tt, sp)
	seeded := time.Since(begin)

	lp := leecher.start(t, clientRun{
		role: leeching, torrent: leecherTorrent,
		dataDir: mkdir(t, leechDir, "data"), logDir: leechDir,
		host: host, port: freePort(t),
	})
	select {
	case <-lp.done:
		if lp.err != nil {
			t.Fatalf("%s: %v", lp.name, lp.err)
		}
	case <-sp.done:
		t.Fatalf("%s exited before the download completed: %v", sp.name, sp.err)
	case <-deadline.C:
		t.Fatalf("no complete download after %v", transferTimeout)
	}
	total := time.Since(begin)

	got, err := os.ReadFile(filepath.Join(leechDir, "data", tt.name))
	if err != nil {
		t.Fatal(err)
	}
	if sum := sha256.Sum256(got); sum != tt.sha256 {
		t.Fatalf("downloaded file: %d bytes, sha256 %x; want %d bytes, sha256 %x",
			len(got), sum, tt.size, tt.sha256)
	}
	t.Logf("%s -> %s: %d bytes, sha256 ok; seeder listed after %v, complete after %v",
		seeder.name(), leecher.name(), len(got), seeded.Round(time.Millisecond), total.Round(time.Millisecond))
	return tt
}

// waitForSeeder polls the tracker's scrape endpoint until it counts a seeder
// for tt. It is only an ordering aid: when scraping is unavailable or does
// not work, it logs why and returns, and the leecher then relies on later
// announces to find the seeder.
func waitForSeeder(t *testing.T, announceURL string, tt *testTorrent, seeder *process) {
	t.Helper()
	scrapeURL, ok := scrapeURLFor(announceURL)
	if !ok {
		t.Logf("no scrape URL for %s; not waiting for the seeder's announce", announceURL)
		return
	}
	scrapeURL += sep(scrapeURL) + "info_hash=" + escapeBytes(tt.infoHash[:])
	tick := time.NewTicker(200 * time.Millisecond)
	defer tick.Stop()
	// Give up well before the transfer deadline, leaving the leecher time
	// to find the seeder through its own announces.
	giveUp := time.After(transferTimeout / 3)
	var lastErr error
	for {
		seeders, err := scrapeSeeders(scrapeURL, tt.infoHash)
		if err == nil && seeders > 0 {
			return
		}
		if err != nil {
			lastErr = err
		}
		select {
		case <-tick.C:
		case <-seeder.done:
			t.Fatalf("%s exited while starting: %v", seeder.name, seeder.err)
		case <-giveUp:
			t.Logf("tracker did not list the seeder in time (last scrape error: %v); starting the leecher anyway", lastErr)
			return
		}
	}
}

// scrapeURLFor derives the scrape URL from an announce URL the BEP 48 way:
// replace the last path element "announce" by "scrape". The test tracker
// serves HTTP and UDP on one port, so a udp:// announce URL is scraped over
// HTTP on the same port.
func scrapeURLFor(announceURL string) (string, bool) {
	u, err := url.Parse(announceURL)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https" && u.Scheme != "udp") {
		return "", false
	}
	if u.Scheme == "udp" {
		u.Scheme = "http"
	}
	i := strings.LastIndex(u.Path, "/") + 1
	rest, ok := strings.CutPrefix(u.Path[i:], "announce")
	if !ok {
		return "", false
	}
	u.Path = u.Path[:i] + "scrape" + rest
	return u.String(), true
}

// TestScrapeURLFor checks the derivation for the URL forms the transfer
// tests use, including the passkey form of private mode.
func TestScrapeURLFor(t *testing.T) {
	for in, want := range map[string]string{
		"http://127.0.0.1:6969/announce":       "http://127.0.0.1:6969/scrape",
		"http://[::1]:6969/announce":           "http://[::1]:6969/scrape",
		"http://[::1]:6969/k3y/announce":       "http://[::1]:6969/k3y/scrape",
		"http://127.0.0.1:6969/announce.php?x": "http://127.0.0.1:6969/scrape.php?x",
		"http://127.0.0.1:6969/a":              "",
		"http://127.0.0.1:6969/announce/x":     "",
		"udp://127.0.0.1:6969/announce":        "http://127.0.0.1:6969/scrape",
		"ftp://127.0.0.1:6969/announce":        "",
	} {
		got, ok := scrapeURLFor(in)
		if got != want || ok != (want != "") {
			t.Errorf("scrapeURLFor(%q) = %q, %v; want %q", in, got, ok, want)
		}
	}
}

// scrapeSeeders returns the "complete" count the tracker reports for ih.
func scrapeSeeders(scrapeURL string, ih [20]byte) (int64, error) {
	body, err := httpGet(scrapeURL)
	if err != nil {
		return 0, err
	}
	v, err := bdecode(body)
	if err != nil {
		return 0, fmt.Errorf("scrape response %q: %w", body, err)
	}
	files, _ := v.(map[string]any)["files"].(map[string]any)
	stats, ok := files[string(ih[:])].(map[string]any)
	if !ok {
		return 0, fmt.Errorf("scrape response %q has no entry for the torrent", body)
	}
	n, _ := stats["complete"].(int64)
	return n, nil
}

// sep returns the separator for appending one more query parameter to u.
func sep(u string) string {
	if strings.Contains(u, "?") {
		return "&"
	}
	return "?"
}

// escapeBytes percent-encodes every byte outside the RFC 3986 unreserved
// set, which is how BitTorrent clients send binary info hashes. Go's
// url.QueryEscape would turn a 0x20 byte into "+", which a strict tracker
// need not accept.
func escapeBytes(b []byte) string {
	var s strings.Builder
	for _, c := range b {
		if 'a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' || strings.IndexByte("-._~", c) >= 0 {
			s.WriteByte(c)
		} else {
			fmt.Fprintf(&s, "%%%02X", c)
		}
	}
	return s.String()
}

// httpGet fetches u with a short timeout and returns the body of a 200.
func httpGet(u string) ([]byte, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u, nil)
	if err != nil {
		return nil, err
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	if err != nil {
		return nil, err
	}
	if resp.StatusCode != http.StatusOK {
		return body, fmt.Errorf("GET %s: %s: %q", u, resp.Status, body)
	}
	return body, nil
}

// tracker is a running chihaya process.
type tracker struct {
	port int
	proc *process
}

// url returns the tracker URL for scheme on the given loopback host.
func (tr *tracker) url(scheme, host, path string) string {
	return scheme + "://" + net.JoinHostPort(host, fmt.Sprint(tr.port)) + path
}

// startTracker builds chihaya, starts it with a test configuration and
// waits until it answers over HTTP on every available address family.
//
// Each configure function may change the configuration before it is
// written, for instance to enable another frontend on the same port number
// (freePort makes sure it is free for UDP too).
func startTracker(t *testing.T, configure ...func(cfg map[string]any, port int)) *tracker {
	t.Helper()
	bin := trackerBinary(t)
	dir := t.TempDir()
	port := freePort(t)
	cfg := map[string]any{
		"log_level": "debug",
		// ":PORT" listens on both families, so one tracker serves the
		// 127.0.0.1 and the [::1] cases.
		"http": map[string]any{"listen": fmt.Sprintf(":%d", port)},
		"udp":  map[string]any{"listen": fmt.Sprintf(":%d", port)},
		// Port 0: trackers of tests running side by side must not
		// compete for the admin server's default port.
		"admin": map[string]any{"listen": "127.0.0.1:0"},
		// Short intervals so that a client that missed its peer on the
		// first announce gets another chance within seconds.
		"tracker": map[string]any{
			"announce_interval":     "5s",
			"min_announce_interval": "1s",
			"announce_jitter":       "0s",
		},
	}
	for _, f := range configure {
		f(cfg, port)
	}
	cfgJSON, err := json.MarshalIndent(cfg, "", "  ")
	if err != nil {
		t.Fatal(err)
	}
	cfgPath := filepath.Join(dir, "chihaya.json")
	if err := os.WriteFile(cfgPath, cfgJSON, 0o644); err != nil {
		t.Fatal(err)
	}

	logPath := filepath.Join(dir, "tracker.log")
	tr := &tracker{port: port, proc: startProcess(t, "tracker", logPath, bin, "-config", cfgPath)}
	crashed := false
	tr.proc.beforeStop = func() {
		if tr.proc.exited() {
			crashed = true
			t.Errorf("the tracker exited while the test was running: %v", tr.proc.err)
		}
	}
	tr.proc.afterStop = func() {
		log, _ := os.ReadFile(logPath)
		if i := bytes.Index(log, []byte("WARNING: DATA RACE")); i >= 0 {
			// Quote the report: the log goes away with the temporary
			// directory.
			report := log[i:]
			if len(report) > 8000 {
				report = report[:8000]
			}
			t.Errorf("the race detector reported a data race in the tracker:\n%s", report)
		}
		// chihaya handles SIGTERM by shutting down its frontends; a hang
		// or an error there is a bug too.
		switch {
		case crashed:
		case tr.proc.killed:
			t.Errorf("the tracker did not exit within %v of SIGTERM", stopGrace)
		case tr.proc.err != nil:
			t.Errorf("the tracker exited with %v after SIGTERM", tr.proc.err)
		}
	}

	hosts := []string{"127.0.0.1"}
	if ipv6Available() {
		hosts = append(hosts, "::1")
	}
	deadline := time.After(trackerStartTimeout)
	for _, h := range hosts {
		// Any HTTP response, even an error for the missing parameters,
		// shows that the tracker is serving.
		u := tr.url("http", h, "/announce")
		for {
			_, err := httpGet(u)
			var urlErr *url.Error
			if err == nil || !errors.As(err, &urlErr) {
				break
			}
			select {
			case <-tr.proc.done:
				t.Fatalf("tracker exited during startup: %v", tr.proc.err)
			case <-deadline:
				t.Fatalf("tracker not answering %s after %v: %v", u, trackerStartTimeout, err)
			case <-time.After(50 * time.Millisecond):
			}
		}
	}
	return tr
}

// trackerBinary returns the chihaya binary under test: E2E_TRACKER_BIN if
// set (to test a binary built elsewhere), otherwise a fresh build of
// ./cmd/chihaya, with the race detector when E2E_RACE is non-empty.
func trackerBinary(t *testing.T) string {
	t.Helper()
	if bin := os.Getenv("E2E_TRACKER_BIN"); bin != "" {
		return bin
	}
	gomod, err := exec.Command("go", "env", "GOMOD").Output()
	if err != nil {
		t.Fatalf("go env GOMOD: %v", err)
	}
	bin := filepath.Join(t.TempDir(), "chihaya")
	args := []string{"build", "-o", bin}
	if os.Getenv("E2E_RACE") != "" {
		args = append(args, "-race")
	}
	args = append(args, "./cmd/chihaya")
	cmd := exec.Command("go", args...)
	cmd.Dir = filepath.Dir(strings.TrimSpace(string(gomod)))
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("go %s: %v\n%s", strings.Join(args, " "), err, out)
	}
	return bin
}

// process is a subprocess started by a test. It runs in its own process
// group, which the test kills on cleanup together with anything the
// process may have spawned.
type process struct {
	name      string
	logPath   string   // stdout and stderr
	extraLogs []string // other logs the process writes, shown on failure
	noise     []string // log lines containing one of these are not shown
	cmd       *exec.Cmd
	done      chan struct{} // closed once the process has exited
	err       error         // exit status; valid once done is closed
	killed    bool          // stop had to use SIGKILL

	// Optional checks run on cleanup around stopping the process, before
	// the logs are shown if the test failed.
	beforeStop, afterStop func()
}

// startProcess starts argv with stdout and stderr going to logPath, and
// registers its termination (and, on failure, a dump of its logs) as a
// cleanup of t.
func startProcess(t *testing.T, name, logPath string, argv ...string) *process {
	t.Helper()
	f, err := os.Create(logPath)
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(argv[0], argv[1:]...)
	cmd.Stdout, cmd.Stderr = f, f
	cmd.SysProcAttr = &syscall.SysProcAttr{
		// Own process group, so that cleanup can kill the whole tree.
		Setpgid: true,
		// If the test binary dies abruptly (go test -timeout, a kill),
		// cleanups never run; the kernel then kills the child for us.
		Pdeathsig: syscall.SIGKILL,
	}
	if err := cmd.Start(); err != nil {
		f.Close()
		t.Fatalf("starting %s: %v", name, err)
	}
	p := &process{name: name, logPath: logPath, cmd: cmd, done: make(chan struct{})}
	go func() {
		p.err = cmd.Wait()
		f.Close()
		close(p.done)
	}()
	t.Cleanup(func() {
		if p.beforeStop != nil {
			p.beforeStop()
		}
		p.stop()
		if p.afterStop != nil {
			p.afterStop()
		}
		if t.Failed() {
			for _, l := range append([]string{p.logPath}, p.extraLogs...) {
				t.Logf("--- %s: last %d lines of %s ---\n%s", p.name, logTailLines, l, tail(l, logTailLines, p.noise))
			}
		}
	})
	return p
}

// exited reports whether the process has already terminated.
func (p *process) exited() bool {
	select {
	case <-p.done:
		return true
	default:
		return false
	}
}

// stopGrace is how long a process gets to exit after SIGTERM.
const stopGrace = 5 * time.Second

// stop asks the process to terminate, then kills its whole group.
func (p *process) stop() {
	pgid := p.cmd.Process.Pid
	if !p.exited() {
		// SIGTERM first: it lets a -race tracker exit normally and flush
		// its reports, and clients send their "stopped" announce.
		_ = syscall.Kill(-pgid, syscall.SIGTERM)
		select {
		case <-p.done:
		case <-time.After(stopGrace):
			p.killed = true
		}
	}
	// Whatever is left of the group, including children the process may
	// have started, goes now.
	_ = syscall.Kill(-pgid, syscall.SIGKILL)
	<-p.done
}

// tail returns the last n lines of the file at path, leaving out lines
// that contain one of the noise strings.
func tail(path string, n int, noise []string) string {
	b, err := os.ReadFile(path)
	if err != nil {
		return err.Error()
	}
	var lines []string
	for l := range strings.Lines(string(b)) {
		if strings.TrimSpace(l) != "" && !slices.ContainsFunc(noise, func(s string) bool { return strings.Contains(l, s) }) {
			lines = append(lines, strings.TrimRight(l, "\n"))
		}
	}
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	for i, l := range lines {
		if len(l) > 400 {
			lines[i] = l[:400] + "…"
		}
	}
	return strings.Join(lines, "\n")
}

var (
	portsMu   sync.Mutex
	portsUsed = map[int]bool{}
)

// freePort returns a port that is currently free for both TCP and UDP on
// all addresses (clients and, later, the UDP frontend use both) and that
// has not been handed out before in this test binary.
func freePort(t *testing.T) int {
	t.Helper()
	portsMu.Lock()
	defer portsMu.Unlock()
	for range 100 {
		l, err := net.Listen("tcp", ":0")
		if err != nil {
			t.Fatal(err)
		}
		port := l.Addr().(*net.TCPAddr).Port
		pc, err := net.ListenPacket("udp", fmt.Sprintf(":%d", port))
		l.Close()
		if err != nil {
			continue
		}
		pc.Close()
		if !portsUsed[port] {
			portsUsed[port] = true
			return port
		}
	}
	t.Fatal("no free port found")
	return 0
}

// ipv6Available reports whether the IPv6 loopback address can be used.
func ipv6Available() bool {
	l, err := net.Listen("tcp6", "[::1]:0")
	if err != nil {
		return false
	}
	l.Close()
	return true
}

// requireIPv6 skips the test on machines without an IPv6 loopback (some
// containers), where an IPv6 case cannot say anything about the tracker.
func requireIPv6(t *testing.T) {
	t.Helper()
	if !ipv6Available() {
		t.Skip("IPv6 loopback ::1 is not available")
	}
}

// mkdir creates dir/name and returns its path.
func mkdir(t *testing.T, dir, name string) string {
	t.Helper()
	p := filepath.Join(dir, name)
	if err := os.Mkdir(p, 0o755); err != nil {
		t.Fatal(err)
	}
	return p
}
