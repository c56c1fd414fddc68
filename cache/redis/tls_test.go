package redis

import (
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/chihaya/chihaya/bittorrent"
	"github.com/chihaya/chihaya/cache"
	"github.com/chihaya/chihaya/internal/testcert"
)

// TestTLSAndAuth runs the driver against a test-owned redis-server that
// only speaks TLS and requires a user and password, with the database
// chosen by db: the configuration keys reach the connection.
func TestTLSAndAuth(t *testing.T) {
	requireRedisServer(t)
	dir := t.TempDir()
	certs := testcert.Issue(t, dir)
	caFile, certFile, keyFile := certs.CA, certs.Cert, certs.Key
	port := freePorts(t, 1)[0]
	s := &server{port: port, dir: dir}
	s.startTLS(t, certFile, keyFile, caFile)
	t.Cleanup(s.kill)

	addr := s.addr()
	cfg := func(extra string) json.RawMessage {
		return json.RawMessage(fmt.Sprintf(`{"addrs": [%q], "username": "tracker", "password": "s3cret", "db": 3,
			"dial_timeout": "500ms", "tls": {"enabled": true, "ca_file": %q, "server_name": "localhost"%s}}`, addr, caFile, extra))
	}
	opts := cache.Options{PeerLifetime: time.Minute}
	st, err := cache.Open("redis", cfg(""), opts)
	if err != nil {
		t.Fatalf("Open over TLS with a password: %v", err)
	}
	defer st.Close()
	h := bittorrent.InfoHash{9}
	announce(t, st, peer(h, 1))
	if r := announce(t, st, peer(h, 2)); r.Peers4.Len() != 1 {
		t.Errorf("over TLS: got %x, want peer 1", r.Peers4.Compact)
	}
	out, err := exec.Command("redis-cli", "--tls", "--cacert", caFile, "--sni", "localhost", "-p", strconv.Itoa(port),
		"--user", "tracker", "--pass", "s3cret", "--no-auth-warning", "-n", "3", "dbsize").CombinedOutput()
	if err != nil || strings.TrimSpace(string(out)) == "0" {
		t.Errorf("database 3 holds no key (%s, %v)", out, err)
	}

	// A wrong password fails Open, naming the server.
	bad := json.RawMessage(strings.Replace(string(cfg("")), "s3cret", "wrong", 1))
	if _, err := cache.Open("redis", bad, opts); err == nil || !strings.Contains(err.Error(), addr) {
		t.Errorf("wrong password: error %v, want one naming %s", err, addr)
	}
	// So does a certificate the configured CA did not sign: the system
	// roots do not know the test CA.
	noCA := json.RawMessage(strings.Replace(string(cfg("")), `"ca_file": "`+caFile+`", `, "", 1))
	if _, err := cache.Open("redis", noCA, opts); err == nil {
		t.Error("a server certificate from an unknown CA was accepted")
	}
	// Unless verification is off.
	insecure := json.RawMessage(strings.Replace(string(cfg("")), `"ca_file": "`+caFile+`", `, `"insecure_skip_verify": true, `, 1))
	if st, err := cache.Open("redis", insecure, opts); err != nil {
		t.Errorf("insecure_skip_verify: %v", err)
	} else {
		st.Close()
	}
}

func (s *server) startTLS(t *testing.T, certFile, keyFile, caFile string) {
	t.Helper()
	argv := []string{
		"--port", "0", "--tls-port", strconv.Itoa(s.port), "--bind", "127.0.0.1",
		"--tls-cert-file", certFile, "--tls-key-file", keyFile, "--tls-ca-cert-file", caFile,
		"--tls-auth-clients", "no",
		"--save", "", "--appendonly", "no", "--daemonize", "no",
		"--dir", s.dir, "--logfile", filepath.Join(s.dir, "redis.log"),
	}
	cmd := exec.Command("redis-server", argv...)
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	s.cmd, s.done = cmd, make(chan struct{})
	go func() { cmd.Wait(); close(s.done) }()
	acl := func(args ...string) error {
		base := []string{"--tls", "--cacert", caFile, "--sni", "localhost", "-p", strconv.Itoa(s.port)}
		out, err := exec.Command("redis-cli", append(base, args...)...).CombinedOutput()
		if err == nil && strings.Contains(string(out), "ERR") {
			err = fmt.Errorf("%s", out)
		}
		return err
	}
	deadline := time.Now().Add(10 * time.Second)
	for acl("ping") != nil {
		select {
		case <-s.done:
			log, _ := os.ReadFile(filepath.Join(s.dir, "redis.log"))
			t.Fatalf("TLS redis-server exited at start (built without TLS?):\n%s", log)
		default:
		}
		if time.Now().After(deadline) {
			log, _ := os.ReadFile(filepath.Join(s.dir, "redis.log"))
			t.Fatalf("TLS redis-server not answering:\n%s", log)
		}
		time.Sleep(50 * time.Millisecond)
	}
	if err := acl("acl", "setuser", "tracker", "on", ">s3cret", "~*", "&*", "+@all"); err != nil {
		t.Fatalf("creating the ACL user: %v", err)
	}
	if err := acl("acl", "setuser", "default", "off"); err != nil {
		t.Fatalf("disabling the default user: %v", err)
	}
}
