//go:build linux

package e2e

import (
	"context"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"
)

// role says whether a client starts with the complete payload or without it.
type role int

const (
	seeding role = iota
	leeching
)

func (r role) String() string {
	if r == seeding {
		return "seeder"
	}
	return "leecher"
}

// clientRun is everything a client needs to take part in one transfer.
type clientRun struct {
	role    role
	torrent *testTorrent
	dataDir string // save directory; holds the payload already when seeding
	logDir  string // where the client's logs go, outside dataDir
	host    string // loopback address of the family under test, unbracketed
	port    int    // peer listen port, free for both TCP and UDP
}

// client is a real BitTorrent client the tests drive as a subprocess.
//
// A leecher process must exit with status 0 once the whole payload is on
// disk; a seeder keeps running until the test kills it.
type client interface {
	name() string
	// check returns why the client cannot be run on this machine, or nil.
	check() error
	// supports reports whether the client can announce to trackers with
	// the given URL scheme ("http", "udp").
	supports(scheme string) bool
	start(t *testing.T, r clientRun) *process
}

// aria2 drives aria2c. It only speaks HTTP(S) to trackers, never UDP.
type aria2 struct{}

func (aria2) name() string { return "aria2" }

func (aria2) check() error {
	_, err := exec.LookPath("aria2c")
	return err
}

func (aria2) supports(scheme string) bool { return scheme == "http" || scheme == "https" }

func (aria2) start(t *testing.T, r clientRun) *process {
	t.Helper()
	debugLog := filepath.Join(r.logDir, "aria2-internal.log")
	args := []string{
		"aria2c",
		// Ignore any aria2.conf of the user running the tests.
		"--no-conf=true",
		// The tracker must be the only way the peers can meet.
		"--enable-dht=false",
		"--enable-dht6=false",
		"--enable-peer-exchange=false",
		"--bt-enable-lpd=false",
		"--listen-port=" + strconv.Itoa(r.port),
		"--dir=" + r.dataDir,
		"--file-allocation=none",
		// Nothing to resume across runs; keep the save directory clean.
		"--bt-save-metadata=false",
		"--auto-save-interval=0",
		"--log=" + debugLog,
		"--log-level=info",
		"--console-log-level=notice",
		// Progress readouts would crowd out the notices; the internal
		// log has the details.
		"--summary-interval=0",
		"--show-console-readout=false",
		"--enable-color=false",
		// Exit on its own if the test binary dies before killing us.
		"--stop-with-process=" + strconv.Itoa(os.Getpid()),
	}
	if r.role == seeding {
		args = append(args,
			// Verify the payload against the torrent before seeding: it
			// also catches a bad .torrent written by this test.
			"--check-integrity=true",
			"--bt-hash-check-seed=true",
			// 0.0 means: keep seeding whatever the share ratio.
			"--seed-ratio=0.0",
		)
	} else {
		// Exit as soon as the download is complete.
		args = append(args, "--seed-time=0")
	}
	args = append(args, r.torrent.path)
	p := startProcess(t, "aria2 "+r.role.String(), filepath.Join(r.logDir, "aria2.log"), args...)
	p.extraLogs = append(p.extraLogs, debugLog)
	// One line per 16 KiB block would push everything that explains a
	// failure (tracker requests, connection attempts) out of the tail.
	p.noise = []string{" piece index=", " request index=", " have index=", " cancel index=", "we got new piece"}
	return p
}

// debianPython is the only interpreter for which Debian's python3-libtorrent
// is installed; a python3 found on PATH (pyenv, venv) usually lacks it.
const debianPython = "/usr/bin/python3"

// libtorrent drives testdata/lt_client.py, a small libtorrent-rasterbar
// client. It supports both HTTP and UDP trackers.
type libtorrent struct{}

func (libtorrent) name() string { return "libtorrent" }

func (libtorrent) check() error {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	out, err := exec.CommandContext(ctx, debianPython, "-I", "-c", "import libtorrent").CombinedOutput()
	if err != nil {
		return fmt.Errorf("%s cannot import libtorrent: %v: %s", debianPython, err, strings.TrimSpace(string(out)))
	}
	return nil
}

func (libtorrent) supports(scheme string) bool {
	return scheme == "http" || scheme == "https" || scheme == "udp"
}

func (libtorrent) start(t *testing.T, r clientRun) *process {
	t.Helper()
	script, err := filepath.Abs(filepath.Join("testdata", "lt_client.py"))
	if err != nil {
		t.Fatal(err)
	}
	mode := "seed"
	if r.role == leeching {
		mode = "leech"
	}
	return startProcess(t, "libtorrent "+r.role.String(), filepath.Join(r.logDir, "libtorrent.log"),
		// -I: ignore PYTHONPATH, PYTHONHOME and user site-packages, which
		// a pyenv or venv setup may point at another Python's modules.
		debianPython, "-I", "-u", script,
		"--mode", mode,
		"--torrent", r.torrent.path,
		"--dir", r.dataDir,
		// Listen on the loopback address of the family under test only,
		// so that the peer connection cannot silently use the other one.
		"--listen", net.JoinHostPort(r.host, strconv.Itoa(r.port)),
		// The script's own deadline is a backstop; the test's fires first
		// and reports more.
		"--timeout", strconv.Itoa(int((transferTimeout + 30*time.Second).Seconds())),
	)
}

// requireClients skips the test when a client is missing, or fails it when
// running in CI, where a missing client means a broken setup rather than a
// developer machine without the packages.
func requireClients(t *testing.T, clients ...client) {
	t.Helper()
	var missing []string
	checked := map[string]bool{}
	for _, c := range clients {
		if checked[c.name()] {
			continue
		}
		checked[c.name()] = true
		if err := c.check(); err != nil {
			missing = append(missing, fmt.Sprintf("%s: %v", c.name(), err))
		}
	}
	if len(missing) == 0 {
		return
	}
	msg := fmt.Sprintf("BitTorrent clients missing (%s); install them with scripts/install-e2e-clients",
		strings.Join(missing, "; "))
	if os.Getenv("CI") != "" {
		t.Fatal(msg)
	}
	t.Skip(msg + " to enable this test")
}
