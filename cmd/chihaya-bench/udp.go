package main

import (
	"errors"
	"net"
	"net/netip"
	"sync"
	"time"

	"golang.org/x/net/ipv4"
	"golang.org/x/net/ipv6"
)

// The UDP load: -sockets sockets, each connected to the tracker from its own
// source address, each with a window of -concurrency packets in flight, run
// by one goroutine that writes and reads whole batches (sendmmsg and
// recvmmsg on Linux), so that a packet costs the client a fraction of a
// system call. A socket owns its share of the peers and its connection ID,
// which the tracker binds to the socket's address and port.

const (
	// maxWindow bounds -concurrency: the slot index is the low
	// windowBits of a transaction ID.
	windowBits = 12
	maxWindow  = 1 << windowBits
	// maxReadBatch bounds the answers one read returns, and so the
	// receive buffers a socket holds.
	maxReadBatch = 256
	// answerBufSize fits any answer: numwant is capped well below the
	// 80 × 18 bytes of IPv6 peers that fill a 1500-byte packet.
	answerBufSize = 2048
)

// Slot kinds.
const (
	slotConnect = iota
	slotAnnounce
	slotScrape
)

// batchConn is what ipv4.PacketConn and ipv6.PacketConn have in common:
// their Message types are both aliases of one type.
type batchConn interface {
	ReadBatch(ms []ipv4.Message, flags int) (int, error)
	WriteBatch(ms []ipv4.Message, flags int) (int, error)
}

// udpDriver runs the sockets.
type udpDriver struct {
	sockets []*udpSocket
}

func newUDPDriver(c *config, m *model, target netip.AddrPort) (*udpDriver, error) {
	src := newSources(target, c.spreadSources)
	raddr := net.UDPAddrFromAddrPort(target)
	v6 := !target.Addr().Unmap().Is4()
	d := &udpDriver{}
	// One copy of the URL data for all sockets: with many passkeys they
	// are a string each.
	var paths []string
	if len(c.passkeys) > 0 {
		paths = c.paths("announce")
	}
	for i := range c.sockets {
		conn, err := net.DialUDP("udp", src.udp(ownerAddr(i)), raddr)
		if err != nil {
			d.close()
			return nil, err
		}
		// Room for a whole window of answers; the kernel caps the
		// size at net.core.rmem_max, and a smaller buffer only
		// shows as timeouts, so failure is not fatal.
		_ = conn.SetReadBuffer(1 << 20)
		_ = conn.SetWriteBuffer(1 << 20)
		var bc batchConn = ipv4.NewPacketConn(conn)
		if v6 {
			bc = ipv6.NewPacketConn(conn)
		}
		d.sockets = append(d.sockets, newUDPSocket(c, m, i, conn, bc, v6, paths))
	}
	return d, nil
}

func (d *udpDriver) run(sched *schedule) {
	var wg sync.WaitGroup
	for _, s := range d.sockets {
		wg.Go(func() { s.run(sched) })
	}
	wg.Wait()
}

func (d *udpDriver) recorders() []*recorder {
	rs := make([]*recorder, len(d.sockets))
	for i, s := range d.sockets {
		rs[i] = s.rec
	}
	return rs
}

func (d *udpDriver) close() {
	for _, s := range d.sockets {
		_ = s.conn.Close()
	}
}

// udpSlot is one place in a socket's window.
type udpSlot struct {
	active bool
	kind   uint8
	phase  phase
	// hashes is the number of info hashes a scrape asked for.
	hashes int
	// peer is the announcing peer.
	peer int
	txID uint32
	sent time.Time
	// connID is the connection ID the request carried.
	connID uint64
	buf    []byte
	iov    [1][]byte
}

// udpSocket is one socket and the state of its window.
type udpSocket struct {
	c     *config
	m     *model
	peers *peerSet
	rec   *recorder
	conn  *net.UDPConn
	bc    batchConn
	v6    bool
	// paths are the BEP 41 URL data of announces, one per passkey (peer
	// g's is paths[g % len]), nil without a passkey.
	paths []string

	slots    []udpSlot
	free     []int
	inflight int
	// nextCheck is no later than the earliest timeout of a slot in
	// flight: the window is scanned only from then on.
	nextCheck time.Time
	minBatch  int
	seq       uint32

	connID     uint64
	connIDAt   time.Time
	haveID     bool
	connecting bool
	lastPhase  phase

	queue []int // slots to send
	wmsgs []ipv4.Message
	rmsgs []ipv4.Message
	ans   udpAnswer
}

// newUDPSocket returns socket i of the driver; paths are the announces'
// URL data (see udpSocket.paths).
func newUDPSocket(c *config, m *model, i int, conn *net.UDPConn, bc batchConn, v6 bool, paths []string) *udpSocket {
	window := c.concurrency
	s := &udpSocket{
		c: c, m: m, conn: conn, bc: bc, v6: v6, paths: paths,
		peers:    newPeerSet(m, i, c.sockets, c.seed),
		rec:      &recorder{},
		slots:    make([]udpSlot, window),
		free:     make([]int, 0, window),
		queue:    make([]int, 0, window),
		wmsgs:    make([]ipv4.Message, window),
		rmsgs:    make([]ipv4.Message, min(window, maxReadBatch)),
		minBatch: max(1, window/4),
	}
	for j := window - 1; j >= 0; j-- {
		s.slots[j].buf = make([]byte, 0, 1500)
		s.free = append(s.free, j)
	}
	for j := range s.rmsgs {
		s.rmsgs[j].Buffers = [][]byte{make([]byte, answerBufSize)}
	}
	return s
}

// run drives the socket through sched: it fills the window while the
// schedule allows, and returns once nothing is in flight any more, at most
// -timeout after the schedule ended.
func (s *udpSocket) run(sched *schedule) {
	exhausted := false
	for {
		now := time.Now()
		s.expire(now)
		ph := sched.phaseAt(now)
		sending := ph != phaseDone && !exhausted
		if sending {
			s.lastPhase = ph
			exhausted = s.fill(sched, ph, now)
			s.flush()
		}
		if s.inflight == 0 {
			if !sending || exhausted {
				return
			}
			// Nothing could be sent, for want of an answer to
			// wait for: a failed write. Try again shortly.
			time.Sleep(10 * time.Millisecond)
			continue
		}
		deadline := s.nextCheck
		if sending {
			deadline = earliest(deadline, sched.stopAt)
		}
		// Wake up now and then whatever happens, to see an
		// interrupt.
		deadline = earliest(deadline, now.Add(100*time.Millisecond))
		if err := s.conn.SetReadDeadline(deadline); err != nil {
			s.rec.phases[s.lastPhase].fail(transportClass(err))
			return
		}
		n, err := s.bc.ReadBatch(s.rmsgs, 0)
		recvAt := time.Now()
		for i := range n {
			s.handle(s.rmsgs[i].Buffers[0][:s.rmsgs[i].N], recvAt)
		}
		if err != nil && !isTimeout(err) {
			// An ICMP error from the tracker's host (nothing
			// listening) surfaces here; the packets it concerns
			// time out on their own.
			s.rec.phases[s.lastPhase].fail(transportClass(err))
			time.Sleep(10 * time.Millisecond)
		}
	}
}

func isTimeout(err error) bool {
	var ne net.Error
	return errors.As(err, &ne) && ne.Timeout()
}

func earliest(a, b time.Time) time.Time {
	if b.Before(a) {
		return b
	}
	return a
}

// fill queues requests into the free slots and tells whether the schedule
// has nothing more for this socket (prefill done, budget spent, no peers).
func (s *udpSocket) fill(sched *schedule, ph phase, now time.Time) bool {
	s.queue = s.queue[:0]
	if !s.connecting && len(s.free) > 0 && (!s.haveID || now.Sub(s.connIDAt) >= s.c.connIDMaxAge) {
		// A renewal goes out while the old ID is still used: the
		// tracker accepts it for longer than a client keeps it.
		s.connecting = true
		i := s.take(slotConnect, ph, now)
		s.slots[i].buf = appendConnectReq(s.slots[i].buf[:0], s.slots[i].txID)
	}
	if !s.haveID {
		return false
	}
	// Sending in batches: a window refilled one answer at a time would
	// cost a system call per packet.
	if len(s.free) < s.minBatch && s.inflight > 0 {
		return false
	}
	scrape := s.c.scrape() && ph != phasePrefill
	if !scrape && s.peers.n == 0 {
		return true
	}
	granted := sched.take(ph, len(s.free))
	if granted == 0 {
		return true
	}
	st := &s.rec.phases[ph]
	for range granted {
		var g int
		var ev event
		switch {
		case ph == phasePrefill:
			var ok bool
			if g, ok = s.peers.nextPrefill(); !ok {
				return true
			}
			ev = evStarted
		case scrape:
			i := s.take(slotScrape, ph, now)
			sl := &s.slots[i]
			sl.hashes = s.c.scrapeHashes
			sl.buf = appendScrapeHeader(sl.buf[:0], s.connID, sl.txID)
			for range sl.hashes {
				h := s.m.hashes[s.m.pickTorrent(s.peers.rng)]
				sl.buf = append(sl.buf, h[:]...)
			}
			st.sent.Add(1)
			continue
		default:
			var ok bool
			if g, ev, ok = s.peers.nextAnnounce(); !ok {
				// Every peer drawn is in flight; more
				// answers will free some.
				return false
			}
		}
		i := s.take(slotAnnounce, ph, now)
		sl := &s.slots[i]
		sl.peer = g
		numWant := int32(s.m.numWant)
		if ev == evStopped {
			numWant = 0
		}
		a := udpAnnounce{
			infoHash: s.m.hashes[s.m.torrentOf(g)],
			peerID:   s.m.peerID(g),
			left:     s.m.left(g, ev),
			event:    ev,
			key:      s.m.key(g),
			numWant:  numWant,
			port:     s.m.port(g),
			path:     s.pathOf(g),
		}
		sl.buf = appendAnnounceReq(sl.buf[:0], s.connID, sl.txID, &a)
		st.sent.Add(1)
	}
	return false
}

// pathOf returns the URL data of peer g's announces.
func (s *udpSocket) pathOf(g int) string {
	if len(s.paths) == 0 {
		return ""
	}
	return s.paths[g%len(s.paths)]
}

// take claims a free slot for a request of kind sent now and queues it.
func (s *udpSocket) take(kind uint8, ph phase, now time.Time) int {
	i := s.free[len(s.free)-1]
	s.free = s.free[:len(s.free)-1]
	s.seq++
	sl := &s.slots[i]
	*sl = udpSlot{
		active: true, kind: kind, phase: ph, peer: -1,
		txID:   s.seq<<windowBits | uint32(i),
		sent:   now,
		connID: s.connID,
		buf:    sl.buf,
	}
	if s.inflight == 0 || now.Add(s.c.timeout).Before(s.nextCheck) {
		s.nextCheck = now.Add(s.c.timeout)
	}
	s.inflight++
	s.queue = append(s.queue, i)
	return i
}

// release frees slot i.
func (s *udpSocket) release(i int) {
	sl := &s.slots[i]
	if sl.kind == slotAnnounce && sl.peer >= 0 {
		s.peers.release(sl.peer)
	}
	if sl.kind == slotConnect {
		s.connecting = false
	}
	sl.active = false
	s.inflight--
	s.free = append(s.free, i)
}

// flush writes the queued slots, in as few system calls as the kernel
// allows. The send time taken in fill is close enough: building a batch
// takes microseconds.
func (s *udpSocket) flush() {
	msgs := s.wmsgs[:len(s.queue)]
	for j, i := range s.queue {
		sl := &s.slots[i]
		sl.iov[0] = sl.buf
		msgs[j] = ipv4.Message{Buffers: sl.iov[:]}
	}
	for off := 0; off < len(msgs); {
		n, err := s.bc.WriteBatch(msgs[off:], 0)
		if err != nil {
			class := transportClass(err)
			for _, i := range s.queue[off:] {
				s.rec.phases[s.slots[i].phase].fail(class)
				s.release(i)
			}
			break
		}
		off += n
	}
	s.queue = s.queue[:0]
}

// expire fails the slots whose answer is overdue: a lost packet.
func (s *udpSocket) expire(now time.Time) {
	if s.inflight == 0 || now.Before(s.nextCheck) {
		return
	}
	next := now.Add(s.c.timeout)
	for i := range s.slots {
		sl := &s.slots[i]
		if !sl.active {
			continue
		}
		due := sl.sent.Add(s.c.timeout)
		if now.Before(due) {
			next = earliest(next, due)
			continue
		}
		class := "timeout"
		if sl.kind == slotConnect {
			class = "timeout (connect)"
		}
		s.rec.phases[sl.phase].fail(class)
		s.release(i)
	}
	s.nextCheck = next
}

// handle matches one answer to its slot by transaction ID.
func (s *udpSocket) handle(p []byte, recvAt time.Time) {
	if len(p) < 8 {
		// Too short to name its request.
		s.rec.phases[s.lastPhase].late++
		return
	}
	err := parseAnswer(p, s.v6, &s.ans)
	i := int(s.ans.txID & (maxWindow - 1))
	if i >= len(s.slots) || !s.slots[i].active || s.slots[i].txID != s.ans.txID {
		// The answer to a request that already timed out.
		s.rec.phases[s.lastPhase].late++
		return
	}
	sl := &s.slots[i]
	st := &s.rec.phases[sl.phase]
	defer s.release(i)
	a := &s.ans
	switch {
	case err != nil:
		st.fail("malformed answer")
	case a.action == actError:
		msg := string(a.msg[:min(len(a.msg), 100)])
		// An ID the tracker no longer takes: get a new one, unless
		// that happened already since this request left.
		if (msg == "connection ID expired" || msg == "invalid connection ID") && sl.connID == s.connID {
			s.haveID = false
		}
		if sl.kind == slotConnect {
			st.fail("udp error (connect): " + msg)
		} else {
			st.fail("udp error: " + msg)
		}
	case sl.kind == slotConnect && a.action == actConnect:
		s.connID, s.connIDAt, s.haveID = a.connID, sl.sent, true
		st.connects++
	case sl.kind == slotAnnounce && a.action == actAnnounce:
		st.success(recvAt.Sub(sl.sent))
		st.swarm(1, uint64(a.seeders), uint64(a.leechers))
		st.peerList(a.peers)
	case sl.kind == slotScrape && a.action == actScrape && a.scraped == sl.hashes:
		st.success(recvAt.Sub(sl.sent))
		st.swarm(a.scraped, a.scrapeSeeders, a.scrapeLeechers)
	default:
		st.fail("malformed answer")
	}
}
