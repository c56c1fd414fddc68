package main

import (
	"context"
	"fmt"
	"io"
	"net"
	"net/netip"
	"strconv"
	"sync/atomic"
	"time"
)

// schedule tells the workers what phase it is and when to stop. The load
// runs on one schedule through warmup and measurement; the prefill has its
// own.
type schedule struct {
	prefill     bool
	measureFrom time.Time
	stopAt      time.Time
	stopped     *atomic.Bool
	// budget is what is left of -max-requests in each phase.
	budget [numPhases]atomic.Int64
}

func newSchedule(prefill bool, measureFrom, stopAt time.Time, stopped *atomic.Bool, maxRequests uint64) *schedule {
	s := &schedule{prefill: prefill, measureFrom: measureFrom, stopAt: stopAt, stopped: stopped}
	for i := range s.budget {
		s.budget[i].Store(int64(min(maxRequests, 1<<62)))
	}
	return s
}

// phaseAt returns the phase a request sent at now belongs to.
func (s *schedule) phaseAt(now time.Time) phase {
	switch {
	case s.stopped.Load() || !now.Before(s.stopAt):
		return phaseDone
	case s.prefill:
		return phasePrefill
	case now.Before(s.measureFrom):
		return phaseWarmup
	}
	return phaseMeasure
}

// take claims up to n requests of phase ph's budget and returns how many it
// got.
func (s *schedule) take(ph phase, n int) int {
	left := s.budget[ph].Add(-int64(n))
	if left >= 0 {
		return n
	}
	return max(0, n+int(left))
}

// reserve claims one request of phase ph's budget.
func (s *schedule) reserve(ph phase) bool { return s.take(ph, 1) == 1 }

// driver is one protocol's load.
type driver interface {
	// run sends requests as sched allows and returns once every worker
	// has stopped and nothing is in flight.
	run(sched *schedule)
	// recorders returns every worker's stats.
	recorders() []*recorder
	close()
}

// resolveTarget turns -addr into an address, preferring IPv4 for a name
// with both, as clients mostly do.
func resolveTarget(c *config) (netip.AddrPort, error) {
	network := "tcp"
	if c.udp() {
		network = "udp"
	}
	host, port, err := net.SplitHostPort(c.addr)
	if err != nil {
		return netip.AddrPort{}, fmt.Errorf("-addr: %w", err)
	}
	p, err := strconv.ParseUint(port, 10, 16)
	if err != nil || p == 0 {
		return netip.AddrPort{}, fmt.Errorf("-addr: invalid port %q", port)
	}
	if a, err := netip.ParseAddr(host); err == nil {
		return netip.AddrPortFrom(a.Unmap(), uint16(p)), nil
	}
	addrs, err := net.DefaultResolver.LookupNetIP(context.Background(), "ip", host)
	if err != nil || len(addrs) == 0 {
		return netip.AddrPort{}, fmt.Errorf("-addr: cannot resolve %q for %s: %v", host, network, err)
	}
	best := addrs[0]
	for _, a := range addrs {
		if a.Unmap().Is4() {
			best = a
			break
		}
	}
	return netip.AddrPortFrom(best.Unmap(), uint16(p)), nil
}

// sample is the state of the server and the tool at one moment.
type sample struct {
	at        time.Time
	server    procSample
	serverErr error
	udp       udpCounters
	udpErr    error
	self      procSample
	selfErr   error
	machine   machineCPU
	machErr   error
}

func takeSample(pid int) sample {
	s := sample{at: time.Now()}
	if pid > 0 {
		p := strconv.Itoa(pid)
		s.server, s.serverErr = readProc(p)
		s.udp, s.udpErr = readUDPCounters(p)
	}
	s.self, s.selfErr = readProc("self")
	s.machine, s.machErr = readMachineCPU()
	return s
}

// probe checks that the tracker answers at all before any load, so that a
// wrong address or a stopped tracker is an immediate error, not a prefill
// that retries until -prefill-timeout. Any answer will do, even a refusal.
func probe(c *config, target netip.AddrPort, m *model) error {
	var err error
	for range 3 {
		if c.udp() {
			err = probeUDP(target, c.timeout)
		} else {
			err = probeHTTP(c, m)
		}
		if err == nil {
			return nil
		}
	}
	return fmt.Errorf("no answer from the tracker at %s: %v", c.addr, err)
}

func probeUDP(target netip.AddrPort, timeout time.Duration) error {
	conn, err := net.DialUDP("udp", nil, net.UDPAddrFromAddrPort(target))
	if err != nil {
		return err
	}
	defer conn.Close()
	if err := conn.SetDeadline(time.Now().Add(timeout)); err != nil {
		return err
	}
	if _, err := conn.Write(appendConnectReq(nil, 0x5EED)); err != nil {
		return err
	}
	buf := make([]byte, 2048)
	for {
		n, err := conn.Read(buf)
		if err != nil {
			return err
		}
		var a udpAnswer
		if parseAnswer(buf[:n], false, &a) == nil && a.txID == 0x5EED {
			return nil
		}
	}
}

func probeHTTP(c *config, m *model) error {
	req := append([]byte("GET "+c.paths("scrape")[0]+"?info_hash="), appendEscaped(nil, m.hashes[0][:])...)
	req = append(req, " HTTP/1.1\r\nHost: "+c.addr+"\r\nUser-Agent: chihaya-bench\r\nConnection: close\r\n\r\n"...)
	conn := newHTTPConn()
	deadline := time.Now().Add(c.timeout)
	if err := conn.dial(c.addr, nil, deadline); err != nil {
		return err
	}
	defer conn.close()
	_, err := conn.roundTrip(req, deadline)
	return err
}

// run carries out a whole run: prefill, warmup, measurement. Cancelling ctx
// ends it early; what was measured until then is reported.
func run(ctx context.Context, c config, stderr io.Writer) (*result, error) {
	target, err := resolveTarget(&c)
	if err != nil {
		return nil, err
	}
	m := newModel(c.torrents, c.peers, c.seeders, c.numWant, c.mix, c.zipf, c.seed)
	if c.pid > 0 {
		if _, err := readProc(strconv.Itoa(c.pid)); err != nil {
			return nil, fmt.Errorf("-pid %d: %w", c.pid, err)
		}
	}
	if err := probe(&c, target, m); err != nil {
		return nil, err
	}
	startSample := takeSample(c.pid)

	var d driver
	if c.udp() {
		if d, err = newUDPDriver(&c, m, target); err != nil {
			return nil, err
		}
	} else {
		d = newHTTPDriver(&c, m, target)
	}
	defer d.close()

	var stopped atomic.Bool
	stop := context.AfterFunc(ctx, func() { stopped.Store(true) })
	defer stop()

	prog := newProgress(stderr, d.recorders(), c.quiet)
	defer prog.stop()

	res := &result{config: &c, target: target}
	if c.prefill {
		start := time.Now()
		sched := newSchedule(true, start, start.Add(c.prefillTimeout), &stopped, c.maxRequests)
		prog.set(sched, start, m.total())
		d.run(sched)
		res.prefillTime = time.Since(start)
		res.prefillTimedOut = !stopped.Load() && time.Now().After(sched.stopAt)
	}

	start := time.Now()
	measureFrom := start.Add(c.warmup)
	stopAt := measureFrom.Add(c.duration)
	sched := newSchedule(false, measureFrom, stopAt, &stopped, c.maxRequests)
	prog.set(sched, start, 0)
	done := make(chan struct{})
	go func() {
		d.run(sched)
		close(done)
	}()

	// The samples are taken at the window's edges, as the workers see
	// them, not when the load happens to end.
	var before, after sample
	if waitUntil(ctx, done, measureFrom) {
		before = takeSample(c.pid)
		waitUntil(ctx, done, stopAt)
		after = takeSample(c.pid)
	}
	<-done
	prog.stop()

	res.interrupted = stopped.Load()
	res.startSample, res.before, res.after = startSample, before, after
	res.endSample = takeSample(c.pid)
	for _, r := range d.recorders() {
		for p := range r.phases {
			res.phases[p].merge(&r.phases[p])
		}
	}
	return res, nil
}

// waitUntil waits for t, the load's end or ctx, and tells whether t came.
func waitUntil(ctx context.Context, done <-chan struct{}, t time.Time) bool {
	timer := time.NewTimer(time.Until(t))
	defer timer.Stop()
	select {
	case <-timer.C:
		return true
	case <-done:
		return !time.Now().Before(t)
	case <-ctx.Done():
		return false
	}
}
