package http

import (
	"bufio"
	"bytes"
	"context"
	"crypto/tls"
	"errors"
	"io"
	"net"
	"net/http"
	"net/netip"
	"strconv"
	"sync"
	"sync/atomic"
	"time"
)

// The public port is served by a small HTTP/1.1 server of its own rather
// than net/http: a keep-alive announce is parsed where it lies in the
// connection's read buffer and answered into a write buffer, with no
// allocation, and all the answers to what one read brought (a pipelining
// client's whole batch) leave in one write. Paths other than announce and
// scrape are handed to the site handler through net/http's types.

// headSlack is what a head may exceed max_header_bytes by: net/http allows
// as much, and configurations were written against it.
const headSlack = 4096

// initialReadBuffer is a connection's read buffer until a head needs more;
// a client's announce head is typically a tenth of it.
const initialReadBuffer = 4096

// maxBody bounds the request body the server reads (and, for announces and
// scrapes, discards); a longer one is refused with 413.
const maxBody = 64 << 10

// maxPendingOutput is how much answered output a pipelining connection may
// hold before it is written without waiting for the read buffer to drain.
const maxPendingOutput = 64 << 10

// Connection states, for Shutdown: an idle connection waits for the first
// byte of a request and may be closed at any time.
const (
	stateActive int32 = iota
	stateIdle
)

// server accepts connections and runs one goroutine for each.
type server struct {
	f  *Frontend
	ln net.Listener
	// maxHead bounds a request head, its request line included.
	maxHead int
	// realIP is the client address header's name in lower case.
	realIP string
	// isTLS is set when connections are TLS ones.
	isTLS    bool
	shutting atomic.Bool
	// ctx is the context of the site handler's requests and of scrapes,
	// cancelled once Shutdown is done.
	ctx    context.Context
	cancel context.CancelFunc

	mu    sync.Mutex
	conns map[*conn]struct{}
	// wg counts the accept loop and the open connections.
	wg sync.WaitGroup
}

func newServer(f *Frontend, ln net.Listener, isTLS bool) *server {
	maxHeader := f.cfg.MaxHeaderBytes
	if maxHeader <= 0 {
		maxHeader = http.DefaultMaxHeaderBytes
	}
	ctx, cancel := context.WithCancel(context.Background())
	return &server{
		f:       f,
		ln:      ln,
		maxHead: maxHeader + headSlack,
		realIP:  lowerASCII(f.cfg.RealIPHeader),
		isTLS:   isTLS,
		ctx:     ctx,
		cancel:  cancel,
		conns:   make(map[*conn]struct{}),
	}
}

func lowerASCII(s string) string {
	b := []byte(s)
	for i, c := range b {
		if 'A' <= c && c <= 'Z' {
			b[i] = c + 'a' - 'A'
		}
	}
	return string(b)
}

// serve accepts until the listener is closed. Temporary accept errors (out
// of file descriptors) are retried after a pause, as net/http does.
func (s *server) serve() {
	defer s.wg.Done()
	var pause time.Duration
	for {
		nc, err := s.ln.Accept()
		if err != nil {
			if s.shutting.Load() || errors.Is(err, net.ErrClosed) {
				return
			}
			var ne net.Error
			if errors.As(err, &ne) && ne.Timeout() || isTemporary(err) {
				pause = min(max(2*pause, 5*time.Millisecond), time.Second)
				s.f.log.Warn("http accept failed, retrying", "err", err, "in", pause)
				time.Sleep(pause)
				continue
			}
			s.f.log.Error("http frontend stopped accepting", "err", err)
			return
		}
		pause = 0
		c := s.newConn(nc)
		if c == nil {
			continue
		}
		go c.serve()
	}
}

func isTemporary(err error) bool {
	var t interface{ Temporary() bool }
	return errors.As(err, &t) && t.Temporary()
}

// newConn registers a connection; nil means the server is shutting down
// and the connection was closed.
func (s *server) newConn(nc net.Conn) *conn {
	c := &conn{s: s, nc: nc}
	c.state.Store(stateIdle)
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.shutting.Load() {
		_ = nc.Close()
		return nil
	}
	s.conns[c] = struct{}{}
	s.wg.Add(1)
	return c
}

func (s *server) forget(c *conn) {
	s.mu.Lock()
	delete(s.conns, c)
	s.mu.Unlock()
	s.wg.Done()
}

// shutdown stops accepting, closes idle connections and lets the others
// finish the requests they hold, each closing once its answers are
// written. When ctx ends first, every connection is closed at once.
func (s *server) shutdown(ctx context.Context) error {
	s.mu.Lock()
	s.shutting.Store(true)
	s.mu.Unlock()
	err := s.ln.Close()
	done := make(chan struct{})
	go func() {
		s.wg.Wait()
		close(done)
	}()
	// A connection that turns idle after this pass sees shutting itself
	// and closes; one that was idle already is woken here. Checking
	// again now and then covers connections that were reading a slow
	// request at the first pass.
	tick := time.NewTicker(50 * time.Millisecond)
	defer tick.Stop()
	for {
		s.wakeIdle()
		select {
		case <-done:
			s.cancel()
			return err
		case <-ctx.Done():
			s.cancel()
			s.mu.Lock()
			for c := range s.conns {
				_ = c.nc.Close()
			}
			s.mu.Unlock()
			<-done
			return ctx.Err()
		case <-tick.C:
		}
	}
}

func (s *server) wakeIdle() {
	s.mu.Lock()
	defer s.mu.Unlock()
	for c := range s.conns {
		if c.state.Load() == stateIdle {
			_ = c.nc.SetReadDeadline(aLongTimeAgo)
		}
	}
}

var aLongTimeAgo = time.Unix(1, 0)

// readPool and writePool hold the connections' read buffers (of
// initialReadBuffer bytes) and write buffers, so connections that come and
// go do not allocate them.
var (
	readPool = sync.Pool{New: func() any {
		b := make([]byte, initialReadBuffer)
		return &b
	}}
	writePool = sync.Pool{New: func() any {
		b := make([]byte, 0, initialReadBuffer)
		return &b
	}}
)

// conn is one client connection.
type conn struct {
	s     *server
	nc    net.Conn
	state atomic.Int32

	// rbuf[r:w] is what has been read and not yet parsed.
	rbuf, wbuf *[]byte
	r, w       int
	// out is the answers not yet written.
	out []byte
	x   *exchange
	h   head
	// started is when the first byte of the head being read arrived.
	started time.Time
	// peer is the connection's remote address; remote is its text,
	// made when a log or the site handler needs it.
	peer    netip.Addr
	peerErr error
	remote  string
	// userAgent and passkey are the last ones seen, kept as strings so
	// that a client repeating them on a kept-alive connection costs no
	// allocation.
	userAgent, passkey string
	// closing is set once the connection must close after the answers
	// it holds.
	closing bool
	// refused is set when the server refused a request it may not
	// have read to its end.
	refused bool
	// now is a recent time: when the request being answered started,
	// or when the last flush did.
	now time.Time
	// handled counts the announces and scrapes answered, to pick the
	// timed ones (see timingSample).
	handled uint32
	// readBy and writeBy are the deadlines last set. Only the
	// connection's goroutine sets them; Shutdown's wake-up ends the
	// connection, so it need not be recorded.
	readBy, writeBy deadline
}

func (c *conn) serve() {
	defer c.s.forget(c)
	defer c.release()
	defer c.nc.Close()
	c.rbuf = readPool.Get().(*[]byte)
	c.wbuf = writePool.Get().(*[]byte)
	c.out = (*c.wbuf)[:0]
	c.x = c.s.f.pool.Get().(*exchange)
	c.peer, c.peerErr = remoteAddr(c.nc)

	cfg := &c.s.f.cfg
	if c.s.isTLS && cfg.ReadTimeout > 0 {
		// The handshake runs inside the first read, under its read
		// deadline; its writes are bounded as well.
		c.setWriteDeadline(cfg.ReadTimeout, time.Now())
	}
	firstWait := cfg.ReadTimeout
	for {
		n, err := parseHead((*c.rbuf)[c.r:c.w], &c.h, c.s.realIP)
		if err != nil {
			var he *headError
			errors.As(err, &he)
			c.refuse(he.status, he.reason)
			c.flush()
			c.linger()
			return
		}
		if n > 0 {
			c.started = time.Time{}
			c.handle(n)
			if c.closing {
				// A client that asked to close has sent all it
				// will; only bytes it sent past that request
				// (or a refused request's rest) need draining.
				if c.flush() && (c.r < c.w || c.refused) {
					c.linger()
				}
				return
			}
			if len(c.out) >= maxPendingOutput && !c.flush() {
				return
			}
			continue
		}
		// No complete head is buffered: send the answers so far, then
		// read on.
		if !c.flush() {
			return
		}
		now := c.now
		if c.r == c.w {
			c.r, c.w = 0, 0
		}
		if !c.makeRoom() {
			c.refuse(http.StatusRequestHeaderFieldsTooLarge, "request head too large")
			c.flush()
			c.linger()
			return
		}
		if c.r == c.w {
			// Between requests: the idle timeout applies (read
			// timeout for a new connection's first request, as
			// net/http does), and Shutdown may close the
			// connection.
			wait := cfg.IdleTimeout
			if firstWait > 0 || wait <= 0 {
				wait = cfg.ReadTimeout
			}
			firstWait = 0
			c.setReadDeadline(wait, now)
			c.state.Store(stateIdle)
			if c.s.shutting.Load() {
				return
			}
		} else if c.started.IsZero() {
			// Part of a head is here: the rest must come within the
			// read timeout of its first byte, however slowly it
			// trickles in.
			c.started = time.Now()
			c.setReadDeadline(cfg.ReadTimeout, c.started)
		}
		m, err := c.nc.Read((*c.rbuf)[c.w:])
		c.state.Store(stateActive)
		c.w += m
		if err != nil && m == 0 {
			return
		}
	}
}

// setReadDeadline has the connection's reads end d after now. Setting a
// deadline updates a runtime timer, which was a twentieth of a keep-alive
// announce in profiles, while a client that announces many times a second
// needs a new one only now and then: a deadline already set is kept when
// it falls no later than asked, and at most an eighth of d earlier.
func (c *conn) setReadDeadline(d time.Duration, now time.Time) {
	if d > 0 && c.readBy.reset(now.Add(d), d) {
		_ = c.nc.SetReadDeadline(c.readBy.t)
	}
}

// setWriteDeadline is setReadDeadline for writes.
func (c *conn) setWriteDeadline(d time.Duration, now time.Time) {
	if d > 0 && c.writeBy.reset(now.Add(d), d) {
		_ = c.nc.SetWriteDeadline(c.writeBy.t)
	}
}

// deadline is the last deadline set on one direction of a connection.
type deadline struct{ t time.Time }

// reset reports whether the deadline must be moved to want, for a timeout
// of d, and records it when so.
func (dl *deadline) reset(want time.Time, d time.Duration) bool {
	if !dl.t.After(want) && want.Sub(dl.t) <= d/8 {
		return false
	}
	dl.t = want
	return true
}

// makeRoom moves the unparsed bytes to the front of the read buffer and
// grows it when they fill it, up to the head limit; false means the head
// does not fit.
func (c *conn) makeRoom() bool {
	b := *c.rbuf
	if c.r > 0 {
		c.w = copy(b, b[c.r:c.w])
		c.r = 0
	}
	if c.w < len(b) {
		return true
	}
	if len(b) >= c.s.maxHead {
		return false
	}
	// The grown buffer is the connection's own; the pooled one goes
	// back, and the grown one is dropped when the connection ends.
	grown := make([]byte, min(2*len(b), c.s.maxHead))
	copy(grown, b[:c.w])
	if len(b) == initialReadBuffer {
		readPool.Put(c.rbuf)
	}
	c.rbuf = &grown
	return true
}

// release gives the buffers back.
func (c *conn) release() {
	if len(*c.rbuf) == initialReadBuffer {
		readPool.Put(c.rbuf)
	}
	if cap(c.out) <= maxPendingOutput {
		*c.wbuf = c.out[:0]
		writePool.Put(c.wbuf)
	}
	c.s.f.pool.Put(c.x)
	c.rbuf, c.wbuf, c.x = nil, nil, nil
}

// flush writes the answers held; false means the connection is broken.
// It leaves the time it started in c.now, for the deadline of the read
// that follows.
func (c *conn) flush() bool {
	c.now = time.Now()
	if len(c.out) == 0 {
		return true
	}
	c.setWriteDeadline(c.s.f.cfg.WriteTimeout, c.now)
	_, err := c.nc.Write(c.out)
	c.out = c.out[:0]
	return err == nil
}

// linger closes a connection the server gave up on without losing the
// answer it was just sent: the write side is shut, and what the client
// still sends is read and dropped for a moment, since closing with unread
// data resets the connection, and a reset can destroy the answer before
// the client reads it.
func (c *conn) linger() {
	cw, ok := c.nc.(interface{ CloseWrite() error })
	if !ok || cw.CloseWrite() != nil {
		return
	}
	_ = c.nc.SetReadDeadline(time.Now().Add(500 * time.Millisecond))
	_, _ = io.Copy(io.Discard, io.LimitReader(c.nc, 256<<10))
}

// remoteAddr reads a connection's peer address.
func remoteAddr(nc net.Conn) (netip.Addr, error) {
	ra := nc.RemoteAddr()
	if ta, ok := ra.(*net.TCPAddr); ok {
		return ta.AddrPort().Addr(), nil
	}
	ap, err := netip.ParseAddrPort(ra.String())
	if err != nil {
		return netip.Addr{}, errors.New("cannot read the connection's address " + strconv.Quote(ra.String()))
	}
	return ap.Addr(), nil
}

func (c *conn) remoteText() string {
	if c.remote == "" {
		c.remote = c.nc.RemoteAddr().String()
	}
	return c.remote
}

// handle serves the request whose head is the first n buffered bytes.
func (c *conn) handle(n int) {
	c.now = time.Now()
	h := &c.h
	raw := (*c.rbuf)[c.r : c.r+n]
	c.r += n
	if !h.persistent() || c.s.shutting.Load() {
		c.closing = true
	}
	passkey, action := splitPath(bstr(h.path))
	switch action {
	case "":
		c.serveOther(raw)
		return
	case "announce":
		// The Observer may keep the action (as a metric label): it
		// must not be the buffer's bytes.
		action = "announce"
	default:
		action = "scrape"
	}
	isGet := string(h.method) == "GET"
	if !isGet && !h.isHead() {
		if !c.skipBody() {
			return
		}
		c.reply(http.StatusMethodNotAllowed, "Allow: GET, HEAD\r\n", appendFailure(c.x.buf[:0], "method not allowed: use GET"))
		return
	}
	if !c.skipBody() {
		return
	}
	f := c.s.f
	if !f.enter() {
		c.reply(http.StatusServiceUnavailable, "Retry-After: "+retryAfter+"\r\n", appendFailure(c.x.buf[:0], string(errOverloaded)))
		f.observe(action, errOverloaded, time.Now())
		return
	}
	defer f.leave()
	start := c.now
	source, err := c.peer, c.peerErr
	if err == nil {
		source, err = f.clientAddr(source, h)
	}
	if err == nil {
		if action == "announce" {
			err = f.announce(c.x, source, c.intern(&c.passkey, passkey), c.internBytes(&c.userAgent, h.userAgent), bstr(h.query))
		} else {
			err = f.scrape(c.s.ctx, c.x, source, c.intern(&c.passkey, passkey), bstr(h.query))
		}
	}
	if err != nil {
		status, reason := f.failure(err, func() (string, string) { return c.remoteText(), string(h.path) })
		c.reply(status, "", appendFailure(c.x.buf[:0], reason))
	} else {
		c.reply(http.StatusOK, "", c.x.buf)
	}
	if c.handled%timingSample == 0 {
		f.observe(action, err, start)
	} else if f.cfg.Observer != nil {
		f.cfg.Observer.Count(action, err)
	}
	c.handled++
}

// intern returns s as a string that outlives the read buffer, reusing the
// previous one when it is the same.
func (c *conn) intern(prev *string, s string) string {
	if s != *prev {
		*prev = string([]byte(s))
	}
	return *prev
}

func (c *conn) internBytes(prev *string, b []byte) string {
	if string(b) != *prev {
		*prev = string(b)
	}
	return *prev
}

// skipBody reads and drops the request body an announce or scrape has no
// use for. A body without a length cannot be framed, and a long one is not
// worth reading: both are refused and the connection closed. false means
// the request was answered so.
func (c *conn) skipBody() bool {
	h := &c.h
	if h.transferEncoding {
		c.refuse(http.StatusLengthRequired, "a request body needs a Content-Length")
		return false
	}
	if h.contentLength <= 0 {
		return true
	}
	if h.contentLength > maxBody {
		c.refuse(http.StatusRequestEntityTooLarge, "request body too large")
		return false
	}
	n := int(h.contentLength)
	buffered := min(n, c.w-c.r)
	c.r += buffered
	if rest := n - buffered; rest > 0 {
		if !c.awaitBody() {
			return false
		}
		if _, err := io.CopyN(io.Discard, c.nc, int64(rest)); err != nil {
			c.closing = true
			return false
		}
	}
	return true
}

// awaitBody prepares to read the rest of a request's body: the read is
// bounded by the request's read timeout, and a client that waits for it
// (Expect: 100-continue, RFC 9110) is told to send the body rather than
// left waiting out its own timer. Answers already queued are written
// before the interim response, so that it does not overtake them. false
// means the connection failed and is closing.
func (c *conn) awaitBody() bool {
	c.setReadDeadline(c.s.f.cfg.ReadTimeout, time.Now())
	if !c.h.expectContinue || c.h.minor < 1 {
		return true
	}
	c.out = append(c.out, "HTTP/1.1 100 Continue\r\n\r\n"...)
	if !c.flush() {
		c.closing = true
		return false
	}
	return true
}

// refuse answers a request the server will not serve with a bencoded
// failure reason and closes the connection after it.
func (c *conn) refuse(status int, reason string) {
	c.closing, c.refused = true, true
	c.now = time.Now()
	c.reply(status, "", appendFailure(c.x.buf[:0], reason))
}

// reply appends an answer with a bencoded body; extra is header lines of
// its own, each ending in CRLF.
func (c *conn) reply(status int, extra string, body []byte) {
	c.out = appendStatusLine(c.out, status)
	c.out = append(c.out, "Content-Type: text/plain; charset=utf-8\r\nContent-Length: "...)
	c.out = strconv.AppendInt(c.out, int64(len(body)), 10)
	c.out = append(c.out, "\r\n"...)
	c.out = append(c.out, extra...)
	c.out = c.appendCommon(c.out)
	if !c.h.isHead() {
		c.out = append(c.out, body...)
	}
	c.x.buf = body[:0]
}

// appendCommon appends the Date and Connection headers and the empty line
// that ends the head.
func (c *conn) appendCommon(dst []byte) []byte {
	dst = append(dst, "Date: "...)
	dst = appendDate(dst, c.now)
	if c.s.shutting.Load() {
		c.closing = true
	}
	switch {
	case c.closing:
		dst = append(dst, "\r\nConnection: close\r\n\r\n"...)
	case c.h.minor == 0:
		dst = append(dst, "\r\nConnection: keep-alive\r\n\r\n"...)
	default:
		dst = append(dst, "\r\n\r\n"...)
	}
	return dst
}

func appendStatusLine(dst []byte, status int) []byte {
	if status == http.StatusOK {
		return append(dst, "HTTP/1.1 200 OK\r\n"...)
	}
	dst = append(dst, "HTTP/1.1 "...)
	dst = strconv.AppendInt(dst, int64(status), 10)
	dst = append(dst, ' ')
	dst = append(dst, http.StatusText(status)...)
	return append(dst, "\r\n"...)
}

// date is the Date header's value, remade once a second.
type date struct {
	unix int64
	text []byte
}

var currentDate atomic.Pointer[date]

func appendDate(dst []byte, now time.Time) []byte {
	d := currentDate.Load()
	if d == nil || d.unix != now.Unix() {
		d = &date{unix: now.Unix(), text: now.UTC().AppendFormat(nil, http.TimeFormat)}
		currentDate.Store(d)
	}
	return append(dst, d.text...)
}

// serveOther serves a path that is neither an announce nor a scrape: the
// site handler's, or a bencoded 404 without one.
func (c *conn) serveOther(raw []byte) {
	site := c.s.f.cfg.Site
	if site == nil {
		if !c.skipBody() {
			return
		}
		c.reply(http.StatusNotFound, "", appendFailure(c.x.buf[:0], "not found: announce at /announce, scrape at /scrape"))
		return
	}
	h := &c.h
	if h.transferEncoding {
		c.refuse(http.StatusLengthRequired, "a request body needs a Content-Length")
		return
	}
	if h.contentLength > maxBody {
		c.refuse(http.StatusRequestEntityTooLarge, "request body too large")
		return
	}
	var body []byte
	if h.contentLength > 0 {
		body = make([]byte, h.contentLength)
		k := copy(body, (*c.rbuf)[c.r:c.w])
		c.r += k
		if k < len(body) {
			if !c.awaitBody() {
				return
			}
			if _, err := io.ReadFull(c.nc, body[k:]); err != nil {
				c.closing = true
				return
			}
		}
	}
	c.out = c.serveSite(site, raw, body, c.out)
}

// serveSite runs handler on the request whose head is raw and appends its
// answer to dst.
func (c *conn) serveSite(handler http.Handler, raw, body []byte, dst []byte) []byte {
	req, err := http.ReadRequest(bufio.NewReader(bytes.NewReader(raw)))
	if err != nil {
		c.refuse(http.StatusBadRequest, "malformed request")
		return c.out
	}
	req.RemoteAddr = c.remoteText()
	if tc, ok := c.nc.(*tls.Conn); ok {
		st := tc.ConnectionState()
		req.TLS = &st
	}
	req.Body = http.NoBody
	if body != nil {
		req.Body = io.NopCloser(bytes.NewReader(body))
	}
	req = req.WithContext(c.s.ctx)
	w := &siteWriter{header: make(http.Header)}
	if !c.runSite(handler, w, req) {
		c.refuse(http.StatusInternalServerError, "internal tracker error, try again later")
		return c.out
	}
	return w.appendTo(dst, c)
}

// runSite calls the handler; false means it panicked (logged), as net/http
// would survive too.
func (c *conn) runSite(handler http.Handler, w *siteWriter, req *http.Request) (ok bool) {
	defer func() {
		if v := recover(); v != nil {
			if v == http.ErrAbortHandler {
				c.closing = true
				ok = true
				return
			}
			c.s.f.log.Error("site handler panicked", "remote", c.remoteText(), "path", req.URL.Path, "panic", v)
		}
	}()
	handler.ServeHTTP(w, req)
	return true
}

// siteWriter collects the site handler's answer, which is then written
// with a Content-Length.
type siteWriter struct {
	header http.Header
	status int
	body   bytes.Buffer
}

func (w *siteWriter) Header() http.Header { return w.header }

func (w *siteWriter) WriteHeader(status int) {
	if w.status == 0 {
		w.status = status
	}
}

func (w *siteWriter) Write(p []byte) (int, error) {
	w.WriteHeader(http.StatusOK)
	return w.body.Write(p)
}

// appendTo serialises the answer. The framing headers are the server's:
// the whole body is known, so it always carries a Content-Length.
func (w *siteWriter) appendTo(dst []byte, c *conn) []byte {
	if w.status == 0 {
		w.status = http.StatusOK
	}
	if w.header.Get("Connection") == "close" {
		c.closing = true
	}
	body := w.body.Bytes()
	if _, ok := w.header["Content-Type"]; !ok && len(body) > 0 {
		w.header.Set("Content-Type", http.DetectContentType(body))
	}
	for _, k := range []string{"Content-Length", "Transfer-Encoding", "Connection", "Date"} {
		delete(w.header, k)
	}
	dst = appendStatusLine(dst, w.status)
	var hb bytes.Buffer
	_ = w.header.Write(&hb)
	dst = append(dst, hb.Bytes()...)
	bodyless := w.status == http.StatusNoContent || w.status == http.StatusNotModified || w.status < 200
	if !bodyless {
		dst = append(dst, "Content-Length: "...)
		dst = strconv.AppendInt(dst, int64(len(body)), 10)
		dst = append(dst, "\r\n"...)
	}
	dst = c.appendCommon(dst)
	if !bodyless && !c.h.isHead() {
		dst = append(dst, body...)
	}
	return dst
}
