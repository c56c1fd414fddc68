package main

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/zeebo/bencode"
)

// restartable is a tracker configuration that can be started, stopped and
// started again on the same ports and snapshot file.
type restartable struct {
	bin, config, snapshot string
	port, adminPort       int
}

func newRestartable(t *testing.T) *restartable {
	t.Helper()
	r := &restartable{bin: buildBinary(t), port: freePort(t), adminPort: freePort(t)}
	r.snapshot = filepath.Join(t.TempDir(), "swarms.snap")
	r.config = writeConfig(t, fmt.Sprintf(`{
		"http": {"listen": "127.0.0.1:%d", "allow_ip_param": true},
		"udp": {"listen": "127.0.0.1:%d"},
		"admin": {"listen": "127.0.0.1:%d"},
		"cache": {"driver": "memory", "config": {"snapshot_file": %q}}
	}`, r.port, r.port, r.adminPort, r.snapshot))
	return r
}

// start runs the tracker and waits until it answers.
func (r *restartable) start(t *testing.T) *started {
	t.Helper()
	s := &started{cmd: exec.Command(r.bin, "-config", r.config), logs: &syncBuffer{}, port: r.port, adminPort: r.adminPort, configPath: r.config}
	s.cmd.Stderr = s.logs
	if err := s.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.cmd.Process.Kill() })
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(50 * time.Millisecond) {
		resp, err := http.Get(fmt.Sprintf("http://127.0.0.1:%d/healthz", r.adminPort))
		if err == nil {
			resp.Body.Close()
			return s
		}
		if time.Now().After(deadline) {
			t.Fatalf("tracker never answered: %v\n%s", err, s.logs.String())
		}
	}
}

// stop sends SIGTERM and waits for a clean exit.
func (s *started) stop(t *testing.T) {
	t.Helper()
	if err := s.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- s.cmd.Wait() }()
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("exit after SIGTERM: %v\n%s", err, s.logs.String())
		}
	case <-time.After(15 * time.Second):
		t.Fatalf("still running 15s after SIGTERM\n%s", s.logs.String())
	}
}

type announceAnswer struct {
	Complete   int    `bencode:"complete"`
	Incomplete int    `bencode:"incomplete"`
	Peers      string `bencode:"peers"`
	Peers6     string `bencode:"peers6"`
	Failure    string `bencode:"failure reason"`
}

func (s *started) announce(t *testing.T, query string) announceAnswer {
	t.Helper()
	var a announceAnswer
	body := s.get(t, "/announce?info_hash=rrrrrrrrrrrrrrrrrrrr&"+query)
	if err := bencode.DecodeBytes(body, &a); err != nil || a.Failure != "" {
		t.Fatalf("announce %s: %v %q", query, err, body)
	}
	return a
}

// ports lists the ports of a compact peer list with entries of size n.
func ports(list string, n int) []int {
	var out []int
	for i := 0; i+n <= len(list); i += n {
		out = append(out, int(binary.BigEndian.Uint16([]byte(list[i+n-2:]))))
	}
	slices.Sort(out)
	return out
}

// TestRestartKeepsSwarms stops the tracker with SIGTERM and starts it again
// with the same configuration: the swarms are back, from the snapshot the
// first process wrote. Then it does the same with the snapshot corrupted:
// the tracker starts, says so, and serves empty swarms.
func TestRestartKeepsSwarms(t *testing.T) {
	r := newRestartable(t)
	s := r.start(t)
	s.announce(t, "peer_id=-XX0001-000000000001&port=7001&left=0&event=completed")
	s.announce(t, "peer_id=-XX0001-000000000002&port=7002&left=10&uploaded=5")
	s.announce(t, "peer_id=-XX0001-000000000003&port=7003&left=10&ipv6=2001:db8::3")
	scrape := s.get(t, "/scrape?info_hash=rrrrrrrrrrrrrrrrrrrr")
	if !bytes.Contains(scrape, []byte("d8:completei1e10:downloadedi1e10:incompletei2ee")) {
		t.Fatalf("scrape before the restart: %q", scrape)
	}
	s.stop(t)
	if logs := s.logs.String(); !strings.Contains(logs, "swarm snapshot written") || !strings.Contains(logs, "peers=3") {
		t.Fatalf("no snapshot written on SIGTERM:\n%s", logs)
	}

	s = r.start(t)
	if logs := s.logs.String(); !strings.Contains(logs, "swarm snapshot loaded") || !strings.Contains(logs, "peers=3") {
		t.Fatalf("no snapshot loaded at start:\n%s", logs)
	}
	if got := s.get(t, "/scrape?info_hash=rrrrrrrrrrrrrrrrrrrr"); !bytes.Equal(got, scrape) {
		t.Fatalf("scrape after the restart %q, before %q", got, scrape)
	}
	a := s.announce(t, "peer_id=-XX0001-000000000004&port=7004&left=10&ipv6=2001:db8::4")
	if a.Complete != 1 || a.Incomplete != 3 || !slices.Equal(ports(a.Peers, 6), []int{7001, 7002, 7003}) || !slices.Equal(ports(a.Peers6, 18), []int{7003}) {
		t.Fatalf("a new peer after the restart got %+v (ports %v and %v)", a, ports(a.Peers, 6), ports(a.Peers6, 18))
	}
	if a.Peers6[:16] != string([]byte{0x20, 0x01, 0x0d, 0xb8, 15: 3}) {
		t.Fatalf("peer 3's IPv6 address came back as %x", a.Peers6[:16])
	}
	s.stop(t)

	// A corrupt snapshot is logged, set aside and not trusted.
	data, err := os.ReadFile(r.snapshot)
	if err != nil {
		t.Fatal(err)
	}
	data[len(data)/2] ^= 0x40
	if err := os.WriteFile(r.snapshot, data, 0o600); err != nil {
		t.Fatal(err)
	}
	s = r.start(t)
	if logs := s.logs.String(); !strings.Contains(logs, "swarm snapshot ignored; starting with no swarms") || !strings.Contains(logs, "checksum mismatch") {
		t.Fatalf("a corrupt snapshot is not reported:\n%s", logs)
	}
	if got := s.get(t, "/scrape?info_hash=rrrrrrrrrrrrrrrrrrrr"); !bytes.Equal(got, []byte("d5:filesdee")) {
		t.Fatalf("scrape after a corrupt snapshot: %q", got)
	}
	a = s.announce(t, "peer_id=-XX0001-000000000005&port=7005&left=10")
	if a.Complete != 0 || a.Incomplete != 1 || a.Peers != "" {
		t.Fatalf("after a corrupt snapshot a new peer got %+v", a)
	}
	s.stop(t)
	if _, err := os.Stat(r.snapshot + ".rejected"); err != nil {
		t.Errorf("the corrupt snapshot was not set aside: %v", err)
	}
}
