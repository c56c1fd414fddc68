package main

import (
	"encoding/json"
	"fmt"
	"io"
	"maps"
	"net/netip"
	"slices"
	"strings"
	"sync"
	"time"
)

// result is what run found, before it is put in a report.
type result struct {
	config          *config
	target          netip.AddrPort
	prefillTime     time.Duration
	prefillTimedOut bool
	interrupted     bool
	phases          [numPhases]phaseStats
	// startSample is before the prefill, before and after frame the
	// measured window, endSample is after the last answer.
	startSample, before, after, endSample sample
}

// Report is the result as printed; with -json it is the JSON object on
// stdout, so its field names are an interface for scripts.
type Report struct {
	// Mode is the -mode of the run.
	Mode string `json:"mode"`
	// Addr is the target address.
	Addr string `json:"addr"`
	// Model is the swarm model.
	Model ModelReport `json:"model"`
	// Concurrency is -concurrency; for UDP the window per socket.
	Concurrency int `json:"concurrency"`
	// Sockets is the number of UDP sockets, 0 for HTTP.
	Sockets int `json:"sockets,omitempty"`
	// ConnPerRequest is -conn-per-request.
	ConnPerRequest bool `json:"conn_per_request,omitempty"`
	// Prefill is the prefill, when there was one.
	Prefill *PhaseReport `json:"prefill,omitempty"`
	// Warmup is the warmup.
	Warmup PhaseReport `json:"warmup"`
	// Measured is the measured window.
	Measured PhaseReport `json:"measured"`
	// ClientCPUSeconds is the tool's own CPU time in the measured
	// window; near the window's length on one core, the tool may be
	// what limits the rate.
	ClientCPUSeconds float64 `json:"client_cpu_seconds"`
	// Server is the tracker process's cost, with -pid.
	Server *ServerReport `json:"server,omitempty"`
	// Machine is what the whole machine spent in the window.
	Machine *MachineReport `json:"machine,omitempty"`
	// Interrupted says the run was stopped before its end.
	Interrupted bool `json:"interrupted,omitempty"`
	// Warnings are conditions that make the numbers suspect.
	Warnings []string `json:"warnings,omitempty"`
}

// ModelReport describes the simulated swarms.
type ModelReport struct {
	// Torrents is the number of torrents.
	Torrents int `json:"torrents"`
	// PeersPerTorrent is the number of peers per torrent.
	PeersPerTorrent int `json:"peers_per_torrent"`
	// Seeders is the seeders' share.
	Seeders float64 `json:"seeders"`
	// Mix is the event mix, none/started/stopped/completed percent.
	Mix string `json:"mix"`
	// NumWant is the numwant of each announce.
	NumWant int `json:"numwant"`
	// Zipf is the popularity exponent, 0 for uniform.
	Zipf float64 `json:"zipf"`
	// ScrapeHashes is the number of info hashes per scrape.
	ScrapeHashes int `json:"scrape_hashes"`
}

// PhaseReport counts one phase. Requests and their outcomes are counted in
// the phase they were sent in.
type PhaseReport struct {
	// Seconds is the phase's length.
	Seconds float64 `json:"seconds"`
	// Requests is the announces or scrapes sent.
	Requests uint64 `json:"requests"`
	// Responses is the good answers.
	Responses uint64 `json:"responses"`
	// RequestsPerSecond and ResponsesPerSecond are the rates over
	// Seconds.
	RequestsPerSecond  float64 `json:"requests_per_second"`
	ResponsesPerSecond float64 `json:"responses_per_second"`
	// Errors is the failed requests and connects, ErrorClasses the
	// same by class.
	Errors       uint64            `json:"errors"`
	ErrorClasses map[string]uint64 `json:"error_classes,omitempty"`
	// LateAnswers is UDP answers that came after their request timed
	// out (and so were counted as a timeout) or matched no request.
	LateAnswers uint64 `json:"late_answers,omitempty"`
	// Connects is UDP connection IDs obtained.
	Connects uint64 `json:"udp_connects,omitempty"`
	// LatencyMs is the latency of the good answers in milliseconds.
	LatencyMs *LatencyReport `json:"latency_ms,omitempty"`
	// Answers is what the good answers said.
	Answers *AnswersReport `json:"answers,omitempty"`
}

// AnswersReport sums up what the tracker's answers said, a check that it
// answers well under load and not merely fast: with the default model a
// swarm holds about 6 seeders and 14 leechers (fewer by the peers that
// stopped), and an announce lists the other peers a client may use.
type AnswersReport struct {
	// MeanSeeders and MeanLeechers are per swarm described.
	MeanSeeders  float64 `json:"mean_seeders"`
	MeanLeechers float64 `json:"mean_leechers"`
	// MeanPeers is the peers listed per announce answer.
	MeanPeers float64 `json:"mean_peers,omitempty"`
}

// LatencyReport is a latency distribution in milliseconds.
type LatencyReport struct {
	// P50, P99 and P999 are percentiles, within 0.4%.
	P50  float64 `json:"p50"`
	P99  float64 `json:"p99"`
	P999 float64 `json:"p999"`
	// Mean, Min and Max are exact.
	Mean float64 `json:"mean"`
	Min  float64 `json:"min"`
	Max  float64 `json:"max"`
}

// ServerReport is the tracker process's cost.
type ServerReport struct {
	// PID is the process id.
	PID int `json:"pid"`
	// CPUSeconds is user+system time in the measured window, at the
	// 10 ms resolution of /proc.
	CPUSeconds float64 `json:"cpu_seconds"`
	// CPUCores is CPUSeconds per second of the window.
	CPUCores float64 `json:"cpu_cores"`
	// ResponsesPerCPUSecond is the measured good answers per second of
	// server CPU.
	ResponsesPerCPUSecond float64 `json:"responses_per_cpu_second"`
	// RSSStartBytes is before the prefill, RSSBeforeBytes and
	// RSSAfterBytes at the measured window's edges.
	RSSStartBytes  uint64 `json:"rss_start_bytes"`
	RSSBeforeBytes uint64 `json:"rss_before_bytes"`
	RSSAfterBytes  uint64 `json:"rss_after_bytes"`
	// UDPRcvbufErrors is the datagrams the kernel dropped in the
	// window for want of room in a receive buffer, counted for the
	// server's whole network namespace.
	UDPRcvbufErrors uint64 `json:"udp_rcvbuf_errors"`
	// UDPInErrors is all UDP receive errors, likewise.
	UDPInErrors uint64 `json:"udp_in_errors"`
}

// MachineReport is the machine's CPU time in the measured window, which
// tells whether anything besides the tool and the tracker competed for the
// CPUs.
type MachineReport struct {
	// OtherCPUSeconds is the CPU time charged to processes other than
	// the tool and the tracker (all processes but the tool without
	// -pid).
	OtherCPUSeconds float64 `json:"other_cpu_seconds"`
	// SoftirqSeconds is soft-interrupt time, on loopback mostly packet
	// delivery. The kernel samples it per tick, so it overlaps the
	// processes' own time: it shows how busy the network stack was.
	SoftirqSeconds float64 `json:"softirq_seconds"`
	// StealSeconds is time the hypervisor gave to other guests.
	StealSeconds float64 `json:"steal_seconds"`
}

// report builds the Report.
func (r *result) report() *Report {
	c := r.config
	rep := &Report{
		Mode: c.mode,
		Addr: r.target.String(),
		Model: ModelReport{
			Torrents: c.torrents, PeersPerTorrent: c.peers, Seeders: c.seeders,
			Mix: c.mixText, NumWant: c.numWant, Zipf: c.zipf, ScrapeHashes: c.scrapeHashes,
		},
		Concurrency:    c.concurrency,
		ConnPerRequest: c.connPerRequest && !c.udp(),
		Interrupted:    r.interrupted,
	}
	if c.udp() {
		rep.Sockets = c.sockets
	}
	if c.prefill {
		p := phaseReport(&r.phases[phasePrefill], r.prefillTime)
		rep.Prefill = &p
		if r.prefillTimedOut {
			rep.Warnings = append(rep.Warnings, fmt.Sprintf("the prefill did not finish within -prefill-timeout %v", c.prefillTimeout))
		}
	}
	rep.Warmup = phaseReport(&r.phases[phaseWarmup], c.warmup)
	var window time.Duration
	if !r.before.at.IsZero() {
		window = r.after.at.Sub(r.before.at)
	}
	rep.Measured = phaseReport(&r.phases[phaseMeasure], window)
	if r.before.selfErr == nil && r.after.selfErr == nil && window > 0 {
		rep.ClientCPUSeconds = ticksToSeconds(r.after.self.cpu - r.before.self.cpu)
	}
	if window > 0 && rep.ClientCPUSeconds > 0.9*window.Seconds() {
		rep.Warnings = append(rep.Warnings, "the tool used over 90% of a core: it may be what limits the rate")
	}
	if window > 0 && r.before.machErr == nil && r.after.machErr == nil && r.before.selfErr == nil && r.after.selfErr == nil {
		b, a := r.before.machine, r.after.machine
		other := int64(a.tasks-b.tasks) - int64(r.after.self.cpu-r.before.self.cpu)
		if c.pid > 0 && r.before.serverErr == nil && r.after.serverErr == nil {
			other -= int64(r.after.server.cpu - r.before.server.cpu)
		}
		rep.Machine = &MachineReport{
			// Ticks are counted per CPU and per process at slightly
			// different moments, so the difference can be a
			// little negative.
			OtherCPUSeconds: ticksToSeconds(uint64(max(other, 0))),
			SoftirqSeconds:  ticksToSeconds(a.softirq - b.softirq),
			StealSeconds:    ticksToSeconds(a.steal - b.steal),
		}
		if rep.Machine.OtherCPUSeconds > 0.1*window.Seconds() {
			rep.Warnings = append(rep.Warnings, fmt.Sprintf("other processes used %.2f CPU-seconds in the window: they competed with the tool and the tracker", rep.Machine.OtherCPUSeconds))
		}
		if rep.Machine.StealSeconds > 0.05*window.Seconds() {
			rep.Warnings = append(rep.Warnings, fmt.Sprintf("the hypervisor stole %.2f CPU-seconds in the window", rep.Machine.StealSeconds))
		}
	}
	if c.pid > 0 && window > 0 {
		rep.Server = r.serverReport(window, rep.Measured.Responses)
		if rep.Server != nil && rep.Server.UDPRcvbufErrors > 0 {
			rep.Warnings = append(rep.Warnings, "the kernel dropped datagrams for want of receive-buffer room: lower -sockets × -concurrency or raise net.core.rmem_max")
		}
	}
	return rep
}

func (r *result) serverReport(window time.Duration, responses uint64) *ServerReport {
	if r.before.serverErr != nil || r.after.serverErr != nil {
		return nil
	}
	s := &ServerReport{
		PID:            r.config.pid,
		CPUSeconds:     ticksToSeconds(r.after.server.cpu - r.before.server.cpu),
		RSSStartBytes:  r.startSample.server.rss,
		RSSBeforeBytes: r.before.server.rss,
		RSSAfterBytes:  r.after.server.rss,
	}
	s.CPUCores = s.CPUSeconds / window.Seconds()
	if s.CPUSeconds > 0 {
		s.ResponsesPerCPUSecond = float64(responses) / s.CPUSeconds
	}
	if r.before.udpErr == nil && r.after.udpErr == nil {
		s.UDPRcvbufErrors = r.after.udp.rcvbufErrors - r.before.udp.rcvbufErrors
		s.UDPInErrors = r.after.udp.inErrors - r.before.udp.inErrors
	}
	return s
}

func ticksToSeconds(t uint64) float64 { return float64(t) / clockTicks }

func phaseReport(s *phaseStats, d time.Duration) PhaseReport {
	p := PhaseReport{
		Seconds:     d.Seconds(),
		Requests:    s.sent.Load(),
		Responses:   s.ok.Load(),
		Errors:      s.failed.Load(),
		LateAnswers: s.late,
		Connects:    s.connects,
	}
	if len(s.errs.m) > 0 {
		p.ErrorClasses = s.errs.m
	}
	if d > 0 {
		p.RequestsPerSecond = float64(p.Requests) / d.Seconds()
		p.ResponsesPerSecond = float64(p.Responses) / d.Seconds()
	}
	if h := &s.latency; h.total > 0 {
		p.LatencyMs = &LatencyReport{
			P50: ms(h.quantile(0.50)), P99: ms(h.quantile(0.99)), P999: ms(h.quantile(0.999)),
			Mean: ms(h.mean()), Min: ms(time.Duration(h.min)), Max: ms(time.Duration(h.max)),
		}
	}
	if s.swarms > 0 {
		p.Answers = &AnswersReport{
			MeanSeeders:  float64(s.seeders) / float64(s.swarms),
			MeanLeechers: float64(s.leechers) / float64(s.swarms),
		}
		if s.announces > 0 {
			p.Answers.MeanPeers = float64(s.peers) / float64(s.announces)
		}
	}
	return p
}

func ms(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }

// writeJSON prints the report as one JSON object.
func (rep *Report) writeJSON(w io.Writer) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(rep)
}

// writeText prints the report for a person.
func (rep *Report) writeText(w io.Writer) error {
	var b strings.Builder
	m := rep.Model
	fmt.Fprintf(&b, "chihaya-bench %s → %s\n", rep.Mode, rep.Addr)
	fmt.Fprintf(&b, "model: %d torrents × %d peers, %.0f%% seeders, mix %s, numwant %d, zipf %g",
		m.Torrents, m.PeersPerTorrent, 100*m.Seeders, m.Mix, m.NumWant, m.Zipf)
	if strings.HasSuffix(rep.Mode, "scrape") {
		fmt.Fprintf(&b, ", %d hash(es) per scrape", m.ScrapeHashes)
	}
	b.WriteString("\n")
	switch {
	case rep.Sockets > 0:
		fmt.Fprintf(&b, "load: %d sockets × window %d\n", rep.Sockets, rep.Concurrency)
	case rep.ConnPerRequest:
		fmt.Fprintf(&b, "load: %d in flight, a new connection per request\n", rep.Concurrency)
	default:
		fmt.Fprintf(&b, "load: %d in flight on keep-alive connections\n", rep.Concurrency)
	}
	if p := rep.Prefill; p != nil {
		fmt.Fprintf(&b, "prefill: %d announces in %.1fs, %d answered, %d errors\n", p.Requests, p.Seconds, p.Responses, p.Errors)
	}
	p := rep.Measured
	fmt.Fprintf(&b, "measured %.2fs (after %.1fs warmup):\n", p.Seconds, rep.Warmup.Seconds)
	fmt.Fprintf(&b, "  requests     %10d  %10.0f/s\n", p.Requests, p.RequestsPerSecond)
	fmt.Fprintf(&b, "  responses    %10d  %10.0f/s\n", p.Responses, p.ResponsesPerSecond)
	fmt.Fprintf(&b, "  errors       %10d\n", p.Errors)
	for _, k := range slices.Sorted(maps.Keys(p.ErrorClasses)) {
		fmt.Fprintf(&b, "    %-40s %d\n", k, p.ErrorClasses[k])
	}
	if p.LateAnswers > 0 {
		fmt.Fprintf(&b, "  late answers %10d\n", p.LateAnswers)
	}
	if p.Connects > 0 {
		fmt.Fprintf(&b, "  udp connects %10d\n", p.Connects)
	}
	if l := p.LatencyMs; l != nil {
		fmt.Fprintf(&b, "  latency      p50 %.3fms  p99 %.3fms  p99.9 %.3fms  mean %.3fms  max %.3fms\n", l.P50, l.P99, l.P999, l.Mean, l.Max)
	}
	if a := p.Answers; a != nil {
		fmt.Fprintf(&b, "  answers      %.1f seeders, %.1f leechers per swarm", a.MeanSeeders, a.MeanLeechers)
		if a.MeanPeers > 0 {
			fmt.Fprintf(&b, ", %.1f peers per announce", a.MeanPeers)
		}
		b.WriteString("\n")
	}
	fmt.Fprintf(&b, "  client cpu   %.2fs\n", rep.ClientCPUSeconds)
	if s := rep.Server; s != nil {
		fmt.Fprintf(&b, "server pid %d:\n", s.PID)
		fmt.Fprintf(&b, "  cpu          %.2fs (%.2f cores)\n", s.CPUSeconds, s.CPUCores)
		fmt.Fprintf(&b, "  resp/cpu-s   %.0f\n", s.ResponsesPerCPUSecond)
		fmt.Fprintf(&b, "  rss          %s at start, %s before, %s after the window\n", mib(s.RSSStartBytes), mib(s.RSSBeforeBytes), mib(s.RSSAfterBytes))
		fmt.Fprintf(&b, "  udp drops    %d rcvbuf, %d in-errors (kernel, whole namespace)\n", s.UDPRcvbufErrors, s.UDPInErrors)
	}
	if m := rep.Machine; m != nil {
		fmt.Fprintf(&b, "machine: %.2fs other processes, %.2fs softirq, %.2fs steal\n", m.OtherCPUSeconds, m.SoftirqSeconds, m.StealSeconds)
	}
	if rep.Interrupted {
		b.WriteString("interrupted before the end\n")
	}
	for _, wn := range rep.Warnings {
		fmt.Fprintf(&b, "warning: %s\n", wn)
	}
	_, err := io.WriteString(w, b.String())
	return err
}

func mib(b uint64) string { return fmt.Sprintf("%.1f MiB", float64(b)/(1<<20)) }

// progress prints a line a second to stderr while a run goes on.
type progress struct {
	w    io.Writer
	recs []*recorder

	mu    sync.Mutex
	sched *schedule
	start time.Time
	total int // prefill target, 0 for the load

	done chan struct{}
	once sync.Once
	wg   sync.WaitGroup
}

func newProgress(w io.Writer, recs []*recorder, quiet bool) *progress {
	p := &progress{w: w, recs: recs, done: make(chan struct{})}
	if quiet {
		p.once.Do(func() { close(p.done) })
		return p
	}
	p.wg.Go(p.loop)
	return p
}

// set switches to a new schedule; total is the prefill's size.
func (p *progress) set(s *schedule, start time.Time, total int) {
	p.mu.Lock()
	p.sched, p.start, p.total = s, start, total
	p.mu.Unlock()
}

func (p *progress) stop() {
	p.once.Do(func() { close(p.done) })
	p.wg.Wait()
}

// counts sums every worker's counters: all requests sent and answered, and
// the errors of phase ph.
func (p *progress) counts(ph phase) (sent, ok, failed uint64) {
	for _, r := range p.recs {
		for i := range r.phases {
			sent += r.phases[i].sent.Load()
			ok += r.phases[i].ok.Load()
		}
		if ph < numPhases {
			failed += r.phases[ph].failed.Load()
		}
	}
	return sent, ok, failed
}

func (p *progress) loop() {
	t := time.NewTicker(time.Second)
	defer t.Stop()
	var lastSent, lastOK uint64
	last := time.Now()
	for {
		select {
		case <-p.done:
			return
		case now := <-t.C:
			p.mu.Lock()
			s, start, total := p.sched, p.start, p.total
			p.mu.Unlock()
			if s == nil {
				continue
			}
			ph := s.phaseAt(now)
			sent, ok, failed := p.counts(ph)
			dt := now.Sub(last).Seconds()
			if ph == phaseMeasure {
				start = s.measureFrom
			}
			line := fmt.Sprintf("%-7s %5.1fs  %9.0f req/s  %9.0f resp/s  errors %d",
				ph, now.Sub(start).Seconds(), float64(sent-lastSent)/dt, float64(ok-lastOK)/dt, failed)
			if total > 0 {
				// Only the prefill has sent anything yet.
				line += fmt.Sprintf("  (%d/%d announced)", min(sent, uint64(total)), total)
			}
			fmt.Fprintln(p.w, line)
			lastSent, lastOK, last = sent, ok, now
		}
	}
}
