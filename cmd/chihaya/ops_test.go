package main

import (
	"bytes"
	"compress/gzip"
	"encoding/binary"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"strings"
	"syscall"
	"testing"
	"time"

	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
	"github.com/zeebo/bencode"
)

func (s *started) admin(t *testing.T, path string, header http.Header) (int, []byte) {
	t.Helper()
	req, _ := http.NewRequest(http.MethodGet, fmt.Sprintf("http://127.0.0.1:%d%s", s.adminPort, path), nil)
	for k, v := range header {
		req.Header[k] = v
	}
	// Ask for gzip ourselves so the client does not decode it for us.
	tr := &http.Transport{DisableCompression: true}
	resp, err := (&http.Client{Transport: tr}).Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var r io.Reader = resp.Body
	if resp.Header.Get("Content-Encoding") == "gzip" {
		gz, err := gzip.NewReader(resp.Body)
		if err != nil {
			t.Fatal(err)
		}
		r = gz
	}
	body, err := io.ReadAll(r)
	if err != nil {
		t.Fatal(err)
	}
	return resp.StatusCode, body
}

// udpAnnounce connects and announces once over UDP.
func (s *started) udpAnnounce(t *testing.T, hash, peer string) {
	t.Helper()
	conn, err := net.Dial("udp", fmt.Sprintf("127.0.0.1:%d", s.port))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	roundTrip := func(p []byte) []byte {
		conn.SetDeadline(time.Now().Add(5 * time.Second))
		if _, err := conn.Write(p); err != nil {
			t.Fatal(err)
		}
		buf := make([]byte, 1500)
		n, err := conn.Read(buf)
		if err != nil {
			t.Fatal(err)
		}
		return buf[:n]
	}
	connect := binary.BigEndian.AppendUint64(nil, 0x41727101980)
	connect = binary.BigEndian.AppendUint32(connect, 0)
	connect = binary.BigEndian.AppendUint32(connect, 1)
	id := binary.BigEndian.Uint64(roundTrip(connect)[8:])
	p := binary.BigEndian.AppendUint64(nil, id)
	p = binary.BigEndian.AppendUint32(p, 1)
	p = binary.BigEndian.AppendUint32(p, 2)
	p = append(p, hash+peer...)
	p = append(p, make([]byte, 8+8+8+4+4+4+4)...) // totals, event, ip, key, numwant
	p = binary.BigEndian.AppendUint32(p[:len(p)-4], 0xffffffff)
	p = binary.BigEndian.AppendUint16(p, 7001)
	if out := roundTrip(p); binary.BigEndian.Uint32(out) != 1 {
		t.Fatalf("UDP announce answered %q", out)
	}
}

// metric returns the value of the counter or gauge name with the labels.
func metric(t *testing.T, families map[string]*dto.MetricFamily, name string, labels map[string]string) float64 {
	t.Helper()
	f, ok := families[name]
	if !ok {
		t.Fatalf("no metric %s", name)
	}
next:
	for _, m := range f.Metric {
		for _, lp := range m.Label {
			if want, ok := labels[lp.GetName()]; ok && want != lp.GetValue() {
				continue next
			}
		}
		switch {
		case m.Counter != nil:
			return m.Counter.GetValue()
		case m.Gauge != nil:
			return m.Gauge.GetValue()
		case m.Histogram != nil:
			return float64(m.Histogram.GetSampleCount())
		}
	}
	return 0
}

func TestAdminEndpoints(t *testing.T) {
	s := startTracker(t, "")
	for i := range 3 {
		s.get(t, fmt.Sprintf("/announce?info_hash=aaaaaaaaaaaaaaaaaaaa&peer_id=-XX0001-00000000000%d&port=6881&left=%d", i, i))
	}
	s.get(t, "/announce?info_hash=short&peer_id=-XX0001-000000000009&port=6881&left=0")
	s.get(t, "/scrape?info_hash=aaaaaaaaaaaaaaaaaaaa")
	s.udpAnnounce(t, "bbbbbbbbbbbbbbbbbbbb", "-UD0001-000000000001")

	code, body := s.admin(t, "/metrics", nil)
	if code != 200 {
		t.Fatalf("/metrics: %d", code)
	}
	parser := expfmt.NewTextParser(model.UTF8Validation)
	families, err := parser.TextToMetricFamilies(bytes.NewReader(body))
	if err != nil {
		t.Fatalf("/metrics is not the Prometheus text format: %v", err)
	}
	for _, c := range []struct {
		name   string
		labels map[string]string
		want   float64
	}{
		{"chihaya_requests_total", map[string]string{"protocol": "http", "action": "announce", "outcome": "ok"}, 3},
		{"chihaya_requests_total", map[string]string{"protocol": "http", "action": "announce", "outcome": "refused"}, 1},
		{"chihaya_request_failures_total", map[string]string{"protocol": "http", "action": "announce", "reason": "invalid_info_hash"}, 1},
		{"chihaya_requests_total", map[string]string{"protocol": "http", "action": "scrape", "outcome": "ok"}, 1},
		{"chihaya_requests_total", map[string]string{"protocol": "udp", "action": "connect", "outcome": "ok"}, 1},
		{"chihaya_requests_total", map[string]string{"protocol": "udp", "action": "announce", "outcome": "ok"}, 1},
		// A keep-alive connection's first request of every 16
		// is timed.
		{"chihaya_request_duration_seconds", map[string]string{"protocol": "http", "action": "announce"}, 1},
		// The first of every 16 calls is timed.
		{"chihaya_cache_duration_seconds", map[string]string{"op": "announce"}, 1},
		{"chihaya_cache_duration_seconds", map[string]string{"op": "scrape"}, 1},
		{"chihaya_swarms", nil, 2},
		{"chihaya_seeders", nil, 2},
		{"chihaya_leechers", nil, 2},
	} {
		if got := metric(t, families, c.name, c.labels); got != c.want {
			t.Errorf("%s%v = %v, want %v", c.name, c.labels, got, c.want)
		}
	}
	for _, name := range []string{"chihaya_build_info", "go_goroutines", "process_resident_memory_bytes"} {
		if _, ok := families[name]; !ok {
			t.Errorf("no %s", name)
		}
	}

	code, body = s.admin(t, "/stats.json", nil)
	var stats map[string]any
	if err := json.Unmarshal(body, &stats); code != 200 || err != nil {
		t.Fatalf("/stats.json: %d %v %s", code, err, body)
	}
	if stats["announces_total"] != float64(4) || stats["failed_announces_total"] != float64(1) || stats["scrapes_total"] != float64(1) ||
		stats["torrents"] != float64(2) || stats["seeders"] != float64(2) || stats["leechers"] != float64(2) {
		t.Errorf("/stats.json = %s", body)
	}
	if _, ok := stats["uptime_seconds"]; !ok {
		t.Errorf("/stats.json has no uptime: %s", body)
	}

	for _, path := range []string{"/healthz", "/readyz"} {
		if code, body := s.admin(t, path, nil); code != 200 {
			t.Errorf("%s: %d %s", path, code, body)
		}
	}
	if code, _ := s.admin(t, "/debug/pprof/", nil); code != 404 {
		t.Errorf("pprof is served while switched off: %d", code)
	}

	// The full scrape, bencoded and gzip-compressed.
	code, body = s.admin(t, "/scrape", http.Header{"Accept-Encoding": {"gzip"}})
	var full struct {
		Files map[string]struct {
			Complete   int `bencode:"complete"`
			Incomplete int `bencode:"incomplete"`
			Downloaded int `bencode:"downloaded"`
		} `bencode:"files"`
	}
	if err := bencode.DecodeBytes(body, &full); code != 200 || err != nil {
		t.Fatalf("/scrape: %d %v %q", code, err, body)
	}
	if a := full.Files["aaaaaaaaaaaaaaaaaaaa"]; len(full.Files) != 2 || a.Complete != 1 || a.Incomplete != 2 {
		t.Errorf("/scrape files = %+v", full.Files)
	}
	code, body = s.admin(t, "/scrape.json", nil)
	var fullJSON struct {
		Files map[string]map[string]int `json:"files"`
	}
	if err := json.Unmarshal(body, &fullJSON); code != 200 || err != nil {
		t.Fatalf("/scrape.json: %d %v %s", code, err, body)
	}
	if b := fullJSON.Files["6262626262626262626262626262626262626262"]; len(fullJSON.Files) != 2 || b["complete"] != 1 {
		t.Errorf("/scrape.json files = %v", fullJSON.Files)
	}
}

// announceInterval announces and returns the interval the tracker sends.
func (s *started) announceInterval(t *testing.T) (interval, complete int) {
	t.Helper()
	var doc struct {
		Interval int    `bencode:"interval"`
		Complete int    `bencode:"complete"`
		Failure  string `bencode:"failure reason"`
	}
	body := s.get(t, "/announce?info_hash=cccccccccccccccccccc&peer_id=-XX0001-000000000001&port=6881&left=0")
	if err := bencode.DecodeBytes(body, &doc); err != nil || doc.Failure != "" {
		t.Fatalf("announce: %v %q", err, body)
	}
	return doc.Interval, doc.Complete
}

func TestSIGHUPReloadsTheConfiguration(t *testing.T) {
	s := startTracker(t, `"tracker": {"announce_interval": "30m", "announce_jitter": "0s"}`)
	if interval, _ := s.announceInterval(t); interval != 1800 {
		t.Fatalf("interval %d, want 1800", interval)
	}
	rewrite := func(body string) {
		if err := os.WriteFile(s.configPath, []byte(body), 0o600); err != nil {
			t.Fatal(err)
		}
		if err := s.cmd.Process.Signal(syscall.SIGHUP); err != nil {
			t.Fatal(err)
		}
	}
	rewrite(fmt.Sprintf(`{"http": {"listen": "127.0.0.1:%d"}, "udp": {"listen": "127.0.0.1:%d"}, "admin": {"listen": "127.0.0.1:%d"},
		"tracker": {"announce_interval": "40m", "announce_jitter": "0s", "peer_lifetime": "1h"}}`, s.port, s.port, s.adminPort))
	deadline := time.Now().Add(5 * time.Second)
	for {
		interval, complete := s.announceInterval(t)
		if interval == 2400 {
			if complete != 1 {
				t.Fatalf("the swarm was lost on reload: complete = %d", complete)
			}
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("interval still %d after SIGHUP\n%s", interval, s.logs.String())
		}
		time.Sleep(20 * time.Millisecond)
	}

	rewrite(`{"tracker": {"announce_interval": "lots"}}`)
	deadline = time.Now().Add(5 * time.Second)
	for !strings.Contains(s.logs.String(), "configuration not reloaded") {
		if time.Now().After(deadline) {
			t.Fatalf("a broken configuration was not reported\n%s", s.logs.String())
		}
		time.Sleep(20 * time.Millisecond)
	}
	if !strings.Contains(s.logs.String(), "tracker.announce_interval") {
		t.Errorf("the error does not name the key:\n%s", s.logs.String())
	}
	if interval, _ := s.announceInterval(t); interval != 2400 {
		t.Fatalf("after a broken reload the interval is %d, want the running 2400", interval)
	}
}

func TestCheckConfigAndVersion(t *testing.T) {
	bin := buildBinary(t)
	good := writeConfig(t, `{"tracker": {"announce_interval": "20m", "min_announce_interval": "10m"}}`)
	out, err := exec.Command(bin, "-check-config", "-config", good).CombinedOutput()
	if err != nil || !strings.Contains(string(out), "configuration OK") {
		t.Fatalf("valid file: %v %s", err, out)
	}
	bad := writeConfig(t, `{"udp": {"readers": -3}}`)
	out, err = exec.Command(bin, "-check-config", "-config", bad).CombinedOutput()
	if exitErr, ok := err.(*exec.ExitError); !ok || exitErr.ExitCode() != 1 || !strings.Contains(string(out), "udp.readers") {
		t.Fatalf("invalid file: %v %s", err, out)
	}
	out, err = exec.Command(bin, "-version").CombinedOutput()
	if err != nil || !strings.HasPrefix(string(out), "chihaya ") {
		t.Fatalf("-version: %v %s", err, out)
	}
	out, _ = exec.Command(bin, "-help").CombinedOutput()
	for _, flag := range []string{"-config", "-check-config", "-version", "migrate", "SIGHUP"} {
		if !strings.Contains(string(out), flag) {
			t.Errorf("help does not mention %s:\n%s", flag, out)
		}
	}
}

// /readyz answers 503 while a configured store is down and 200 again once
// it is back.
func TestReadyzFollowsTheCache(t *testing.T) {
	server, err := exec.LookPath("redis-server")
	if err != nil {
		if os.Getenv("CI") != "" {
			t.Fatal("redis-server is not installed; scripts/start-services installs it")
		}
		t.Skip("redis-server is not installed; run scripts/start-services to enable this test")
	}
	port := freePort(t)
	dir := t.TempDir()
	startRedis := func() *exec.Cmd {
		cmd := exec.Command(server, "--port", fmt.Sprint(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no", "--dir", dir)
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		deadline := time.Now().Add(5 * time.Second)
		for {
			c, err := net.Dial("tcp", fmt.Sprintf("127.0.0.1:%d", port))
			if err == nil {
				c.Close()
				return cmd
			}
			if time.Now().After(deadline) {
				t.Fatalf("redis-server did not start: %v", err)
			}
			time.Sleep(20 * time.Millisecond)
		}
	}
	redis := startRedis()
	t.Cleanup(func() { redis.Process.Kill(); redis.Wait() })

	s := startTracker(t, fmt.Sprintf(`"cache": {"driver": "redis", "config": {"addrs": ["127.0.0.1:%d"], "key_prefix": "readyz-test:"}}`, port))
	if code, body := s.admin(t, "/readyz", nil); code != 200 {
		t.Fatalf("/readyz with redis up: %d %s", code, body)
	}
	redis.Process.Kill()
	redis.Wait()
	code, body := s.admin(t, "/readyz", nil)
	if code != http.StatusServiceUnavailable || !strings.Contains(string(body), "cache redis") {
		t.Fatalf("/readyz with redis down: %d %s", code, body)
	}
	if code, _ := s.admin(t, "/healthz", nil); code != 200 {
		t.Fatalf("/healthz must not depend on the stores: %d", code)
	}
	redis = startRedis()
	deadline := time.Now().Add(10 * time.Second)
	for {
		code, body := s.admin(t, "/readyz", nil)
		if code == 200 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("/readyz after redis came back: %d %s", code, body)
		}
		time.Sleep(100 * time.Millisecond)
	}
}
