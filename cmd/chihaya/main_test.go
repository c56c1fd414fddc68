package main

import (
	"bytes"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
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

func TestServesAndStopsGracefullyOnSIGTERM(t *testing.T) {
	bin := buildBinary(t)
	port := freePort(t)
	cfg := writeConfig(t, fmt.Sprintf(`{"http": {"listen": "127.0.0.1:%d"}, "udp": {"listen": "127.0.0.1:%d"}}`, port, port))
	var logs bytes.Buffer
	cmd := exec.Command(bin, "-config", cfg)
	cmd.Stderr = &logs
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer cmd.Process.Kill()

	url := fmt.Sprintf("http://127.0.0.1:%d/announce?info_hash=aaaaaaaaaaaaaaaaaaaa&peer_id=-XX0001-000000000001&port=6881&left=0", port)
	var body []byte
	deadline := time.Now().Add(10 * time.Second)
	for {
		resp, err := http.Get(url)
		if err == nil {
			body = make([]byte, 512)
			n, _ := resp.Body.Read(body)
			body = body[:n]
			resp.Body.Close()
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("tracker never answered: %v\n%s", err, logs.String())
		}
		time.Sleep(50 * time.Millisecond)
	}
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
