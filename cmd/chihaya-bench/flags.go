package main

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"strings"
	"time"
)

// Modes.
const (
	modeHTTPAnnounce = "http-announce"
	modeHTTPScrape   = "http-scrape"
	modeUDPAnnounce  = "udp-announce"
	modeUDPScrape    = "udp-scrape"
)

var modes = []string{modeHTTPAnnounce, modeHTTPScrape, modeUDPAnnounce, modeUDPScrape}

// config is everything a run needs, as the flags set it.
type config struct {
	mode           string
	addr           string
	connPerRequest bool
	passkey        string
	passkeysFile   string
	// passkeys are the passkeys the peers announce with, from -passkey
	// or -passkeys: peer g uses passkeys[g % len(passkeys)]. Empty
	// announces to /announce.
	passkeys []string

	torrents     int
	peers        int
	seeders      float64
	mixText      string
	mix          eventMix
	numWant      int
	zipf         float64
	scrapeHashes int
	seed         uint64

	prefill        bool
	prefillTimeout time.Duration
	warmup         time.Duration
	duration       time.Duration
	concurrency    int
	sockets        int
	timeout        time.Duration
	connIDMaxAge   time.Duration
	maxRequests    uint64
	spreadSources  bool

	pid            int
	json           bool
	listInfoHashes bool
	quiet          bool
	cpuProfile     string
}

// udp tells whether the mode speaks BEP 15.
func (c *config) udp() bool { return strings.HasPrefix(c.mode, "udp-") }

// scrape tells whether the measured requests are scrapes.
func (c *config) scrape() bool { return strings.HasSuffix(c.mode, "-scrape") }

// defaultConfig is the flags' defaults: the swarm model the task of
// comparing trackers settled on.
func defaultConfig() config {
	return config{
		mode:           modeHTTPAnnounce,
		addr:           "127.0.0.1:6969",
		torrents:       10000,
		peers:          20,
		seeders:        0.3,
		mixText:        "90/5/3/2",
		numWant:        50,
		scrapeHashes:   1,
		seed:           1,
		prefill:        true,
		prefillTimeout: 2 * time.Minute,
		warmup:         2 * time.Second,
		duration:       10 * time.Second,
		sockets:        16,
		timeout:        time.Second,
		connIDMaxAge:   time.Minute,
		maxRequests:    100_000_000,
		spreadSources:  true,
	}
}

// parseFlags reads the command line into a validated config.
func parseFlags(args []string, stderr io.Writer) (config, error) {
	c := defaultConfig()
	fs := flag.NewFlagSet("chihaya-bench", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() {
		fmt.Fprintf(stderr, "Usage: chihaya-bench -mode MODE [flags]\n\n"+
			"Load generator for a BitTorrent tracker (HTTP BEP 3/23/48, UDP BEP 15).\n"+
			"Point it only at a tracker you run. Modes: %s.\n\nFlags:\n", strings.Join(modes, ", "))
		fs.PrintDefaults()
	}
	fs.StringVar(&c.mode, "mode", c.mode, "what to send: "+strings.Join(modes, ", "))
	fs.StringVar(&c.addr, "addr", c.addr, "tracker address host:port (HTTP and UDP alike)")
	fs.BoolVar(&c.connPerRequest, "conn-per-request", c.connPerRequest, "HTTP: open a new connection for every request instead of keeping connections alive")
	fs.StringVar(&c.passkey, "passkey", c.passkey, "announce to /<passkey>/announce (UDP: as BEP 41 URL data)")
	fs.StringVar(&c.passkeysFile, "passkeys", c.passkeysFile, "file of passkeys, one a line, for a private tracker with many users: peer g announces with line g mod n (instead of -passkey)")

	fs.IntVar(&c.torrents, "torrents", c.torrents, "torrents in the model")
	fs.IntVar(&c.peers, "peers", c.peers, "peers per torrent")
	fs.Float64Var(&c.seeders, "seeders", c.seeders, "share of the peers that seed (0..1)")
	fs.StringVar(&c.mixText, "mix", c.mixText, "event mix in percent, none/started/stopped/completed; a stopped peer re-enters with started")
	fs.IntVar(&c.numWant, "numwant", c.numWant, "peers asked for in each announce")
	fs.Float64Var(&c.zipf, "zipf", c.zipf, "Zipf exponent of torrent popularity; 0 is uniform")
	fs.IntVar(&c.scrapeHashes, "scrape-hashes", c.scrapeHashes, "info hashes per scrape request")
	fs.Uint64Var(&c.seed, "seed", c.seed, "names the simulated population: the same seed announces the same torrents and peers")

	fs.BoolVar(&c.prefill, "prefill", c.prefill, "announce every peer started once before the warmup (not counted)")
	fs.DurationVar(&c.prefillTimeout, "prefill-timeout", c.prefillTimeout, "longest the prefill may take")
	fs.DurationVar(&c.warmup, "warmup", c.warmup, "load before the measured window (not counted)")
	fs.DurationVar(&c.duration, "duration", c.duration, "measured window")
	fs.IntVar(&c.concurrency, "concurrency", c.concurrency, fmt.Sprintf("HTTP: requests in flight, one connection each (0: %d); UDP: outstanding packets per socket (0: %d)", defaultHTTPConcurrency, defaultUDPWindow))
	fs.IntVar(&c.sockets, "sockets", c.sockets, "UDP: sockets, each with its own source address on IPv4 loopback; packets in flight are sockets × concurrency, which must fit the tracker's socket receive buffer")
	fs.DurationVar(&c.timeout, "timeout", c.timeout, "a request unanswered this long is an error (UDP: a lost packet)")
	fs.DurationVar(&c.connIDMaxAge, "connid-max-age", c.connIDMaxAge, "UDP: renew a connection ID this old (BEP 15 has clients use one for a minute)")
	fs.Uint64Var(&c.maxRequests, "max-requests", c.maxRequests, "upper bound on requests sent per phase, whatever the duration")
	fs.BoolVar(&c.spreadSources, "spread-sources", c.spreadSources, "on an IPv4 loopback target, bind each socket or connection to its own 127.x.y.z address")

	fs.IntVar(&c.pid, "pid", c.pid, "the tracker's process id, to report its CPU time and memory (the tracker must run on this machine)")
	fs.BoolVar(&c.json, "json", c.json, "print the result as one JSON object on stdout")
	fs.BoolVar(&c.listInfoHashes, "list-info-hashes", c.listInfoHashes, "print the model's info hashes in hex, one a line, and exit: a private tracker must have them registered before it is measured")
	fs.BoolVar(&c.quiet, "quiet", c.quiet, "no progress line on stderr")
	fs.StringVar(&c.cpuProfile, "cpuprofile", c.cpuProfile, "write the tool's own CPU profile to this file, to see whether the tool limits the rate")

	if err := fs.Parse(args); err != nil {
		return c, err
	}
	if fs.NArg() > 0 {
		return c, fmt.Errorf("unexpected argument %q", fs.Arg(0))
	}
	if err := c.readPasskeys(); err != nil {
		return c, err
	}
	return c, c.validate()
}

// readPasskeys fills passkeys from -passkey or the -passkeys file.
func (c *config) readPasskeys() error {
	switch {
	case c.passkey != "" && c.passkeysFile != "":
		return errors.New("give -passkey or -passkeys, not both")
	case c.passkey != "":
		c.passkeys = []string{c.passkey}
	case c.passkeysFile != "":
		data, err := os.ReadFile(c.passkeysFile)
		if err != nil {
			return fmt.Errorf("-passkeys: %w", err)
		}
		for line := range strings.Lines(string(data)) {
			if k := strings.TrimSpace(line); k != "" {
				c.passkeys = append(c.passkeys, k)
			}
		}
		if len(c.passkeys) == 0 {
			return fmt.Errorf("-passkeys: %s holds no passkey", c.passkeysFile)
		}
	}
	return nil
}

// The defaults of -concurrency. For UDP, all packets in flight wait in the
// tracker's one socket receive buffer, which holds some 550 small datagrams
// where net.core.rmem_max is left at its usual 208 KiB: the default
// sockets × window stays well below, so that lost packets are the
// tracker's doing, not the buffer's.
const (
	defaultHTTPConcurrency = 64
	defaultUDPWindow       = 16
)

// validate checks the flags together and fills the derived fields.
func (c *config) validate() error {
	if c.concurrency == 0 {
		c.concurrency = defaultHTTPConcurrency
		if c.udp() {
			c.concurrency = defaultUDPWindow
		}
	}
	known := false
	for _, m := range modes {
		known = known || c.mode == m
	}
	var err error
	c.mix, err = parseMix(c.mixText)
	switch {
	case !known:
		return fmt.Errorf("-mode: unknown mode %q; want one of %s", c.mode, strings.Join(modes, ", "))
	case err != nil:
		return fmt.Errorf("-mix: %w", err)
	case c.torrents < 1 || c.peers < 1:
		return errors.New("-torrents and -peers must be at least 1")
	case int64(c.torrents)*int64(c.peers) > maxPeers:
		return fmt.Errorf("-torrents × -peers must be at most %d", maxPeers)
	case !(c.seeders >= 0 && c.seeders <= 1):
		return errors.New("-seeders must be between 0 and 1")
	case c.numWant < 0:
		return errors.New("-numwant must not be negative")
	case !(c.zipf >= 0):
		return errors.New("-zipf must not be negative")
	case c.scrapeHashes < 1 || c.scrapeHashes > udpMaxScrapeHashes:
		return fmt.Errorf("-scrape-hashes must be between 1 and %d", udpMaxScrapeHashes)
	case c.duration <= 0 || c.warmup < 0 || c.prefillTimeout <= 0:
		return errors.New("-duration and -prefill-timeout must be positive, -warmup not negative")
	case c.concurrency < 1 || c.concurrency > maxWindow:
		return fmt.Errorf("-concurrency must be between 1 and %d", maxWindow)
	case c.sockets < 1 || c.sockets > maxOwners:
		return fmt.Errorf("-sockets must be between 1 and %d", maxOwners)
	case c.timeout <= 0 || c.connIDMaxAge <= 0:
		return errors.New("-timeout and -connid-max-age must be positive")
	case c.maxRequests < 1:
		return errors.New("-max-requests must be at least 1")
	case c.pid < 0:
		return errors.New("-pid must not be negative")
	}
	for _, k := range c.passkeys {
		if strings.ContainsAny(k, "/?#% ") {
			return fmt.Errorf("passkey %q must not contain / ? # %% or spaces", k)
		}
	}
	return nil
}

// paths returns the URL path of an action ("announce" or "scrape") for
// each passkey, in order, or the bare path when there is none.
func (c *config) paths(action string) []string {
	if len(c.passkeys) == 0 {
		return []string{"/" + action}
	}
	ps := make([]string, len(c.passkeys))
	for i, k := range c.passkeys {
		ps[i] = "/" + k + "/" + action
	}
	return ps
}
