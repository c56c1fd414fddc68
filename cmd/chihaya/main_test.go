package main

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// buildBinary compiles the command once per test binary run.
func buildBinary(t *testing.T) string {
	t.Helper()
	bin := filepath.Join(t.TempDir(), "chihaya")
	out, err := exec.Command("go", "build", "-o", bin, ".").CombinedOutput()
	if err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	return bin
}

func freePort(t *testing.T) int {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port
}

func writeConfig(t *testing.T, body string) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), "config.json")
	if err := os.WriteFile(path, []byte(body), 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

// started is a tracker process under test.
type started struct {
	cmd        *exec.Cmd
	logs       *syncBuffer
	port       int
	adminPort  int
	configPath string
}

// syncBuffer is a bytes.Buffer the process writes while the test reads.
type syncBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

// startTracker runs the binary with HTTP and UDP on one free loopback port,
// the admin server on another, and the configuration's other keys from
// extra (JSON object members, may be empty), and waits until it answers.
func startTracker(t *testing.T, extra string) *started {
	t.Helper()
	if extra != "" {
		extra = ", " + extra
	}
	return startTrackerWith(t, func(port, adminPort int) string {
		return fmt.Sprintf(`{"http": {"listen": "127.0.0.1:%d"}, "udp": {"listen": "127.0.0.1:%d"}, "admin": {"listen": "127.0.0.1:%d"}%s}`, port, port, adminPort, extra)
	})
}

// startTrackerWith starts the tracker on the configuration config returns
// for a free tracker port and admin port, and waits until it answers.
func startTrackerWith(t *testing.T, config func(port, adminPort int) string) *started {
	t.Helper()
	bin := buildBinary(t)
	port, adminPort := freePort(t), freePort(t)
	cfg := writeConfig(t, config(port, adminPort))
	s := &started{cmd: exec.Command(bin, "-config", cfg), logs: &syncBuffer{}, port: port, adminPort: adminPort, configPath: cfg}
	s.cmd.Stderr = s.logs
	if err := s.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.cmd.Process.Kill() })
	deadline := time.Now().Add(10 * time.Second)
	for {
		resp, err := http.Get(fmt.Sprintf("http://127.0.0.1:%d/healthz", adminPort))
		if err == nil {
			resp.Body.Close()
			return s
		}
		if time.Now().After(deadline) {
			t.Fatalf("tracker never answered: %v\n%s", err, s.logs.String())
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func (s *started) get(t *testing.T, query string) []byte {
	t.Helper()
	resp, err := http.Get(fmt.Sprintf("http://127.0.0.1:%d%s", s.port, query))
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return body
}

func TestServesAndStopsGracefullyOnSIGTERM(t *testing.T) {
	s := startTracker(t, "")
	cmd, logs := s.cmd, s.logs
	body := s.get(t, "/announce?info_hash=aaaaaaaaaaaaaaaaaaaa&peer_id=-XX0001-000000000001&port=6881&left=0")
	if !bytes.HasPrefix(body, []byte("d8:completei1e")) {
		t.Fatalf("announce answered %q", body)
	}

	if err := cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("exit after SIGTERM: %v\n%s", err, logs.String())
		}
	case <-time.After(15 * time.Second):
		t.Fatalf("still running 15s after SIGTERM\n%s", logs.String())
	}
	if !strings.Contains(logs.String(), "shutting down") {
		t.Errorf("no shutdown in the log:\n%s", logs.String())
	}
}

func TestInvalidConfigStopsStartup(t *testing.T) {
	bin := buildBinary(t)
	cfg := writeConfig(t, `{"tracker": {"max_numwant": "lots"}}`)
	out, err := exec.Command(bin, "-config", cfg).CombinedOutput()
	if exitErr, ok := err.(*exec.ExitError); !ok || exitErr.ExitCode() != 1 {
		t.Fatalf("exit: %v, want status 1\n%s", err, out)
	}
	if !strings.Contains(string(out), "tracker.max_numwant: want a whole number, got string") {
		t.Fatalf("error does not name the key:\n%s", out)
	}
}

// A swarm is one swarm whichever protocol its peers use.
func TestHTTPAndUDPShareSwarms(t *testing.T) {
	s := startTracker(t, "")
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
			t.Fatalf("no UDP answer: %v\n%s", err, s.logs.String())
		}
		return buf[:n]
	}
	connect := binary.BigEndian.AppendUint64(nil, 0x41727101980)
	connect = binary.BigEndian.AppendUint32(connect, 0)
	connect = binary.BigEndian.AppendUint32(connect, 1)
	connID := binary.BigEndian.Uint64(roundTrip(connect)[8:])

	// A UDP peer completes and seeds on port 7001.
	p := binary.BigEndian.AppendUint64(nil, connID)
	p = binary.BigEndian.AppendUint32(p, 1) // announce
	p = binary.BigEndian.AppendUint32(p, 2) // transaction
	p = append(p, "bbbbbbbbbbbbbbbbbbbb-UD0001-000000000001"...)
	p = binary.BigEndian.AppendUint64(p, 100) // downloaded
	p = binary.BigEndian.AppendUint64(p, 0)   // left
	p = binary.BigEndian.AppendUint64(p, 0)   // uploaded
	p = binary.BigEndian.AppendUint32(p, 1)   // completed
	p = binary.BigEndian.AppendUint32(p, 0)   // ip
	p = binary.BigEndian.AppendUint32(p, 0)   // key
	p = binary.BigEndian.AppendUint32(p, 50)  // numwant
	p = binary.BigEndian.AppendUint16(p, 7001)
	if out := roundTrip(p); binary.BigEndian.Uint32(out) != 1 {
		t.Fatalf("UDP announce answered %q", out)
	}

	// An HTTP leecher gets it, and the snatch shows in the HTTP scrape.
	body := s.get(t, "/announce?info_hash=bbbbbbbbbbbbbbbbbbbb&peer_id=-HT0001-000000000002&port=7002&left=5")
	if !bytes.Contains(body, []byte("5:peers6:\x7f\x00\x00\x01\x1b\x59")) {
		t.Fatalf("HTTP leecher did not get the UDP seeder: %q", body)
	}
	body = s.get(t, "/scrape?info_hash=bbbbbbbbbbbbbbbbbbbb")
	if !bytes.Contains(body, []byte("d8:completei1e10:downloadedi1e10:incompletei1ee")) {
		t.Fatalf("scrape %q", body)
	}

	// The UDP seeder now gets the HTTP leecher.
	binary.BigEndian.PutUint32(p[80:], 0) // no event
	out := roundTrip(p)
	if len(out) != 26 || string(out[20:]) != "\x7f\x00\x00\x01\x1b\x5a" {
		t.Fatalf("UDP seeder got %x", out)
	}
}
