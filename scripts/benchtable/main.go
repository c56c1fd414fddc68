// Command benchtable produces the README's performance table: it builds the
// tracker and the load tool, runs the tracker pinned to one CPU and the load
// tool pinned to another, each row in several rounds, and prints one
// Markdown table and, for the private, reference and ceiling rows, their
// ratio to open mode measured pair by pair.
//
// It is what `make bench` runs. Rows that need MariaDB (private mode with
// the gazelle driver) are marked skipped when the server is not answering.
package main

import (
	"bytes"
	"cmp"
	"context"
	"crypto/rand"
	"database/sql"
	"encoding/hex"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/go-sql-driver/mysql"
	"github.com/redis/rueidis"
)

// options are the command's flags.
type options struct {
	duration  time.Duration
	warmup    time.Duration
	soak      time.Duration
	only      string
	mysqlDSN  string
	redisAddr string
	bigPeers  bool
	verbose   bool
	// repeat is how many rounds of the throughput rows are run; the run
	// with the median responses per server CPU-second is shown.
	repeat int
	// opentracker is the reference tracker's binary; empty skips its
	// rows.
	opentracker string
	// fixed runs the machine-ceiling rows against the fixed-answer
	// server.
	fixed bool
	// users is how many users the private rows have, each with its own
	// passkey, which the model's peers take in turn.
	users int
}

func main() {
	o := options{}
	flag.DurationVar(&o.duration, "duration", 10*time.Second, "measured window of each throughput row")
	flag.DurationVar(&o.warmup, "warmup", 2*time.Second, "load before each measured window")
	flag.DurationVar(&o.soak, "soak", 60*time.Second, "length of the full-load runs that check errors and RSS growth; 0 skips them")
	flag.IntVar(&o.repeat, "repeat", 3, "run each throughput row this many times, in rounds, and show the median run (by responses per server CPU-second) and the median ratio of the runs paired within a round, against a noisy machine")
	flag.StringVar(&o.only, "only", "", "run only the rows whose label contains this text")
	flag.StringVar(&o.mysqlDSN, "mysql-dsn", envOr("CHIHAYA_MYSQL_DSN", "root@tcp(127.0.0.1:3306)/"), "MariaDB/MySQL server for the private-mode rows (a database is created and dropped)")
	flag.StringVar(&o.redisAddr, "redis", envOr("CHIHAYA_REDIS_ADDR", "127.0.0.1:6379"), "Redis server for the redis-cache rows (keys under a fresh prefix, deleted afterwards)")
	flag.BoolVar(&o.bigPeers, "2m", true, "include the memory row with 2,000,000 peers")
	flag.BoolVar(&o.verbose, "v", false, "show the tracker's log and the load tool's progress")
	otDefault, _ := exec.LookPath("opentracker")
	flag.StringVar(&o.opentracker, "opentracker", otDefault, "opentracker binary measured the same way as a reference (Debian's package; its whitelist is filled with the model's torrents); empty skips those rows")
	flag.IntVar(&o.users, "users", 10000, "users of the private rows, each with its own passkey; the model's peers take them in turn (on the default model, 20 peers a user)")
	flag.BoolVar(&o.fixed, "fixed", true, "run the machine-ceiling rows: the same load against a server that answers every request with a fixed answer of the same size (scripts/benchtable/fixedanswer)")
	flag.Parse()
	if err := runAll(o); err != nil {
		fmt.Fprintln(os.Stderr, "benchtable:", err)
		os.Exit(1)
	}
}

func envOr(key, def string) string {
	if v := os.Getenv(key); v != "" {
		return v
	}
	return def
}

// report is the part of chihaya-bench's -json output the table shows.
type report struct {
	Measured struct {
		Seconds            float64           `json:"seconds"`
		Responses          uint64            `json:"responses"`
		ResponsesPerSecond float64           `json:"responses_per_second"`
		Errors             uint64            `json:"errors"`
		ErrorClasses       map[string]uint64 `json:"error_classes"`
		LatencyMs          *struct {
			P50  float64 `json:"p50"`
			P99  float64 `json:"p99"`
			P999 float64 `json:"p999"`
		} `json:"latency_ms"`
	} `json:"measured"`
	ClientCPUSeconds float64       `json:"client_cpu_seconds"`
	Server           *serverReport `json:"server"`
	Warnings         []string      `json:"warnings"`
}

// serverReport is what the load tool read of the server's process.
type serverReport struct {
	CPUSeconds            float64 `json:"cpu_seconds"`
	ResponsesPerCPUSecond float64 `json:"responses_per_cpu_second"`
	RSSStartBytes         uint64  `json:"rss_start_bytes"`
	RSSBeforeBytes        uint64  `json:"rss_before_bytes"`
	RSSAfterBytes         uint64  `json:"rss_after_bytes"`
}

// suite holds what every row shares.
type suite struct {
	o       options
	dir     string
	tracker string
	tool    string
	// fixed is the fixed-answer server's binary; fixedErr says why it
	// could not be built.
	fixed    string
	fixedErr error
	// serverCPU and toolCPU are taskset's CPU lists, empty when the
	// machine cannot pin.
	serverCPU, toolCPU string
	gazelle            *gazelleDB
	gazelleErr         error
}

func runAll(o options) error {
	dir, err := os.MkdirTemp("", "chihaya-benchtable-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)
	s := &suite{o: o, dir: dir, tracker: filepath.Join(dir, "chihaya"), tool: filepath.Join(dir, "chihaya-bench"),
		fixed: filepath.Join(dir, "fixedanswer")}
	for _, b := range [][2]string{{s.tracker, "./cmd/chihaya"}, {s.tool, "./cmd/chihaya-bench"}} {
		if err := goBuild(b[0], b[1]); err != nil {
			return err
		}
	}
	if o.fixed {
		// It is Linux only; elsewhere its rows are skipped rather than
		// the whole table.
		s.fixedErr = goBuild(s.fixed, "./scripts/benchtable/fixedanswer")
	}
	if _, err := exec.LookPath("taskset"); err == nil && runtime.NumCPU() >= 2 {
		s.serverCPU, s.toolCPU = "0", "1"
	} else {
		fmt.Fprintln(os.Stderr, "benchtable: taskset or a second CPU is missing; the tracker and the load tool are NOT pinned and share the CPUs")
	}
	defer func() {
		if s.gazelle != nil {
			s.gazelle.drop()
		}
	}()

	fmt.Printf("chihaya %s, %s, %d CPUs; tracker pinned to CPU %q, load tool to CPU %q; throughput rows: median of %d run(s)\n\n",
		gitDescribe(), runtime.GOARCH, runtime.NumCPU(), s.serverCPU, s.toolCPU, max(o.repeat, 1))

	// Throughput: the swarm model (the load tool's defaults).
	rows := []row{
		{"UDP announce", "udp-announce", open, nil},
		{"UDP scrape", "udp-scrape", open, nil},
		{"HTTP announce, keep-alive", "http-announce", open, nil},
		{"HTTP announce, connection per request", "http-announce", open, []string{"-conn-per-request"}},
		{"HTTP scrape, keep-alive", "http-scrape", open, nil},
		{"UDP announce, private (gazelle)", "udp-announce", private, nil},
		{"HTTP announce, keep-alive, private (gazelle)", "http-announce", private, nil},
		{"UDP announce, redis cache", "udp-announce", redisCache, nil},
		{"HTTP announce, keep-alive, redis cache", "http-announce", redisCache, nil},
		// opentracker answers one request a connection, so its HTTP
		// row compares with the connection-per-request row.
		{"opentracker (reference): UDP announce", "udp-announce", opentracker, nil},
		{"opentracker (reference): UDP scrape", "udp-scrape", opentracker, nil},
		{"opentracker (reference): HTTP announce, connection per request", "http-announce", opentracker, []string{"-conn-per-request"}},
	}
	if o.fixed {
		// The prefill only stores peers, which this server does not.
		rows = append(rows,
			row{"fixed answer (machine ceiling): UDP announce", "udp-announce", fixed, []string{"-prefill=false"}},
			row{"fixed answer (machine ceiling): UDP scrape", "udp-scrape", fixed, []string{"-prefill=false"}},
			row{"fixed answer (machine ceiling): HTTP announce, keep-alive", "http-announce", fixed, []string{"-prefill=false"}},
			row{"fixed answer (machine ceiling): HTTP announce, connection per request", "http-announce", fixed, []string{"-prefill=false", "-conn-per-request"}},
		)
	}
	rows = slices.DeleteFunc(rows, func(r row) bool { return !s.selected(r.label) })
	runs := s.rounds(rows)
	fmt.Println("| load (10,000 torrents × 20 peers, 30 % seeders, numwant 50) | responses/s | responses per server CPU-second | p50 ms | p99 ms | p99.9 ms | errors |")
	fmt.Println("| --- | ---: | ---: | ---: | ---: | ---: | ---: |")
	for _, r := range rows {
		rep, err := median(runs[r.label])
		if err != nil {
			fmt.Printf("| %s | skipped: %s | | | | | |\n", r.label, oneLine(err))
			continue
		}
		fmt.Printf("| %s | %s | %s | %s | %s | %s | %s |\n", r.label, thousands(rep.Measured.ResponsesPerSecond),
			thousands(cpuRate(rep)), latency(rep, 0), latency(rep, 1), latency(rep, 2), errorsOf(rep))
	}
	// Each private, reference or ceiling row is set against the open-mode
	// row it was run next to, round by round (see rounds).
	fmt.Println()
	for _, r := range rows {
		base := r.base()
		if base == "" {
			continue
		}
		ratios := pairedRatios(r, runs[r.label], runs[base])
		if len(ratios) == 0 {
			continue
		}
		// The middle one, or the mean of the middle two.
		m := (ratios[(len(ratios)-1)/2] + ratios[len(ratios)/2]) / 2
		spread := ""
		if len(ratios) > 1 {
			spread = fmt.Sprintf("; median of %d pairs run side by side, range %s", len(ratios), r.ratioText(ratios[0])+" to "+r.ratioText(ratios[len(ratios)-1]))
		}
		switch r.store {
		case private:
			fmt.Printf("%s: %s of open mode per server CPU-second%s\n", r.label, r.ratioText(m), spread)
		case opentracker:
			fmt.Printf("%s: %s opentracker per server CPU-second%s\n", base, r.ratioText(m), spread)
		case fixed:
			fmt.Printf("%s: %s of the fixed-answer ceiling per server CPU-second%s\n", base, r.ratioText(m), spread)
		}
	}

	// Memory: RSS growth per stored peer, read before and after the
	// prefill (every peer announces "started" once).
	fmt.Println()
	fmt.Println("| peers stored | mode | RSS before | RSS after | RSS per peer |")
	fmt.Println("| ---: | --- | ---: | ---: | ---: |")
	type memRow struct {
		torrents int
		st       store
	}
	for _, m := range []memRow{{10000, open}, {100000, open}, {10000, private}, {10000, opentracker}, {100000, opentracker}} {
		if m.torrents == 100000 && !o.bigPeers {
			continue
		}
		label := fmt.Sprintf("memory %d peers", m.torrents*20)
		mode := "open"
		switch m.st {
		case private:
			mode = "private (gazelle)"
			label += " private"
		case opentracker:
			mode = "opentracker (reference)"
			label += " opentracker"
		}
		if !s.selected(label) {
			continue
		}
		rep, err := s.measure(m.st, m.torrents, []string{"-mode", "udp-announce", "-torrents", strconv.Itoa(m.torrents),
			"-warmup", "0s", "-duration", "1s"})
		if err != nil {
			fmt.Printf("| %s | %s | skipped: %s | | |\n", thousands(float64(m.torrents*20)), mode, oneLine(err))
			continue
		}
		if rep.Server == nil {
			fmt.Printf("| %s | %s | no RSS reading | | |\n", thousands(float64(m.torrents*20)), mode)
			continue
		}
		grown := float64(rep.Server.RSSBeforeBytes) - float64(rep.Server.RSSStartBytes)
		fmt.Printf("| %s | %s | %.1f MiB | %.1f MiB | %.1f B |\n", thousands(float64(m.torrents*20)), mode,
			float64(rep.Server.RSSStartBytes)/(1<<20), float64(rep.Server.RSSBeforeBytes)/(1<<20), grown/float64(m.torrents*20))
	}

	// Soak: full load for o.soak, errors and RSS across the window.
	if o.soak > 0 {
		fmt.Println()
		fmt.Printf("| %s at full load | responses | errors | RSS at start of window | RSS at end | change |\n", o.soak)
		fmt.Println("| --- | ---: | ---: | ---: | ---: | ---: |")
		for _, r := range []row{{"soak UDP announce", "udp-announce", open, nil}, {"soak HTTP announce, keep-alive", "http-announce", open, nil}} {
			if !s.selected(r.label) {
				continue
			}
			rep, err := s.measure(open, 10000, []string{"-mode", r.mode, "-warmup", "5s", "-duration", o.soak.String()})
			if err != nil || rep.Server == nil {
				fmt.Printf("| %s | skipped: %v | | | | |\n", r.label, err)
				continue
			}
			b, a := float64(rep.Server.RSSBeforeBytes), float64(rep.Server.RSSAfterBytes)
			fmt.Printf("| %s | %s | %s | %.1f MiB | %.1f MiB | %+.1f %% |\n", strings.TrimPrefix(r.label, "soak "),
				thousands(float64(rep.Measured.Responses)), errorsOf(rep), b/(1<<20), a/(1<<20), 100*(a-b)/b)
		}
	}
	return nil
}

// goBuild builds the package pkg into the binary out.
func goBuild(out, pkg string) error {
	cmd := exec.Command("go", "build", "-o", out, pkg)
	cmd.Stdout, cmd.Stderr = os.Stderr, os.Stderr
	if err := cmd.Run(); err != nil {
		return fmt.Errorf("go build %s: %w", pkg, err)
	}
	return nil
}

// row is one line of the throughput table.
type row struct {
	label, mode string
	store       store
	args        []string
}

// base is the label of the open-mode row that r is compared with, empty
// for an open-mode row: the label r's own extends.
func (r row) base() string {
	switch r.store {
	case private:
		return strings.TrimSuffix(r.label, ", private (gazelle)")
	case opentracker:
		return strings.TrimPrefix(r.label, "opentracker (reference): ")
	case fixed:
		return strings.TrimPrefix(r.label, "fixed answer (machine ceiling): ")
	}
	return ""
}

// ratio is how r's comparison reads, from r's and its base's rates: the
// private rows as a share of open mode, opentracker as how many times
// faster chihaya is, the fixed answer as chihaya's share of the ceiling.
func (r row) ratio(rate, baseRate float64) float64 {
	switch r.store {
	case private:
		return rate / baseRate
	case opentracker, fixed:
		return baseRate / rate
	}
	return 0
}

func (r row) ratioText(v float64) string {
	if r.store == opentracker {
		return fmt.Sprintf("%.2f×", v)
	}
	return fmt.Sprintf("%.0f %%", 100*v)
}

// rounds runs every row s.o.repeat times and returns each row's runs by
// round; a row that fails is not run again, and its error is its last
// entry. A round runs each open-mode row followed by the rows compared
// with it, so that the two runs of a comparison are a minute apart rather
// than a quarter of an hour, and odd rounds run in the reverse order, so
// that a machine drifting one way does not favour one side of a pair. On a
// shared machine throughput drifts by tens of percent within minutes;
// pairs of neighbouring runs see much less of it.
func (s *suite) rounds(rows []row) map[string][]run {
	order := runOrder(rows)
	n := max(s.o.repeat, 1)
	runs := make(map[string][]run, len(rows))
	for round := range n {
		for i := range order {
			r := order[i]
			if round%2 == 1 {
				r = order[len(order)-1-i]
			}
			if rs := runs[r.label]; len(rs) > 0 && rs[len(rs)-1].err != nil {
				continue
			}
			args := append([]string{"-mode", r.mode, "-warmup", s.o.warmup.String(), "-duration", s.o.duration.String()}, r.args...)
			rep, err := s.measure(r.store, 10000, args)
			runs[r.label] = append(runs[r.label], run{round: round, rep: rep, err: err})
			if err == nil {
				fmt.Fprintf(os.Stderr, "benchtable: round %d of %d: %s: %s per server CPU-second\n", round+1, n, r.label, thousands(cpuRate(rep)))
			}
		}
	}
	return runs
}

// run is one measurement of a row.
type run struct {
	round int
	rep   *report
	err   error
}

// runOrder puts each open-mode row before the rows compared with it, in the
// table's order otherwise.
func runOrder(rows []row) []row {
	var order []row
	for _, r := range rows {
		if r.base() != "" {
			continue
		}
		order = append(order, r)
		for _, c := range rows {
			if c.base() == r.label {
				order = append(order, c)
			}
		}
	}
	// Rows whose open-mode row is not selected.
	for _, r := range rows {
		if !slices.ContainsFunc(order, func(o row) bool { return o.label == r.label }) {
			order = append(order, r)
		}
	}
	return order
}

// median returns the run with the median responses per server CPU-second,
// or the error of a row that failed.
func median(runs []run) (*report, error) {
	var reps []*report
	for _, r := range runs {
		if r.err != nil {
			return nil, r.err
		}
		reps = append(reps, r.rep)
	}
	if len(reps) == 0 {
		return nil, errors.New("not run")
	}
	slices.SortFunc(reps, func(a, b *report) int { return cmp.Compare(cpuRate(a), cpuRate(b)) })
	return reps[len(reps)/2], nil
}

// pairedRatios returns, sorted, the comparison (row.ratio) of each round's
// run of r (runs) with the same round's run of its base row (bases), for
// the rounds in which both gave a rate.
func pairedRatios(r row, runs, bases []run) []float64 {
	var out []float64
	for _, x := range runs {
		for _, b := range bases {
			if b.round != x.round || x.err != nil || b.err != nil {
				continue
			}
			if p, q := cpuRate(x.rep), cpuRate(b.rep); p > 0 && q > 0 {
				out = append(out, r.ratio(p, q))
			}
		}
	}
	slices.Sort(out)
	return out
}

func (s *suite) selected(label string) bool {
	return s.o.only == "" || strings.Contains(label, s.o.only)
}

// store is what a row's tracker keeps its state in.
type store int

const (
	// open is the memory cache without storage.
	open store = iota
	// private adds the gazelle storage driver.
	private
	// redisCache is the redis cache without storage.
	redisCache
	// opentracker is the reference tracker, not chihaya.
	opentracker
	// fixed is the fixed-answer server, the machine's ceiling.
	fixed
)

// measure starts a tracker (open, private on a gazelle database with the
// model's torrents registered, or open on Redis), runs the load tool with
// args against it and returns the tool's report.
func (s *suite) measure(st store, torrents int, args []string) (*report, error) {
	port, err := freePort()
	if err != nil {
		return nil, err
	}
	switch st {
	case opentracker:
		return s.measureOpentracker(port, torrents, args)
	case fixed:
		return s.measureFixed(port, args)
	}
	adminPort, err := freePort()
	if err != nil {
		return nil, err
	}
	cfg := map[string]any{
		"log_level": "warn",
		"tracker": map[string]any{
			"rate_limit": map[string]any{"bad_requests_per_minute": 0, "announces_per_minute": 0},
		},
		"http":  map[string]any{"listen": fmt.Sprintf("127.0.0.1:%d", port)},
		"udp":   map[string]any{"listen": fmt.Sprintf("127.0.0.1:%d", port)},
		"admin": map[string]any{"listen": fmt.Sprintf("127.0.0.1:%d", adminPort)},
	}
	switch st {
	case private:
		db, err := s.gazelleFor(torrents)
		if err != nil {
			return nil, err
		}
		cfg["storage"] = map[string]any{
			"driver": "gazelle",
			"config": map[string]any{"dsn": db.dsn, "dialect": "ops"},
		}
		args = append(args, "-passkeys", db.passkeys)
	case redisCache:
		prefix, err := s.redisPrefix()
		if err != nil {
			return nil, err
		}
		defer s.deleteRedisKeys(prefix)
		cfg["cache"] = map[string]any{
			"driver": "redis",
			"config": map[string]any{"addrs": []string{s.o.redisAddr}, "key_prefix": prefix},
		}
	}
	cfgFile := filepath.Join(s.dir, "tracker.json")
	raw, _ := json.Marshal(cfg)
	if err := os.WriteFile(cfgFile, raw, 0o600); err != nil {
		return nil, err
	}

	srv := pinned(s.serverCPU, s.tracker, "-config", cfgFile)
	return s.serve("tracker", srv, s.o.verbose, port, func() error { return waitReady(adminPort, 60*time.Second) }, args)
}

// serve starts srv, the server a row measures, waits until ready returns
// nil, runs the load tool with args against it at port and stops it. Its
// output is kept for the message when it does not get ready, or goes to
// stderr when showLog is set; name is what that message calls it.
func (s *suite) serve(name string, srv *exec.Cmd, showLog bool, port int, ready func() error, args []string) (*report, error) {
	var srvLog bytes.Buffer
	srv.Stdout, srv.Stderr = &srvLog, &srvLog
	if showLog {
		srv.Stdout, srv.Stderr = os.Stderr, os.Stderr
	}
	if err := srv.Start(); err != nil {
		return nil, err
	}
	defer stop(srv)
	if err := ready(); err != nil {
		return nil, fmt.Errorf("%s not ready: %v; log: %s", name, err, tail(srvLog.String()))
	}
	return s.runTool(port, srv.Process.Pid, args)
}

// runTool runs the load tool with args against the tracker at port with
// process id pid and returns its report.
func (s *suite) runTool(port, pid int, args []string) (*report, error) {
	args = append(args, "-addr", fmt.Sprintf("127.0.0.1:%d", port), "-pid", strconv.Itoa(pid), "-json")
	if !s.o.verbose {
		args = append(args, "-quiet")
	}
	tool := pinned(s.toolCPU, s.tool, args...)
	var out, toolErr bytes.Buffer
	tool.Stdout, tool.Stderr = &out, &toolErr
	if s.o.verbose {
		tool.Stderr = os.Stderr
	}
	if err := tool.Run(); err != nil {
		return nil, fmt.Errorf("chihaya-bench %s: %v: %s", strings.Join(args, " "), err, tail(toolErr.String()))
	}
	var rep report
	if err := json.Unmarshal(out.Bytes(), &rep); err != nil {
		return nil, fmt.Errorf("reading chihaya-bench's report: %v", err)
	}
	for _, w := range rep.Warnings {
		fmt.Fprintf(os.Stderr, "benchtable: %s: warning: %s\n", strings.Join(args, " "), w)
	}
	return &rep, nil
}

// measureOpentracker runs the load tool against opentracker, started the
// way the tracker is (same CPU, loopback, the same port for HTTP and UDP).
// Debian builds it with a whitelist, so the model's torrents are listed in
// one; as root it drops to nobody in a chroot of the run's directory, as
// its package runs it.
func (s *suite) measureOpentracker(port, torrents int, args []string) (*report, error) {
	if s.o.opentracker == "" {
		return nil, errors.New("no opentracker binary (apt-get install opentracker, or -opentracker PATH)")
	}
	dir, err := os.MkdirTemp(s.dir, "opentracker-")
	if err != nil {
		return nil, err
	}
	defer os.RemoveAll(dir)
	hashes, err := listInfoHashes(s.tool, torrents)
	if err != nil {
		return nil, err
	}
	whitelist := filepath.Join(dir, "whitelist.txt")
	if err := os.WriteFile(whitelist, hashes, 0o644); err != nil {
		return nil, err
	}
	otArgs := []string{"-i", "127.0.0.1", "-p", strconv.Itoa(port), "-P", strconv.Itoa(port)}
	if os.Geteuid() == 0 {
		// It reads the whitelist after entering the chroot.
		whitelist = "/whitelist.txt"
		if err := os.Chmod(dir, 0o755); err != nil {
			return nil, err
		}
		otArgs = append(otArgs, "-d", dir, "-u", "nobody")
	}
	conf := filepath.Join(dir, "opentracker.conf")
	if err := os.WriteFile(conf, []byte("access.whitelist "+whitelist+"\n"), 0o644); err != nil {
		return nil, err
	}
	srv := pinned(s.serverCPU, s.o.opentracker, append(otArgs, "-f", conf)...)
	return s.serve("opentracker", srv, false, port, func() error {
		// Ready when its TCP port accepts; both ports open together.
		if err := waitAccepting(port, 10*time.Second); err != nil {
			return err
		}
		// The whitelist is read on a thread of its own after start.
		time.Sleep(500 * time.Millisecond)
		return nil
	}, args)
}

// measureFixed runs the load tool against the fixed-answer server, started
// the way the tracker is (same CPU, loopback, the same port for HTTP and
// UDP).
func (s *suite) measureFixed(port int, args []string) (*report, error) {
	if s.fixedErr != nil {
		return nil, s.fixedErr
	}
	addr := fmt.Sprintf("127.0.0.1:%d", port)
	srv := pinned(s.serverCPU, s.fixed, "-http", addr, "-udp", addr)
	// It binds UDP before it listens on TCP.
	return s.serve("fixed-answer server", srv, false, port, func() error { return waitAccepting(port, 10*time.Second) }, args)
}

// waitAccepting waits until the TCP port on loopback accepts connections.
func waitAccepting(port int, limit time.Duration) error {
	deadline := time.Now().Add(limit)
	for {
		c, err := net.DialTimeout("tcp", fmt.Sprintf("127.0.0.1:%d", port), time.Second)
		if err == nil {
			c.Close()
			return nil
		}
		if time.Now().After(deadline) {
			return err
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// pinned returns the command, run on cpu when it is set.
func pinned(cpu, name string, args ...string) *exec.Cmd {
	if cpu == "" {
		return exec.Command(name, args...)
	}
	return exec.Command("taskset", append([]string{"-c", cpu, name}, args...)...)
}

func stop(cmd *exec.Cmd) {
	_ = cmd.Process.Signal(syscall.SIGTERM)
	done := make(chan struct{})
	go func() { _ = cmd.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(20 * time.Second):
		_ = cmd.Process.Kill()
		<-done
	}
}

func waitReady(adminPort int, limit time.Duration) error {
	url := fmt.Sprintf("http://127.0.0.1:%d/readyz", adminPort)
	deadline := time.Now().Add(limit)
	var last error
	for time.Now().Before(deadline) {
		resp, err := http.Get(url)
		if err == nil {
			_, _ = io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return nil
			}
			err = errors.New(resp.Status)
		}
		last = err
		time.Sleep(50 * time.Millisecond)
	}
	return last
}

// freePort returns a port that is free for both TCP and UDP on loopback.
func freePort() (int, error) {
	for range 20 {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			return 0, err
		}
		port := l.Addr().(*net.TCPAddr).Port
		u, err := net.ListenPacket("udp", fmt.Sprintf("127.0.0.1:%d", port))
		l.Close()
		if err == nil {
			u.Close()
			return port, nil
		}
	}
	return 0, errors.New("no free port")
}

// gazelleDB is a database with Gazelle's schema, its users and the model's
// torrents registered.
type gazelleDB struct {
	root *sql.DB
	name string
	dsn  string
	// passkeys is a file of the users' passkeys, one a line, for the
	// load tool's -passkeys; it lies in the suite's directory, removed
	// with it.
	passkeys string
	torrents int
}

// gazelleFor returns a database that has at least the first torrents of
// the model registered, creating it on first use.
func (s *suite) gazelleFor(torrents int) (*gazelleDB, error) {
	if s.gazelleErr != nil {
		return nil, s.gazelleErr
	}
	if s.gazelle == nil {
		s.gazelle, s.gazelleErr = newGazelleDB(s.o.mysqlDSN, max(s.o.users, 1), filepath.Join(s.dir, "passkeys"))
		if s.gazelleErr != nil {
			return nil, s.gazelleErr
		}
	}
	if s.gazelle.torrents < torrents {
		if err := s.gazelle.register(s.tool, torrents); err != nil {
			return nil, err
		}
	}
	return s.gazelle, nil
}

// newGazelleDB creates the database with users users, whose passkeys it
// writes to the file passkeys.
func newGazelleDB(dsn string, users int, passkeys string) (*gazelleDB, error) {
	cfg, err := mysql.ParseDSN(dsn)
	if err != nil {
		return nil, fmt.Errorf("-mysql-dsn: %w", err)
	}
	cfg.DBName = ""
	cfg.Timeout = 3 * time.Second
	cfg.MultiStatements = true
	conn, err := mysql.NewConnector(cfg)
	if err != nil {
		return nil, err
	}
	root := sql.OpenDB(conn)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := root.PingContext(ctx); err != nil {
		root.Close()
		return nil, fmt.Errorf("MariaDB at %s is not answering (%v); scripts/start-services starts it", cfg.Addr, err)
	}
	var rnd [4]byte
	_, _ = rand.Read(rnd[:])
	d := &gazelleDB{root: root, name: "chihaya_bench_" + hex.EncodeToString(rnd[:]), passkeys: passkeys}
	if _, err := root.Exec("CREATE DATABASE " + d.name + " CHARACTER SET utf8mb4"); err != nil {
		root.Close()
		return nil, err
	}
	schema, err := os.ReadFile(filepath.Join("storage", "gazelle", "testdata", "schema_ops.sql"))
	if err == nil {
		_, err = root.Exec("USE " + d.name + "; " + string(schema))
	}
	if err != nil {
		d.drop()
		return nil, fmt.Errorf("loading the gazelle schema: %w", err)
	}
	if err := d.addUsers(users); err != nil {
		d.drop()
		return nil, fmt.Errorf("adding the users: %w", err)
	}
	tcfg := cfg.Clone()
	tcfg.DBName = d.name
	tcfg.MultiStatements = false
	d.dsn = tcfg.FormatDSN()
	return d, nil
}

// addUsers registers n users with random passkeys, as Gazelle's sign-up
// does, and writes their passkeys to d.passkeys for the load tool.
func (d *gazelleDB) addUsers(n int) error {
	var keys strings.Builder
	for first := 0; first < n; first += 1000 {
		var q strings.Builder
		q.WriteString("INSERT INTO " + d.name + ".users_main (Username, Email, torrent_pass, can_leech, Visible, IP, Enabled) VALUES ")
		for i := first; i < min(first+1000, n); i++ {
			var key [16]byte
			_, _ = rand.Read(key[:])
			pk := hex.EncodeToString(key[:])
			if i > first {
				q.WriteString(", ")
			}
			fmt.Fprintf(&q, "('bench%d', 'bench%d@example.org', '%s', 1, '1', '127.0.0.1', '1')", i, i, pk)
			keys.WriteString(pk + "\n")
		}
		if _, err := d.root.Exec(q.String()); err != nil {
			return err
		}
	}
	if err := os.WriteFile(d.passkeys, []byte(keys.String()), 0o600); err != nil {
		return err
	}
	_, err := d.root.Exec("INSERT INTO " + d.name + ".users_leech_stats (UserID, Uploaded, Downloaded) SELECT ID, 0, 0 FROM " + d.name + ".users_main")
	return err
}

// register adds the model's torrents from d.torrents up to n, as Gazelle
// registers uploads.
func (d *gazelleDB) register(tool string, n int) error {
	out, err := listInfoHashes(tool, n)
	if err != nil {
		return err
	}
	hashes := strings.Fields(string(out))[d.torrents:]
	for len(hashes) > 0 {
		batch := hashes[:min(1000, len(hashes))]
		hashes = hashes[len(batch):]
		var q strings.Builder
		q.WriteString("INSERT INTO " + d.name + ".torrents (GroupID, info_hash, FreeTorrent, FreeLeechType, Size) VALUES ")
		for i, h := range batch {
			if i > 0 {
				q.WriteByte(',')
			}
			q.WriteString("(1, UNHEX('" + h + "'), '0', '0', 1048576)")
		}
		if _, err := d.root.Exec(q.String()); err != nil {
			return fmt.Errorf("registering torrents: %w", err)
		}
	}
	_, err = d.root.Exec("INSERT IGNORE INTO " + d.name + ".torrents_leech_stats (TorrentID) SELECT ID FROM " + d.name + ".torrents")
	if err != nil {
		return fmt.Errorf("registering torrents: %w", err)
	}
	d.torrents = n
	return nil
}

// listInfoHashes returns the load tool's list of the model's first n info
// hashes, in hex, one a line.
func listInfoHashes(tool string, n int) ([]byte, error) {
	out, err := exec.Command(tool, "-list-info-hashes", "-torrents", strconv.Itoa(n)).Output()
	if err != nil {
		return nil, fmt.Errorf("chihaya-bench -list-info-hashes: %w", err)
	}
	return out, nil
}

func (d *gazelleDB) drop() {
	if _, err := d.root.Exec("DROP DATABASE IF EXISTS " + d.name); err != nil {
		fmt.Fprintf(os.Stderr, "benchtable: dropping %s: %v\n", d.name, err)
	}
	d.root.Close()
}

func cpuRate(r *report) float64 {
	if r.Server == nil {
		return 0
	}
	return r.Server.ResponsesPerCPUSecond
}

func latency(r *report, which int) string {
	l := r.Measured.LatencyMs
	if l == nil {
		return "–"
	}
	return fmt.Sprintf("%.2f", [3]float64{l.P50, l.P99, l.P999}[which])
}

func errorsOf(r *report) string {
	if r.Measured.Errors == 0 {
		return "0"
	}
	var parts []string
	for class, n := range r.Measured.ErrorClasses {
		parts = append(parts, fmt.Sprintf("%s %d", class, n))
	}
	return fmt.Sprintf("%d (%s)", r.Measured.Errors, strings.Join(parts, ", "))
}

// thousands formats a rate the way the README writes figures: 96.7k.
func thousands(v float64) string {
	switch {
	case v >= 1e6:
		return fmt.Sprintf("%.2fM", v/1e6)
	case v >= 1e3:
		return fmt.Sprintf("%.1fk", v/1e3)
	}
	return fmt.Sprintf("%.0f", v)
}

func oneLine(err error) string {
	s := strings.ReplaceAll(err.Error(), "\n", " ")
	if len(s) > 160 {
		s = s[:160] + "…"
	}
	return s
}

func tail(s string) string {
	if len(s) > 2000 {
		s = s[len(s)-2000:]
	}
	return s
}

func gitDescribe() string {
	out, err := exec.Command("git", "describe", "--always", "--dirty").Output()
	if err != nil {
		return "(not a git checkout)"
	}
	return strings.TrimSpace(string(out))
}

// redisPrefix returns a fresh key prefix on a Redis that answers.
func (s *suite) redisPrefix() (string, error) {
	c, err := net.DialTimeout("tcp", s.o.redisAddr, 2*time.Second)
	if err != nil {
		return "", fmt.Errorf("the Redis server at %s is not answering (%v); scripts/start-services starts it", s.o.redisAddr, err)
	}
	c.Close()
	var rnd [4]byte
	_, _ = rand.Read(rnd[:])
	return "chihaya-bench-" + hex.EncodeToString(rnd[:]) + ":", nil
}

// deleteRedisKeys removes a run's keys, so that they neither fill the
// server nor slow the next run's reaper.
func (s *suite) deleteRedisKeys(prefix string) {
	c, err := rueidis.NewClient(rueidis.ClientOption{InitAddress: []string{s.o.redisAddr}, DisableCache: true})
	if err != nil {
		fmt.Fprintf(os.Stderr, "benchtable: deleting %s* from Redis: %v\n", prefix, err)
		return
	}
	defer c.Close()
	ctx := context.Background()
	var cursor uint64
	for {
		e, err := c.Do(ctx, c.B().Scan().Cursor(cursor).Match(prefix+"*").Count(1000).Build()).AsScanEntry()
		if err != nil {
			fmt.Fprintf(os.Stderr, "benchtable: deleting %s* from Redis: %v\n", prefix, err)
			return
		}
		if len(e.Elements) > 0 {
			if err := c.Do(ctx, c.B().Unlink().Key(e.Elements...).Build()).Error(); err != nil {
				fmt.Fprintf(os.Stderr, "benchtable: deleting %s* from Redis: %v\n", prefix, err)
				return
			}
		}
		if cursor = e.Cursor; cursor == 0 {
			return
		}
	}
}
