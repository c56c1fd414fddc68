package main

import (
	"bytes"
	"errors"
	"io"
	"net"
	"net/netip"
	"strconv"
	"sync"
	"syscall"
	"time"
)

// The HTTP load: -concurrency workers, each with one request in flight on
// its own connection and its own share of the peers.

// httpDriver runs the HTTP workers.
type httpDriver struct {
	workers []*httpWorker
}

func newHTTPDriver(c *config, m *model, target netip.AddrPort) *httpDriver {
	src := newSources(target, c.spreadSources)
	d := &httpDriver{}
	// One copy of the paths for all workers: with many passkeys they
	// are a string each.
	annPaths, scrPaths := c.paths("announce"), c.paths("scrape")
	for i := range c.concurrency {
		d.workers = append(d.workers, &httpWorker{
			c:        c,
			m:        m,
			src:      src,
			local:    src.tcp(ownerAddr(i)),
			peers:    newPeerSet(m, i, c.concurrency, c.seed),
			rec:      &recorder{},
			conn:     newHTTPConn(),
			annPaths: annPaths,
			scrPaths: scrPaths,
		})
	}
	return d
}

// run runs every worker through sched and returns when all have stopped.
func (d *httpDriver) run(sched *schedule) {
	var wg sync.WaitGroup
	for _, w := range d.workers {
		wg.Go(func() { w.run(sched) })
	}
	wg.Wait()
}

func (d *httpDriver) recorders() []*recorder {
	rs := make([]*recorder, len(d.workers))
	for i, w := range d.workers {
		rs[i] = w.rec
	}
	return rs
}

func (d *httpDriver) close() {
	for _, w := range d.workers {
		w.conn.close()
	}
}

// httpWorker sends one request at a time.
type httpWorker struct {
	c     *config
	m     *model
	src   sources
	local net.Addr // the keep-alive connection's source address
	peers *peerSet
	rec   *recorder
	conn  *httpConn

	// annPaths and scrPaths are the request paths, one per passkey:
	// peer g announces on annPaths[g % len].
	annPaths, scrPaths []string
	scrapes            int // scrapes built, to take turns with the passkeys
	req                []byte
	// cur is the stats of the request in flight.
	cur *phaseStats
}

func (w *httpWorker) run(sched *schedule) {
	for {
		start := time.Now()
		ph := sched.phaseAt(start)
		if ph == phaseDone || !sched.reserve(ph) {
			return
		}
		// The prefill always keeps connections alive: it is not
		// measured, and redialling would only make it slower.
		perRequest := w.c.connPerRequest && ph != phasePrefill
		local := w.local
		var g int
		var ev event
		scrape := w.c.scrape() && ph != phasePrefill
		switch {
		case ph == phasePrefill:
			var ok bool
			if g, ok = w.peers.nextPrefill(); !ok {
				return
			}
			ev = evStarted
		case scrape:
			w.req = w.appendScrape(w.req[:0], perRequest)
			if perRequest && w.peers.n > 0 {
				local = w.src.tcp(peerAddr(w.peers.global(w.peers.rng.IntN(w.peers.n))))
			}
		default:
			var ok bool
			// One request in flight per worker: the peer the
			// previous one used is released, so a pick succeeds
			// unless the worker owns no peer at all.
			if g, ev, ok = w.peers.nextAnnounce(); !ok {
				return
			}
		}
		if !scrape {
			w.req = w.appendAnnounce(w.req[:0], g, ev, perRequest)
			if perRequest {
				local = w.src.tcp(peerAddr(g))
			}
		}

		st := &w.rec.phases[ph]
		w.cur = st
		st.sent.Add(1)
		class, dialFailed := w.exchange(local, perRequest, scrape, start.Add(w.c.timeout))
		if class == "" {
			st.success(time.Since(start))
		} else {
			st.fail(class)
		}
		if !scrape {
			w.peers.release(g)
		}
		if dialFailed {
			// A tracker that refuses connections does so at once;
			// a short pause keeps the loop from spinning through
			// its request budget in a few seconds.
			time.Sleep(10 * time.Millisecond)
		}
	}
}

// exchange sends w.req and returns the error class of the outcome, "" for
// a good answer, and whether it failed to connect at all.
func (w *httpWorker) exchange(local net.Addr, perRequest, scrape bool, deadline time.Time) (string, bool) {
	if perRequest {
		w.conn.close()
	}
	reused := w.conn.connected()
	if !reused {
		if err := w.conn.dial(w.c.addr, local, deadline); err != nil {
			return transportClass(err), true
		}
	}
	resp, err := w.conn.roundTrip(w.req, deadline)
	if reused && staleConn(err) {
		// A kept-alive connection the server had already closed, as
		// it may when idle: like any client, try once on a new one.
		if err := w.conn.dial(w.c.addr, local, deadline); err != nil {
			return transportClass(err), true
		}
		resp, err = w.conn.roundTrip(w.req, deadline)
	}
	if perRequest {
		w.conn.close()
	}
	if err != nil {
		if errors.Is(err, errBadResponse) {
			return "malformed HTTP response", false
		}
		return transportClass(err), false
	}
	class := classifyHTTP(resp.status, resp.body, scrape)
	if class == "" {
		w.noteAnswer(resp.body, scrape)
	}
	return class, false
}

// noteAnswer records what a good answer said: the counts of each swarm
// (complete and incomplete, one pair per swarm in a scrape) and, for an
// announce, the length of the compact peer list.
func (w *httpWorker) noteAnswer(body []byte, scrape bool) {
	st := w.cur
	for rest := body; ; {
		seeders, ok1 := bencodedInt(rest, "8:completei")
		leechers, ok2 := bencodedInt(rest, "10:incompletei")
		if !ok1 || !ok2 {
			break
		}
		st.swarm(1, uint64(seeders), uint64(leechers))
		if !scrape {
			break
		}
		// Move past this swarm's dictionary to the next one.
		i := bytes.Index(rest, []byte("10:incompletei"))
		rest = rest[i+len("10:incompletei"):]
	}
	if !scrape {
		if n, ok := bencodedStringLen(body, "5:peers"); ok {
			st.peerList(n / 6)
		}
	}
}

// bencodedInt returns the integer after the first key in b ("8:completei"
// ends where the integer starts).
func bencodedInt(b []byte, key string) (int, bool) {
	i := bytes.Index(b, []byte(key))
	if i < 0 {
		return 0, false
	}
	rest := b[i+len(key):]
	end := bytes.IndexByte(rest, 'e')
	if end < 0 {
		return 0, false
	}
	n, err := strconv.Atoi(string(rest[:end]))
	return n, err == nil && n >= 0
}

// bencodedStringLen returns the length of the string after key.
func bencodedStringLen(b []byte, key string) (int, bool) {
	i := bytes.Index(b, []byte(key))
	if i < 0 {
		return 0, false
	}
	rest := b[i+len(key):]
	colon := bytes.IndexByte(rest, ':')
	if colon < 0 {
		return 0, false
	}
	n, err := strconv.Atoi(string(rest[:colon]))
	return n, err == nil && n >= 0 && colon+1+n <= len(rest)
}

// staleConn tells whether err is how a request on a connection the server
// had closed fails: the write goes through, the read finds the end.
func staleConn(err error) bool {
	return errors.Is(err, io.EOF) || errors.Is(err, syscall.ECONNRESET) || errors.Is(err, syscall.EPIPE)
}

// classifyHTTP returns the error class of a tracker's HTTP answer, "" when
// it is a proper announce or scrape answer.
func classifyHTTP(status int, body []byte, scrape bool) string {
	reason, failed := failureReason(body)
	if len(reason) > 100 {
		reason = reason[:100]
	}
	switch {
	case status != 200 && failed:
		return "http " + strconv.Itoa(status) + ": " + reason
	case status != 200:
		return "http " + strconv.Itoa(status)
	case failed:
		return "failure reason: " + reason
	case scrape && !bytes.HasPrefix(body, []byte("d5:filesd")):
		return "malformed answer"
	case !scrape && !bytes.Contains(body, []byte("8:intervali")):
		return "malformed answer"
	}
	return ""
}

// appendAnnounce appends the GET request of peer g's announce.
func (w *httpWorker) appendAnnounce(dst []byte, g int, ev event, closeConn bool) []byte {
	m := w.m
	h := m.hashes[m.torrentOf(g)]
	id := m.peerID(g)
	numWant := m.numWant
	if ev == evStopped {
		// A leaving client asks for no peers.
		numWant = 0
	}
	dst = append(dst, "GET "...)
	dst = append(dst, w.annPaths[g%len(w.annPaths)]...)
	dst = append(dst, "?info_hash="...)
	dst = appendEscaped(dst, h[:])
	dst = append(dst, "&peer_id="...)
	dst = appendEscaped(dst, id[:])
	dst = append(dst, "&port="...)
	dst = strconv.AppendUint(dst, uint64(m.port(g)), 10)
	dst = append(dst, "&uploaded=0&downloaded=0&left="...)
	dst = strconv.AppendUint(dst, m.left(g, ev), 10)
	if ev != evNone {
		dst = append(dst, "&event="...)
		dst = append(dst, ev.String()...)
	}
	dst = append(dst, "&numwant="...)
	dst = strconv.AppendInt(dst, int64(numWant), 10)
	dst = append(dst, "&compact=1&key="...)
	dst = strconv.AppendUint(dst, uint64(m.key(g)), 16)
	return w.appendHeaders(dst, closeConn)
}

// appendScrape appends a scrape of -scrape-hashes torrents drawn by
// popularity.
func (w *httpWorker) appendScrape(dst []byte, closeConn bool) []byte {
	dst = append(dst, "GET "...)
	dst = append(dst, w.scrPaths[w.scrapes%len(w.scrPaths)]...)
	w.scrapes++
	for i := range w.c.scrapeHashes {
		if i == 0 {
			dst = append(dst, "?info_hash="...)
		} else {
			dst = append(dst, "&info_hash="...)
		}
		h := w.m.hashes[w.m.pickTorrent(w.peers.rng)]
		dst = appendEscaped(dst, h[:])
	}
	return w.appendHeaders(dst, closeConn)
}

func (w *httpWorker) appendHeaders(dst []byte, closeConn bool) []byte {
	dst = append(dst, " HTTP/1.1\r\nHost: "...)
	dst = append(dst, w.c.addr...)
	dst = append(dst, "\r\nUser-Agent: chihaya-bench\r\n"...)
	if closeConn {
		dst = append(dst, "Connection: close\r\n"...)
	}
	return append(dst, "\r\n"...)
}

// appendEscaped percent-encodes binary b for a query string, leaving the
// unreserved characters of RFC 3986 as they are, as clients do.
func appendEscaped(dst, b []byte) []byte {
	const hex = "0123456789ABCDEF"
	for _, c := range b {
		switch {
		case 'a' <= c && c <= 'z', 'A' <= c && c <= 'Z', '0' <= c && c <= '9',
			c == '-', c == '.', c == '_', c == '~':
			dst = append(dst, c)
		default:
			dst = append(dst, '%', hex[c>>4], hex[c&15])
		}
	}
	return dst
}
