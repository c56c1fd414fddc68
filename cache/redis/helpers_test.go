package redis

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/redis/rueidis"

	"github.com/chihaya/chihaya/cache"
)

// The tests run against real Redis servers: the shared one at
// CHIHAYA_REDIS_ADDR (default 127.0.0.1:6379), which scripts/start-services
// starts, and servers the tests start themselves (a cluster, and one they
// kill). Every test works under its own random key prefix and deletes its
// keys afterwards, so tests and concurrent runs do not see each other.

// sharedRedis returns the address of the shared test Redis. When it does
// not answer, the test fails under CI (CI set) and is skipped elsewhere.
func sharedRedis(t testing.TB) string {
	t.Helper()
	addr := os.Getenv("CHIHAYA_REDIS_ADDR")
	if addr == "" {
		addr = "127.0.0.1:6379"
	}
	c, err := rueidis.NewClient(rueidis.ClientOption{
		InitAddress: []string{addr}, ForceSingleClient: true, DisableCache: true,
		Dialer: net.Dialer{Timeout: time.Second},
	})
	if err == nil {
		c.Close()
		return addr
	}
	if os.Getenv("CI") != "" {
		t.Fatalf("Redis at %s is not answering (%v); CI must provide it (scripts/start-services)", addr, err)
	}
	t.Skipf("Redis at %s is not answering (%v); run scripts/start-services to start it", addr, err)
	return ""
}

// testPrefix returns a fresh key prefix and deletes every key under it
// when the test ends.
func testPrefix(t testing.TB, addrs []string, cluster bool) string {
	t.Helper()
	var b [6]byte
	rand.Read(b[:])
	prefix := "chihaya-test:" + hex.EncodeToString(b[:]) + ":"
	t.Cleanup(func() { deleteKeys(t, addrs, cluster, prefix) })
	return prefix
}

// deleteKeys deletes every key under prefix, on every node.
func deleteKeys(t testing.TB, addrs []string, cluster bool, prefix string) {
	t.Helper()
	c := rawClient(t, addrs, cluster)
	defer c.Close()
	ctx := context.Background()
	for _, node := range c.Nodes() {
		var cursor uint64
		for {
			e, err := node.Do(ctx, node.B().Scan().Cursor(cursor).Match(globEscape(prefix)+"*").Count(1000).Build()).AsScanEntry()
			if err != nil {
				// A replica or a node already stopped: nothing to
				// clean there.
				break
			}
			cmds := make(rueidis.Commands, 0, len(e.Elements))
			for _, k := range e.Elements {
				cmds = append(cmds, c.B().Del().Key(k).Build())
			}
			for _, r := range c.DoMulti(ctx, cmds...) {
				if err := r.Error(); err != nil {
					t.Logf("cleaning up %s: %v", prefix, err)
				}
			}
			if cursor = e.Cursor; cursor == 0 {
				break
			}
		}
	}
}

// countKeys returns how many keys exist under prefix, over all masters.
func countKeys(t testing.TB, addrs []string, cluster bool, prefix string) []string {
	t.Helper()
	c := rawClient(t, addrs, cluster)
	defer c.Close()
	ctx := context.Background()
	var keys []string
	for _, node := range c.Nodes() {
		if role, err := node.Do(ctx, node.B().Role().Build()).ToArray(); err == nil {
			if r, _ := role[0].ToString(); r != "master" {
				continue
			}
		}
		var cursor uint64
		for {
			e, err := node.Do(ctx, node.B().Scan().Cursor(cursor).Match(globEscape(prefix)+"*").Count(1000).Build()).AsScanEntry()
			if err != nil {
				t.Fatal(err)
			}
			keys = append(keys, e.Elements...)
			if cursor = e.Cursor; cursor == 0 {
				break
			}
		}
	}
	return keys
}

func rawClient(t testing.TB, addrs []string, cluster bool) rueidis.Client {
	t.Helper()
	c, err := rueidis.NewClient(rueidis.ClientOption{
		InitAddress: addrs, ForceSingleClient: !cluster, DisableCache: true,
		Dialer: net.Dialer{Timeout: time.Second},
	})
	if err != nil {
		t.Fatalf("connecting to %v: %v", addrs, err)
	}
	return c
}

// openStore opens a redis store on addrs with the given extra
// configuration keys (JSON object members, without braces).
func openStore(t testing.TB, addrs []string, cluster bool, prefix string, opts cache.Options, extra string) cache.Store {
	t.Helper()
	a, _ := json.Marshal(addrs)
	cfg := fmt.Sprintf(`{"addrs": %s, "cluster": %v, "key_prefix": %q`, a, cluster, prefix)
	if extra != "" {
		cfg += ", " + extra
	}
	cfg += "}"
	if opts.PeerLifetime == 0 {
		opts.PeerLifetime = 30 * time.Minute
	}
	s, err := cache.Open("redis", json.RawMessage(cfg), opts)
	if err != nil {
		t.Fatalf("Open(%s): %v", cfg, err)
	}
	return s
}

// server is a redis-server process a test started.
type server struct {
	port int
	dir  string
	cmd  *exec.Cmd
	done chan struct{}
}

func (s *server) addr() string { return net.JoinHostPort("127.0.0.1", strconv.Itoa(s.port)) }

// requireRedisServer skips (or under CI fails) tests that need to start
// their own redis-server when the binaries are missing.
func requireRedisServer(t testing.TB) {
	t.Helper()
	for _, bin := range []string{"redis-server", "redis-cli"} {
		if _, err := exec.LookPath(bin); err != nil {
			if os.Getenv("CI") != "" {
				t.Fatalf("%s not found; CI must provide it (scripts/start-services installs it)", bin)
			}
			t.Skipf("%s not found; run scripts/start-services to install it", bin)
		}
	}
}

// startServer starts a redis-server on a free loopback port with the
// given extra arguments, in dir, and stops it when the test ends.
func startServer(t testing.TB, dir string, port int, args ...string) *server {
	t.Helper()
	s := &server{port: port, dir: dir}
	s.start(t, args...)
	t.Cleanup(s.kill)
	return s
}

func (s *server) start(t testing.TB, args ...string) {
	t.Helper()
	argv := append([]string{
		"--port", strconv.Itoa(s.port), "--bind", "127.0.0.1",
		"--save", "", "--appendonly", "no", "--daemonize", "no",
		"--dir", s.dir, "--logfile", filepath.Join(s.dir, "redis.log"),
	}, args...)
	cmd := exec.Command("redis-server", argv...)
	// The kernel kills the server if the test binary dies without
	// running its cleanups.
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		t.Fatalf("starting redis-server: %v", err)
	}
	s.cmd, s.done = cmd, make(chan struct{})
	go func() { cmd.Wait(); close(s.done) }()
	deadline := time.Now().Add(10 * time.Second)
	for {
		if out, err := exec.Command("redis-cli", "-p", strconv.Itoa(s.port), "ping").Output(); err == nil && strings.TrimSpace(string(out)) == "PONG" {
			return
		}
		select {
		case <-s.done:
			log, _ := os.ReadFile(filepath.Join(s.dir, "redis.log"))
			t.Fatalf("redis-server on port %d exited at start:\n%s", s.port, log)
		default:
		}
		if time.Now().After(deadline) {
			t.Fatalf("redis-server on port %d not answering after 10s", s.port)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// kill stops the server at once, as a crash would.
func (s *server) kill() {
	if s.cmd == nil {
		return
	}
	s.cmd.Process.Kill()
	<-s.done
	s.cmd = nil
}

// freePorts returns n loopback TCP ports that are free now, each with the
// port 10000 above it free too (a cluster node's bus port).
func freePorts(t testing.TB, n int) []int {
	t.Helper()
	var ports []int
	var held []net.Listener
	defer func() {
		for _, l := range held {
			l.Close()
		}
	}()
	for tries := 0; len(ports) < n && tries < 200; tries++ {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		p := l.Addr().(*net.TCPAddr).Port
		if p+10000 > 65535 {
			l.Close()
			continue
		}
		bus, err := net.Listen("tcp", fmt.Sprintf("127.0.0.1:%d", p+10000))
		if err != nil {
			l.Close()
			continue
		}
		held = append(held, l, bus)
		ports = append(ports, p)
	}
	if len(ports) < n {
		t.Fatal("no free ports")
	}
	return ports
}
