package main

import (
	"crypto/x509"
	"fmt"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/chihaya/chihaya/internal/testcert"
)

// A certificate renewed on disk is served after SIGHUP, without a restart.
func TestSIGHUPReloadsTheTLSCertificate(t *testing.T) {
	dir := t.TempDir()
	old := testcert.Issue(t, dir)
	s := startTrackerWith(t, func(port, adminPort int) string {
		return fmt.Sprintf(`{"http": {"listen": "127.0.0.1:%d", "tls_cert_file": %q, "tls_key_file": %q},
			"udp": {"listen": "127.0.0.1:%d"}, "admin": {"listen": "127.0.0.1:%d"}}`,
			port, old.Cert, old.Key, port, adminPort)
	})
	handshake := func(pool *x509.CertPool) error { return testcert.Handshake(fmt.Sprintf("127.0.0.1:%d", s.port), pool) }
	if err := handshake(old.Pool); err != nil {
		t.Fatal(err)
	}

	newPool := testcert.Issue(t, dir).Pool
	if err := s.cmd.Process.Signal(syscall.SIGHUP); err != nil {
		t.Fatal(err)
	}
	// The log line follows the swap, so it is waited for as well.
	deadline := time.Now().Add(5 * time.Second)
	for handshake(newPool) != nil || !strings.Contains(s.logs.String(), "TLS certificate reloaded") {
		if time.Now().After(deadline) {
			t.Fatalf("the renewed certificate is not served, or the reload not logged, after SIGHUP (handshake: %v)\n%s", handshake(newPool), s.logs.String())
		}
		time.Sleep(20 * time.Millisecond)
	}
}
