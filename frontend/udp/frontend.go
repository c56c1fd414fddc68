// Package udp is the UDP frontend: BEP 15's connect, announce and scrape,
// with BEP 41's URL data for passkeys, on IPv4 and IPv6. It turns packets
// into bittorrent requests for the tracker logic and writes the answers; it
// knows nothing of users or storage.
//
// Each reader goroutine owns its buffers and handles the packets it reads
// itself, so the number of goroutines is fixed and a flood costs dropped
// packets in the kernel, never memory here.
package udp

import (
	"context"
	"encoding/binary"
	"errors"
	"log/slog"
	"net"
	"net/netip"
	"runtime"
	"sync"
	"time"

	"github.com/chihaya/chihaya/bittorrent"
)

// Tracker is the logic the frontend serves.
type Tracker interface {
	Announce(ctx context.Context, req *bittorrent.AnnounceRequest, resp *bittorrent.AnnounceResponse) error
	Scrape(ctx context.Context, req *bittorrent.ScrapeRequest, resp *bittorrent.ScrapeResponse) error
}

// Config configures the frontend.
type Config struct {
	// Addr is the listen address; ":6969" listens on both families.
	Addr string
	// Readers is the number of reading goroutines; 0 means GOMAXPROCS.
	Readers int
	// SpareProc raises GOMAXPROCS to one more than Readers when the
	// readers wait in the kernel (see spareProc), until Shutdown.
	SpareProc bool
	// Batch is the most packets a reader takes in one read and answers
	// in one write (on Linux; elsewhere a batch is one packet). 0 picks
	// by the number of readers per CPU, see defaultBatch.
	Batch int
	// ConnIDKey signs connection IDs; the zero key means a random one.
	ConnIDKey [16]byte
	// ConnIDLifetime is how long a connection ID is accepted.
	ConnIDLifetime time.Duration
	// AllowIPParam believes the IPv4 address an announce names.
	AllowIPParam bool
	// MaxNumWant caps the peers of one answer.
	MaxNumWant int
	// MaxScrapeInfoHashes caps the hashes of one scrape.
	MaxScrapeInfoHashes int
	// Now is the clock; nil means time.Now.
	Now func() time.Time
	// Observer, when set, is told of every connect, announce and scrape.
	Observer Observer
}

// Observer is told of each request: its action, its error and, for one
// request in timingSample, how long it took (metrics.Observer is one).
type Observer interface {
	Observe(action string, err error, took time.Duration)
	Count(action string, err error)
}

// timingSample is how many requests share one timing: the first of every
// timingSample a reader handles is timed. Two clock reads a packet were a
// twentieth of the server's CPU under load; the rest of a batch takes the
// time read when it arrived.
const timingSample = 16

// Frontend serves the tracker over UDP.
type Frontend struct {
	tracker Tracker
	cfg     Config
	ids     *connIDs
	log     *slog.Logger
	// badRequests is the tracker, when it counts bad requests.
	badRequests badRequestCounter
	// warmer is the tracker, when it takes hints of coming requests.
	warmer warmer

	sock *socket
	wg   sync.WaitGroup
	// procs is GOMAXPROCS before ListenAndServe raised it, 0 when it
	// did not; raised is what it set.
	procs, raised int
	// yield says the readers pass through the scheduler; see serve.
	yield bool
}

// New returns a frontend for t.
func New(t Tracker, cfg Config, log *slog.Logger) *Frontend {
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	f := &Frontend{tracker: t, cfg: cfg, ids: newConnIDs(cfg.ConnIDKey, cfg.ConnIDLifetime), log: log}
	f.badRequests, _ = t.(badRequestCounter)
	f.warmer, _ = t.(warmer)
	return f
}

// badRequestCounter is implemented by a tracker that limits the bad
// requests of each address (tracker.Tracker): the frontend tells it of the
// packets it could not parse, and answers with the error it returns.
type badRequestCounter interface {
	Malformed(source netip.Addr, err error) error
}

// malformed counts a packet the frontend could not parse against its
// source's bad-request budget, when the tracker keeps one. It is called
// only after the connection ID was checked, so the source is one that
// answered the tracker and a forged one cannot spend another's budget.
func (f *Frontend) malformed(source netip.Addr, err error) error {
	if f.badRequests == nil {
		return err
	}
	return f.badRequests.Malformed(source, err)
}

// ListenAndServe opens the socket and starts the readers. It returns once
// the socket is open.
func (f *Frontend) ListenAndServe() (net.Addr, error) {
	addr, err := net.ResolveUDPAddr("udp", f.cfg.Addr)
	if err != nil {
		return nil, err
	}
	readers := f.cfg.Readers
	if readers <= 0 {
		readers = runtime.GOMAXPROCS(0)
	}
	sock, err := listen(addr, readers <= runtime.GOMAXPROCS(0))
	if err != nil {
		return nil, err
	}
	size := f.cfg.Batch
	if size <= 0 {
		size = defaultBatch(readers)
	}
	batches := make([]*batch, readers)
	for i := range batches {
		if batches[i], err = sock.newBatch(size); err != nil {
			sock.shutdown()
			sock.release()
			return nil, err
		}
	}
	f.sock = sock
	if sock.blocking() && f.cfg.SpareProc {
		f.spareProc(readers)
	}
	// Without a P to spare, the monitor's preemption is what lets the
	// other goroutines (the HTTP frontend's) onto the readers' Ps; a
	// yield, which runs only what is queued and does not poll the
	// network, would keep them away.
	f.yield = sock.blocking() && runtime.GOMAXPROCS(0) > readers
	for _, b := range batches {
		f.wg.Add(1)
		go f.serve(b)
	}
	return sock.addr, nil
}

// spareProc makes GOMAXPROCS at least one more than readers that wait in
// the kernel. A goroutine in a system call keeps its P (the runtime's right
// to run Go code) only while some other P is idle: when none is, the
// runtime's monitor hands the P to another thread after 20 µs, and the
// reader must take it back when packets come. A reader waits whenever the
// socket runs dry, which at full load on one core is thousands of times a
// second; measured there, the hand-overs made 18,000 context switches a
// second and cost a fifth of the server's CPU. With a spare P the readers
// keep theirs.
//
// The spare P has a cost where other goroutines come and go, as the HTTP
// frontend's do: each one made ready wakes a thread to run it on the
// spare P, which on as few CPUs as Ps takes CPU from the rest. On one
// core, measured: UDP announces alone +29 % per CPU-second, HTTP announces
// alone (UDP idle) −10 %; with both at once, UDP 162–188k → 266–269k
// announces a second and HTTP 61–66k → 66–67k.
// Hence a setting.
func (f *Frontend) spareProc(readers int) {
	procs := runtime.GOMAXPROCS(0)
	if procs > readers {
		return
	}
	f.procs, f.raised = procs, readers+1
	runtime.GOMAXPROCS(f.raised)
	f.log.Info("GOMAXPROCS raised so that readers waiting in the kernel keep their P", "from", procs, "to", f.raised)
}

// tuneBuffers sizes the socket's buffers. A larger receive buffer absorbs
// bursts; the kernel may cap it, and a smaller one only means drops
// sooner, so failure is not fatal.
func tuneBuffers(conn *net.UDPConn) {
	_ = conn.SetReadBuffer(8 << 20)
	_ = conn.SetWriteBuffer(4 << 20)
}

// maxBatch is the default batch of a reader per CPU: past some dozens of
// packets per system call the call's own cost no longer shows.
const maxBatch = 64

// defaultBatch is the batch size of each of readers goroutines. A reader
// answers the packets it holds one after the other, so with more readers
// than CPUs, which is for trackers whose cache is a network round trip
// away, a large batch would have one reader wait out many round trips in a
// row while the others sit idle: the packets in hand stay about maxBatch
// per CPU, shared by its readers.
func defaultBatch(readers int) int {
	perCPU := max(readers/runtime.GOMAXPROCS(0), 1)
	return max(maxBatch/perCPU, 1)
}

// Shutdown closes the socket and waits for the readers to finish the
// packets they hold.
func (f *Frontend) Shutdown(ctx context.Context) error {
	if f.sock == nil {
		return nil
	}
	err := f.sock.shutdown()
	done := make(chan struct{})
	go func() {
		f.wg.Wait()
		f.sock.release()
		// Put back what ListenAndServe raised, unless someone has
		// set it since.
		if f.procs > 0 && runtime.GOMAXPROCS(0) == f.raised {
			runtime.GOMAXPROCS(f.procs)
		}
		close(done)
	}()
	select {
	case <-done:
		return err
	case <-ctx.Done():
		return ctx.Err()
	}
}

// worker is one reader's reusable state.
type worker struct {
	out      []byte
	announce bittorrent.AnnounceRequest
	response bittorrent.AnnounceResponse
	scrape   bittorrent.ScrapeRequest
	files    bittorrent.ScrapeResponse
	asked    []bittorrent.InfoHash
	// coming holds the info hashes of a batch's announces and scrapes,
	// peers the announcing peers' ids (a zero id for a scrape's hash)
	// and passkeys their passkeys, views of the batch's packets ("" for
	// none); see warm.
	coming   []bittorrent.InfoHash
	peers    []bittorrent.PeerID
	passkeys []string
	// now is the time the packet in hand is handled at: when its batch
	// arrived, or when it began when it is a timed one.
	now time.Time
	// handled counts the packets the worker handled, to pick the timed
	// ones; timed says the packet in hand is one.
	handled uint32
	timed   bool
}

// answerCap is the room an answer buffer starts with: an announce answer
// with 80 IPv6 peers, the most that fit a 1500-byte packet. A larger
// answer grows its buffer once.
const answerCap = 20 + 80*18

func newWorker() *worker {
	return &worker{out: make([]byte, 0, answerCap)}
}

func (f *Frontend) serve(b *batch) {
	defer f.wg.Done()
	w := newWorker()
	ctx := context.Background()
	var yielded time.Time
	for {
		n, err := b.read()
		if err != nil {
			if isClosed(err) {
				return
			}
			f.log.Warn("udp read failed", "err", err)
			// A persistent error must not become a busy loop.
			time.Sleep(10 * time.Millisecond)
			continue
		}
		w.now = f.cfg.Now()
		f.warm(w, b, n)
		for i := range n {
			p, from := b.packet(i)
			if len(p) > maxPacket {
				continue
			}
			// The answer is built straight into the batch's
			// buffer for it.
			w.out = b.answerBuf()
			if out := f.handle(ctx, w, p, from); out != nil {
				b.answer(i, out)
			}
		}
		if err := b.flush(); err != nil && !isClosed(err) {
			f.log.Debug("udp write failed", "err", err)
		}
		// The runtime's monitor preempts a goroutine that has run
		// 10 ms without a pass through the scheduler, and the reader
		// otherwise never makes one: it waits in system calls, not in
		// the scheduler. Caught in one, it loses its P to another
		// thread, and the monitor goes back to waking every 20 µs. A
		// yield well within the 10 ms keeps both away; measured, the
		// monitor then took 0.3 % of the CPU instead of 3.5 %. Not
		// more often: a yield wakes a thread for the spare P, which
		// may take the reader over (about 10 µs each).
		if f.yield && w.now.Sub(yielded) >= yieldEvery {
			runtime.Gosched()
			yielded = w.now
		}
	}
}

// yieldEvery is how often a reader passes through the scheduler; see serve.
const yieldEvery = 5 * time.Millisecond

// warmer is a Tracker that takes a hint of the announces and scrapes to come
// (tracker.Tracker); see cache.Warmer.
type warmer interface {
	Warm(hashes []bittorrent.InfoHash, peers []bittorrent.PeerID, passkeys []string)
}

// warm hands the info hashes of the batch's announces and scrapes, and
// the announcing peers' ids and passkeys, to the tracker before any is
// answered, so that their swarms (and a private tracker's users and
// sessions) are fetched from memory together. The packets are not checked
// yet: a hint for a forged or malformed one only reads memory, and no more
// of a scrape's hashes are hinted than it may ask about.
func (f *Frontend) warm(w *worker, b *batch, n int) {
	if f.warmer == nil {
		return
	}
	w.coming, w.peers, w.passkeys = w.coming[:0], w.peers[:0], w.passkeys[:0]
	for i := range n {
		p, _ := b.packet(i)
		if h, id, ok := announced(p); ok {
			w.coming = append(w.coming, h)
			w.peers = append(w.peers, id)
			w.passkeys = append(w.passkeys, announcedPasskey(p))
			continue
		}
		hashes := scrapedHashes(p, f.cfg.MaxScrapeInfoHashes)
		for len(hashes) > 0 {
			w.coming = append(w.coming, bittorrent.InfoHash(hashes))
			w.peers = append(w.peers, bittorrent.PeerID{})
			w.passkeys = append(w.passkeys, "")
			hashes = hashes[20:]
		}
	}
	f.warmer.Warm(w.coming, w.peers, w.passkeys)
}

func isClosed(err error) bool {
	return errors.Is(err, net.ErrClosed)
}

// handle answers one packet from `from` of a batch that arrived at w.now;
// nil means no answer. The answer is built in w.out and is valid until the
// next call with w.
func (f *Frontend) handle(ctx context.Context, w *worker, p []byte, from netip.AddrPort) []byte {
	w.timed = w.handled%timingSample == 0
	w.handled++
	if w.timed {
		w.now = f.cfg.Now()
	}
	if len(p) < headerLen {
		// Too short to carry a transaction ID to answer with.
		return nil
	}
	h := parseHeader(p)
	// A dual-stack socket reports IPv4 clients as IPv4-mapped IPv6;
	// the rest of the tracker sees plain IPv4.
	client := netip.AddrPortFrom(from.Addr().Unmap(), from.Port())
	now := w.now

	if h.action == actionConnect {
		if h.connID != protocolID {
			// Not our protocol: answering could reflect traffic.
			return nil
		}
		f.observe(w, "connect", nil)
		return appendConnect(w.out[:0], h.txID, f.ids.issue(client, now))
	}
	action := "unknown"
	switch h.action {
	case actionAnnounce:
		action = "announce"
	case actionScrape:
		action = "scrape"
	}
	switch f.ids.check(h.connID, client, now) {
	case connIDExpired:
		f.observe(w, action, errConnIDExpired)
		return appendError(w.out[:0], h.txID, string(errConnIDExpired), len(p))
	case connIDInvalid:
		f.observe(w, action, errConnIDInvalid)
		return appendError(w.out[:0], h.txID, string(errConnIDInvalid), len(p))
	}

	var err error
	switch h.action {
	case actionAnnounce:
		var out []byte
		out, err = f.serveAnnounce(ctx, w, p, client)
		f.observe(w, action, err)
		if err == nil {
			return out
		}
	case actionScrape:
		var out []byte
		out, err = f.serveScrape(ctx, w, p, client)
		f.observe(w, action, err)
		if err == nil {
			return out
		}
	default:
		err = f.malformed(client.Addr(), bittorrent.ClientError("unknown action"))
		f.observe(w, action, err)
	}
	var ce bittorrent.ClientError
	if !errors.As(err, &ce) {
		f.log.Error("udp request failed", "from", from.String(), "action", h.action, "err", err)
		ce = "internal tracker error, try again later"
	}
	return appendError(w.out[:0], h.txID, string(ce), maxPacket)
}

// The errors of connection IDs; their text is the error packet's message.
const (
	errConnIDExpired = bittorrent.ClientError("connection ID expired")
	errConnIDInvalid = bittorrent.ClientError("invalid connection ID")
)

// observe reports the request w handled to the observer, timed from w.now
// by the frontend's clock (so tests with a fake clock report zero
// durations rather than nonsense) when it is a timed one.
func (f *Frontend) observe(w *worker, action string, err error) {
	switch {
	case f.cfg.Observer == nil:
	case w.timed:
		end := f.cfg.Now()
		f.cfg.Observer.Observe(action, err, end.Sub(w.now))
		w.now = end
	default:
		f.cfg.Observer.Count(action, err)
	}
}

func (f *Frontend) serveAnnounce(ctx context.Context, w *worker, p []byte, client netip.AddrPort) ([]byte, error) {
	req, resp := &w.announce, &w.response
	req.Reset()
	resp.Reset()
	named, err := parseAnnounce(p, req)
	if err != nil {
		return nil, f.malformed(client.Addr(), err)
	}
	source := client.Addr()
	req.Source = source
	v6 := source.Is6()
	if v6 {
		req.IPv6 = source
	} else {
		req.IPv4 = source
		// The IP field is an IPv4 address; BEP 15 has IPv6 clients
		// leave it out, so it is read only over IPv4.
		if named.IsValid() && f.cfg.AllowIPParam {
			req.IPv4 = named
		}
	}
	if int(req.NumWant) > f.cfg.MaxNumWant {
		req.NumWant = int32(f.cfg.MaxNumWant)
	}
	err = f.tracker.Announce(ctx, req, resp)
	// The passkey is a view of the packet (passkeyFromPath).
	req.Passkey = ""
	if err != nil {
		return nil, err
	}
	// numwant -1 takes the tracker's default, which may exceed what fits
	// a UDP answer.
	resp.Peers4.Truncate(f.cfg.MaxNumWant)
	resp.Peers6.Truncate(f.cfg.MaxNumWant)
	w.out = appendAnnounce(w.out[:0], binary.BigEndian.Uint32(p[12:16]), resp, v6)
	return w.out, nil
}

func (f *Frontend) serveScrape(ctx context.Context, w *worker, p []byte, client netip.AddrPort) ([]byte, error) {
	body := p[headerLen:]
	if len(body) == 0 || len(body)%20 != 0 {
		return nil, f.malformed(client.Addr(), bittorrent.ClientError("malformed scrape: info hashes must be 20 bytes each"))
	}
	n := len(body) / 20
	if n > f.cfg.MaxScrapeInfoHashes {
		return nil, f.malformed(client.Addr(), bittorrent.ClientError("too many info hashes in one scrape"))
	}
	// The tracker sorts the hashes it is given, but the answer must
	// follow the order asked, so it gets a copy.
	w.asked = w.asked[:0]
	for i := range n {
		w.asked = append(w.asked, bittorrent.InfoHash(body[i*20:i*20+20]))
	}
	req := &w.scrape
	*req = bittorrent.ScrapeRequest{InfoHashes: append(req.InfoHashes[:0], w.asked...), Source: client.Addr()}
	if err := f.tracker.Scrape(ctx, req, &w.files); err != nil {
		return nil, err
	}
	w.out = appendScrape(w.out[:0], binary.BigEndian.Uint32(p[12:16]), w.asked, w.files.Files)
	return w.out, nil
}
