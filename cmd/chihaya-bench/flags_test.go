package main

import (
	"io"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func writePasskeys(t *testing.T, content string) string {
	t.Helper()
	f := filepath.Join(t.TempDir(), "passkeys")
	if err := os.WriteFile(f, []byte(content), 0o600); err != nil {
		t.Fatal(err)
	}
	return f
}

// A private tracker's users each announce with their own passkey: the peers
// of a -passkeys file take its lines in turn, over HTTP and UDP alike.
func TestPasskeysFileGivesEachPeerALine(t *testing.T) {
	f := writePasskeys(t, "alpha\n\n  beta\r\ngamma")
	c, err := parseFlags([]string{"-mode", modeUDPAnnounce, "-passkeys", f}, io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	if strings.Join(c.passkeys, ",") != "alpha,beta,gamma" {
		t.Fatalf("passkeys %q", c.passkeys)
	}
	m := newModel(10, 20, 0.3, 50, mustMix(t, "90/5/3/2"), 0, 1)
	w := &httpWorker{c: &c, m: m, annPaths: c.paths("announce"), scrPaths: c.paths("scrape"), peers: newPeerSet(m, 0, 1, 1)}
	s := newUDPSocket(&c, m, 0, nil, nil, false, c.paths("announce"))
	for g, want := range []string{"alpha", "beta", "gamma", "alpha", "beta"} {
		line, _, _ := strings.Cut(string(w.appendAnnounce(nil, g, evNone, false)), " HTTP/1.1")
		u, err := url.ParseRequestURI(strings.TrimPrefix(line, "GET "))
		if err != nil {
			t.Fatal(err)
		}
		if u.Path != "/"+want+"/announce" {
			t.Errorf("HTTP: peer %d announces on %q, want /%s/announce", g, u.Path, want)
		}
		if got := s.pathOf(g); got != "/"+want+"/announce" {
			t.Errorf("UDP: peer %d sends URL data %q, want /%s/announce", g, got, want)
		}
	}
	// Scrapes take the passkeys in turn too.
	for _, want := range []string{"alpha", "beta", "gamma", "alpha"} {
		if req := string(w.appendScrape(nil, false)); !strings.HasPrefix(req, "GET /"+want+"/scrape?") {
			t.Errorf("scrape %q, want it on /%s/scrape", req, want)
		}
	}
}

func TestPasskeyFlagsRefused(t *testing.T) {
	good := writePasskeys(t, "alpha\n")
	for _, c := range []struct {
		name string
		args []string
		want string
	}{
		{"both", []string{"-passkey", "x", "-passkeys", good}, "not both"},
		{"empty file", []string{"-passkeys", writePasskeys(t, "\n \n")}, "holds no passkey"},
		{"missing file", []string{"-passkeys", filepath.Join(t.TempDir(), "none")}, "-passkeys"},
		{"slash in file", []string{"-passkeys", writePasskeys(t, "ok\nbad/key\n")}, `"bad/key"`},
		{"slash in flag", []string{"-passkey", "a/b"}, `"a/b"`},
	} {
		_, err := parseFlags(c.args, io.Discard)
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%s: error %v, want one that says %s", c.name, err, c.want)
		}
	}
	c, err := parseFlags(nil, io.Discard)
	if err != nil || len(c.passkeys) != 0 || c.paths("announce")[0] != "/announce" {
		t.Fatalf("no passkey: %v, %q", err, c.passkeys)
	}
}
