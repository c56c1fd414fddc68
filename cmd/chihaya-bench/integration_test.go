package main

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"
)

// syncBuffer collects the tracker's log while it runs.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// freeLoopbackPort returns a port free for both TCP and UDP on 127.0.0.1.
func freeLoopbackPort(t *testing.T) int {
	t.Helper()
	for range 20 {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		port := ln.Addr().(*net.TCPAddr).Port
		pc, err := net.ListenPacket("udp", fmt.Sprintf("127.0.0.1:%d", port))
		ln.Close()
		if err == nil {
			pc.Close()
			return port
		}
	}
	t.Fatal("no port free for both TCP and UDP")
	return 0
}

// startTracker builds the tracker and runs it with HTTP and UDP on one
// loopback port. CHIHAYA_BENCH_TRACKER names a tracker binary to use
// instead, such as a release build.
func startTracker(t *testing.T) (addr string, pid int, logs *syncBuffer) {
	t.Helper()
	dir := t.TempDir()
	bin := os.Getenv("CHIHAYA_BENCH_TRACKER")
	if bin == "" {
		bin = filepath.Join(dir, "chihaya")
		if out, err := exec.Command("go", "build", "-o", bin, "../chihaya").CombinedOutput(); err != nil {
			t.Fatalf("building the tracker: %v\n%s", err, out)
		}
	}
	port := freeLoopbackPort(t)
	addr = fmt.Sprintf("127.0.0.1:%d", port)
	cfg := filepath.Join(dir, "config.json")
	body := fmt.Sprintf(`{"log_level": "warn", "http": {"listen": %q}, "udp": {"listen": %q}}`, addr, addr)
	if err := os.WriteFile(cfg, []byte(body), 0o600); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(bin, "-config", cfg)
	logs = &syncBuffer{}
	cmd.Stderr = logs
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_ = cmd.Process.Kill()
		_ = cmd.Wait()
	})
	deadline := time.Now().Add(10 * time.Second)
	for {
		resp, err := http.Get("http://" + addr + "/scrape?info_hash=aaaaaaaaaaaaaaaaaaaa")
		if err == nil {
			resp.Body.Close()
			return addr, cmd.Process.Pid, logs
		}
		if time.Now().After(deadline) {
			t.Fatalf("the tracker never answered: %v\n%s", err, logs.String())
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// TestAgainstTheTracker runs every mode for about a second against the real
// tracker binary, with a tiny model, and expects no error at all.
func TestAgainstTheTracker(t *testing.T) {
	if testing.Short() {
		t.Skip("builds and runs the tracker")
	}
	addr, pid, logs := startTracker(t)
	for _, tc := range []struct {
		mode           string
		connPerRequest bool
	}{
		{modeHTTPAnnounce, false},
		{modeHTTPAnnounce, true},
		{modeHTTPScrape, false},
		{modeUDPAnnounce, false},
		{modeUDPScrape, false},
	} {
		name := tc.mode
		if tc.connPerRequest {
			name += "/conn-per-request"
		}
		t.Run(name, func(t *testing.T) {
			c := defaultConfig()
			c.mode, c.addr, c.connPerRequest = tc.mode, addr, tc.connPerRequest
			c.torrents, c.peers = 50, 5
			c.warmup, c.duration = 200*time.Millisecond, time.Second
			c.concurrency = 8
			c.sockets = 4
			c.pid = pid
			c.quiet = true
			if err := c.validate(); err != nil {
				t.Fatal(err)
			}
			ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
			defer cancel()
			res, err := run(ctx, c, io.Discard)
			if err != nil {
				t.Fatal(err)
			}
			rep := res.report()
			p := rep.Prefill
			if p == nil || p.Requests != 250 || p.Responses != 250 || p.Errors != 0 {
				t.Errorf("prefill: %+v", p)
			}
			m := rep.Measured
			if m.Errors != 0 || m.Responses == 0 || m.Requests != m.Responses {
				t.Errorf("measured: %d requests, %d responses, errors %v", m.Requests, m.Responses, m.ErrorClasses)
			}
			if m.Seconds < 0.9 || m.LatencyMs == nil || m.LatencyMs.P50 <= 0 || m.LatencyMs.P99 < m.LatencyMs.P50 {
				t.Errorf("window %.2fs, latency %+v", m.Seconds, m.LatencyMs)
			}
			// The answers must describe the swarms the prefill
			// made: 5 peers each, some seeding.
			if a := m.Answers; a == nil || a.MeanSeeders <= 0 || a.MeanLeechers <= 0 || a.MeanSeeders+a.MeanLeechers > 5 {
				t.Errorf("answers: %+v", a)
			} else if !strings.HasSuffix(tc.mode, "scrape") && (a.MeanPeers <= 0 || a.MeanPeers > 4) {
				t.Errorf("%.2f peers per announce answer, want between 0 and 4", a.MeanPeers)
			}
			if tc.mode == modeUDPAnnounce && rep.Prefill.Connects != uint64(c.sockets) {
				t.Errorf("%d connects in the prefill, want one per socket", rep.Prefill.Connects)
			}
			s := rep.Server
			if s == nil || s.CPUSeconds <= 0 || s.RSSAfterBytes == 0 || s.ResponsesPerCPUSecond <= 0 {
				t.Errorf("server: %+v", s)
			}
			var out bytes.Buffer
			if err := rep.writeText(&out); err != nil || !strings.Contains(out.String(), "responses") {
				t.Errorf("text report: %v\n%s", err, out.String())
			}
		})
	}
	if l := logs.String(); strings.Contains(l, "level=ERROR") {
		t.Errorf("the tracker logged errors:\n%s", l)
	}
}
