package main

import (
	"errors"
	"io"
	"net"
	"os"
	"sync/atomic"
	"syscall"
	"time"
)

// phase is the part of a run a request was sent in. A request and its
// outcome are counted in the phase it was sent in, even when the answer
// comes after the phase ended, so that every measured request has exactly
// one outcome.
type phase uint8

const (
	phasePrefill phase = iota
	phaseWarmup
	phaseMeasure
	numPhases
	// phaseDone is past the measured window: nothing more is sent.
	phaseDone = numPhases
)

// String names the phase for the progress line.
func (p phase) String() string {
	return [...]string{"prefill", "warmup", "measure", "done"}[p]
}

// phaseStats are one worker's counts for one phase. The three counters are
// atomic because the progress line reads them while the worker runs; the
// rest belongs to the worker alone and is read only after it stopped.
type phaseStats struct {
	sent, ok, failed atomic.Uint64

	latency histogram
	errs    errorClasses
	// connects counts UDP connection IDs obtained.
	connects uint64
	// late counts UDP answers that came after their request had timed
	// out (already counted as a timeout) or that matched no request.
	late uint64

	// What the good answers said, to tell a tracker that answers from
	// one that answers well: the seeders and leechers of each swarm
	// an answer described, and the peers each announce answer listed.
	swarms, seeders, leechers uint64
	announces, peers          uint64
}

// swarm records the summed counts an answer gave for n swarms.
func (s *phaseStats) swarm(n int, seeders, leechers uint64) {
	s.swarms += uint64(n)
	s.seeders += seeders
	s.leechers += leechers
}

// peerList records the length of an announce answer's peer list.
func (s *phaseStats) peerList(n int) {
	s.announces++
	s.peers += uint64(n)
}

// success records an answered request.
func (s *phaseStats) success(lat time.Duration) {
	s.ok.Add(1)
	s.latency.record(lat)
}

// fail records a request that ended in error class class.
func (s *phaseStats) fail(class string) {
	s.failed.Add(1)
	s.errs.add(class, 1)
}

// merge adds o into s; neither may be in use by a worker.
func (s *phaseStats) merge(o *phaseStats) {
	s.sent.Add(o.sent.Load())
	s.ok.Add(o.ok.Load())
	s.failed.Add(o.failed.Load())
	s.latency.merge(&o.latency)
	for k, v := range o.errs.m {
		s.errs.add(k, v)
	}
	s.connects += o.connects
	s.late += o.late
	s.swarms += o.swarms
	s.seeders += o.seeders
	s.leechers += o.leechers
	s.announces += o.announces
	s.peers += o.peers
}

// recorder holds one worker's stats for every phase.
type recorder struct {
	phases [numPhases]phaseStats
}

// maxErrorClasses bounds the distinct error texts kept, since a
// misbehaving server could otherwise grow the map without end.
const maxErrorClasses = 64

// errorClasses counts errors by class.
type errorClasses struct {
	m map[string]uint64
}

func (e *errorClasses) add(class string, n uint64) {
	if e.m == nil {
		e.m = make(map[string]uint64)
	}
	if _, ok := e.m[class]; !ok && len(e.m) >= maxErrorClasses {
		class = "other (too many distinct errors)"
	}
	e.m[class] += n
}

// transportClass names the error class of a transport error. Error texts name
// addresses and ports, which would make every error its own class, so
// errors are reduced to their kind.
func transportClass(err error) string {
	var ne net.Error
	switch {
	case errors.Is(err, os.ErrDeadlineExceeded) || errors.As(err, &ne) && ne.Timeout():
		return "timeout"
	case errors.Is(err, syscall.ECONNREFUSED):
		return "transport: connection refused"
	case errors.Is(err, syscall.ECONNRESET):
		return "transport: connection reset"
	case errors.Is(err, syscall.EPIPE):
		return "transport: broken pipe"
	case errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF):
		return "transport: connection closed by the server"
	case errors.Is(err, syscall.EADDRNOTAVAIL) || errors.Is(err, syscall.EADDRINUSE):
		return "transport: no free local address/port"
	case errors.Is(err, syscall.EMFILE) || errors.Is(err, syscall.ENFILE):
		return "transport: too many open files"
	}
	var errno syscall.Errno
	if errors.As(err, &errno) {
		return "transport: " + errno.Error()
	}
	return "transport: other"
}
