// Package http is the HTTP frontend: it turns BEP 3 announce and BEP 48
// scrape requests into bittorrent requests for the tracker logic and writes
// the bencoded answers. It knows nothing of users or storage.
package http

import (
	"context"
	"crypto/tls"
	"errors"
	"log/slog"
	"net"
	"net/http"
	"net/netip"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
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
	// ReadTimeout bounds reading one request, from its first byte (or
	// from the accept, for a connection's first request) to the end of
	// its body.
	ReadTimeout time.Duration
	// WriteTimeout bounds each write of answers.
	WriteTimeout time.Duration
	// IdleTimeout bounds the wait for a kept-alive connection's next
	// request; 0 uses ReadTimeout.
	IdleTimeout time.Duration
	// MaxHeaderBytes bounds a request's line and header fields; as
	// with net/http, 4 KiB more are tolerated. 0: 1 MiB.
	MaxHeaderBytes int
	// MaxConnections bounds the connections open at once; past it a new
	// connection is answered 503 and closed. 0: no bound.
	MaxConnections int
	// MaxInflight bounds the announces and scrapes being served at once;
	// past it a request is answered 503 at once. 0: no bound.
	MaxInflight int
	// AllowIPParam makes the ip, ipv4 and ipv6 parameters count.
	AllowIPParam bool
	// TrustedProxies are the peers whose RealIPHeader is believed.
	TrustedProxies []netip.Prefix
	// RealIPHeader names the header that carries the client's address
	// when the request comes from a trusted proxy: X-Forwarded-For (the
	// right-most address that is not itself a trusted proxy is taken) or
	// a single-address header such as X-Real-IP.
	RealIPHeader string
	// Site, when set, serves every path that is not an announce or a
	// scrape: the web application's calls to the tracker (Gazelle's
	// update and report interface).
	Site http.Handler
	// TLSCertFile and TLSKeyFile, when both set, name the PEM
	// certificate chain and key the port is served with over TLS.
	TLSCertFile, TLSKeyFile string
	// Observer, when set, is told of every announce and scrape.
	Observer Observer
	// InlineAnswers lets the accept loops (one per CPU) answer a
	// connection that brings one whole request and closes, as most
	// clients' announces do, themselves, without a goroutine for it
	// (Linux, plain HTTP). Set it only when the tracker answers without
	// waiting on the network (the memory cache): an answer holds up its
	// accept loop while it is made.
	InlineAnswers bool
}

// Observer is told of each request: its action, its error and, when it is
// a timed one, how long it took (metrics.Observer is one).
type Observer interface {
	Observe(action string, err error, took time.Duration)
	Count(action string, err error)
}

// timingSample is how many announces and scrapes of a keep-alive
// connection share one timing: its first and every timingSample-th after
// are timed, the rest only counted. Reading the clock to time each was
// about one percent of the server's CPU; a connection per request is
// still timed every time.
const timingSample = 16

// Frontend serves the tracker over HTTP. It is an http.Handler, so tests and
// embedders can drive it without a socket.
type Frontend struct {
	tracker Tracker
	cfg     Config
	parser  announceParams
	log     *slog.Logger
	pool    sync.Pool
	srv     *server
	// inflight counts the announces and scrapes being served, when
	// MaxInflight bounds them.
	inflight atomic.Int64
	// badRequests is the tracker, when it counts bad requests.
	badRequests badRequestCounter
	// conns bounds the open connections, when MaxConnections is set.
	conns *limitListener
	// cert is the certificate served over TLS; ReloadCertificate swaps it
	// while connections are being accepted.
	cert atomic.Pointer[tls.Certificate]
}

// exchange is the per-request state, pooled so the announce path reuses
// its buffers.
type exchange struct {
	announce bittorrent.AnnounceRequest
	response bittorrent.AnnounceResponse
	scrape   bittorrent.ScrapeRequest
	files    bittorrent.ScrapeResponse
	buf      []byte
}

// New returns a frontend for t.
func New(t Tracker, cfg Config, log *slog.Logger) *Frontend {
	f := &Frontend{
		tracker: t,
		cfg:     cfg,
		parser:  announceParams{allowIPParam: cfg.AllowIPParam},
		log:     log,
		pool: sync.Pool{New: func() any {
			return &exchange{buf: make([]byte, 0, 1024)}
		}},
	}
	f.badRequests, _ = t.(badRequestCounter)
	return f
}

// ListenAndServe listens on the configured address and serves until
// Shutdown. It returns once the listener is open, reporting a listen or
// certificate error directly; serving errors go to the log.
func (f *Frontend) ListenAndServe() (net.Addr, error) {
	var tlsConfig *tls.Config
	if f.servesTLS() {
		if err := f.ReloadCertificate(); err != nil {
			return nil, err
		}
		tlsConfig = &tls.Config{
			GetCertificate: func(*tls.ClientHelloInfo) (*tls.Certificate, error) { return f.cert.Load(), nil },
			MinVersion:     tls.VersionTLS12,
			NextProtos:     []string{"http/1.1"},
		}
	}
	// TCP keep-alive probes are left off: idle connections are closed by
	// the idle timeout, and switching them on costs four system calls
	// per accepted connection.
	lc := net.ListenConfig{KeepAlive: -1}
	inline := f.cfg.InlineAnswers && tlsConfig == nil
	if inline {
		lc.Control = deferAccept
	}
	ln, err := lc.Listen(context.Background(), "tcp", f.cfg.Addr)
	if err != nil {
		return nil, err
	}
	addr := ln.Addr()
	acceptors := 1
	var oneShots *oneShotListener
	if inline {
		if oneShots = oneShot(ln, runtime.GOMAXPROCS(0)); oneShots != nil {
			ln, acceptors = oneShots, oneShots.acceptors()
		}
	}
	if f.cfg.MaxConnections > 0 {
		f.conns = newLimitListener(ln, f.cfg.MaxConnections, func() {
			f.observe("connect", errTooManyConnections, time.Now())
		})
		// A refusal cannot be told in plain text to a client that
		// expects a TLS handshake.
		f.conns.silent = tlsConfig != nil
		ln = f.conns
	}
	if tlsConfig != nil {
		ln = tls.NewListener(ln, tlsConfig)
	}
	f.srv = newServer(f, ln, tlsConfig != nil)
	if oneShots != nil {
		oneShots.attach(f.srv)
	}
	for range acceptors {
		f.srv.wg.Add(1)
		go f.srv.serve()
	}
	return addr, nil
}

func (f *Frontend) servesTLS() bool { return f.cfg.TLSCertFile != "" || f.cfg.TLSKeyFile != "" }

// ReloadCertificate reads the TLS certificate and key files again, so that
// a renewed certificate is served to new connections without a restart
// (connections already open keep theirs). If the files cannot be read or
// do not match, the certificate in use stays and the error is returned.
// Without TLS it does nothing.
func (f *Frontend) ReloadCertificate() error {
	if !f.servesTLS() {
		return nil
	}
	cert, err := tls.LoadX509KeyPair(f.cfg.TLSCertFile, f.cfg.TLSKeyFile)
	if err != nil {
		return err
	}
	f.cert.Store(&cert)
	return nil
}

// Shutdown stops accepting connections, closes the idle ones and waits for
// the requests in flight to be answered, up to ctx's deadline; then it
// closes what is left.
func (f *Frontend) Shutdown(ctx context.Context) error {
	if f.srv == nil {
		return nil
	}
	return f.srv.shutdown(ctx)
}

// ServeHTTP routes /announce, /scrape and their /<passkey>/ forms, and
// hands anything else to the site handler when there is one.
func (f *Frontend) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	passkey, action := splitPath(r.URL.Path)
	if action == "" {
		if f.cfg.Site != nil {
			f.cfg.Site.ServeHTTP(w, r)
			return
		}
		f.fail(w, http.StatusNotFound, "not found: announce at /announce, scrape at /scrape")
		return
	}
	if r.Method != http.MethodGet && r.Method != http.MethodHead {
		w.Header().Set("Allow", "GET, HEAD")
		f.fail(w, http.StatusMethodNotAllowed, "method not allowed: use GET")
		return
	}
	if !f.enter() {
		f.shed(w, action)
		return
	}
	defer f.leave()
	if action == "announce" {
		f.serveAnnounce(w, r, passkey)
	} else {
		f.serveScrape(w, r, passkey)
	}
}

// splitPath reads "/announce" and "/<passkey>/announce". Anything else has
// no action.
func splitPath(path string) (passkey, action string) {
	rest, ok := strings.CutPrefix(path, "/")
	if !ok {
		return "", ""
	}
	if i := strings.IndexByte(rest, '/'); i >= 0 {
		passkey, rest = rest[:i], rest[i+1:]
		if passkey == "" {
			return "", ""
		}
	}
	if rest != "announce" && rest != "scrape" {
		return "", ""
	}
	return passkey, rest
}

func (f *Frontend) serveAnnounce(w http.ResponseWriter, r *http.Request, passkey string) {
	start := time.Now()
	x := f.pool.Get().(*exchange)
	defer f.pool.Put(x)
	source, err := f.requestAddr(r)
	if err == nil {
		err = f.announce(x, source, passkey, r.Header.Get("User-Agent"), r.URL.RawQuery)
	}
	if err != nil {
		f.failWith(w, r, err)
	} else {
		f.write(w, x.buf)
	}
	f.observe("announce", err, start)
}

// announce parses a raw announce query from source and runs it; on success
// x.buf holds the bencoded answer. passkey and query are read only during
// the call, userAgent may be kept by the tracker.
func (f *Frontend) announce(x *exchange, source netip.Addr, passkey, userAgent, query string) error {
	req, resp := &x.announce, &x.response
	req.Reset()
	resp.Reset()
	req.Source = source
	if source.Is4() {
		req.IPv4 = source
	} else {
		req.IPv6 = source
	}
	req.Passkey = passkey
	req.UserAgent = userAgent
	err := f.parser.parseAnnounce(query, req)
	if err != nil {
		err = f.malformed(source, err)
	} else {
		// A client that hangs up must not cancel its announce half
		// way: the swarm and the transfer it reported are recorded
		// whether or not it reads the answer. The logic needs nothing
		// from the request's context, so a background one serves, and
		// costs no allocation.
		err = f.tracker.Announce(context.Background(), req, resp)
	}
	if err == nil {
		x.buf = appendAnnounce(x.buf[:0], req, resp)
	}
	// The pooled request must not hold on to the caller's strings.
	req.Passkey, req.UserAgent = "", ""
	return err
}

func (f *Frontend) observe(action string, err error, start time.Time) {
	if f.cfg.Observer != nil {
		f.cfg.Observer.Observe(action, err, time.Since(start))
	}
}

func (f *Frontend) serveScrape(w http.ResponseWriter, r *http.Request, passkey string) {
	start := time.Now()
	x := f.pool.Get().(*exchange)
	defer f.pool.Put(x)
	source, err := f.requestAddr(r)
	if err == nil {
		err = f.scrape(r.Context(), x, source, passkey, r.URL.RawQuery)
	}
	if err != nil {
		f.failWith(w, r, err)
	} else {
		f.write(w, x.buf)
	}
	f.observe("scrape", err, start)
}

// scrape parses a raw scrape query from source and runs it; on success
// x.buf holds the bencoded answer.
func (f *Frontend) scrape(ctx context.Context, x *exchange, source netip.Addr, passkey, query string) error {
	req, resp := &x.scrape, &x.files
	*req = bittorrent.ScrapeRequest{Passkey: passkey, Source: source, InfoHashes: req.InfoHashes[:0]}
	var err error
	if req.InfoHashes, err = parseScrape(query, req.InfoHashes); err != nil {
		err = f.malformed(source, err)
	} else {
		err = f.tracker.Scrape(ctx, req, resp)
	}
	if err == nil {
		x.buf = appendScrape(x.buf[:0], resp)
	}
	req.Passkey = ""
	return err
}

// headerValues are the values of one header field, in order.
type headerValues interface {
	Len() int
	At(i int) string
}

type stringValues []string

func (v stringValues) Len() int        { return len(v) }
func (v stringValues) At(i int) string { return v[i] }

// requestAddr is clientAddr for a net/http request.
func (f *Frontend) requestAddr(r *http.Request) (netip.Addr, error) {
	ap, err := netip.ParseAddrPort(r.RemoteAddr)
	if err != nil {
		return netip.Addr{}, errors.New("cannot read the connection's address " + strconv.Quote(r.RemoteAddr))
	}
	return f.clientAddr(ap.Addr(), stringValues(r.Header.Values(f.cfg.RealIPHeader)))
}

// clientAddr returns the address the request came from: the connection's
// peer, or, when that peer is a trusted proxy, the address the proxy names
// in the RealIPHeader, whose values are given.
func (f *Frontend) clientAddr(peer netip.Addr, values headerValues) (netip.Addr, error) {
	addr := peer.Unmap().WithZone("")
	if len(f.cfg.TrustedProxies) == 0 || !f.trusted(addr) {
		return addr, nil
	}
	n := values.Len()
	if n == 0 {
		return netip.Addr{}, bittorrent.ClientError("the reverse proxy did not send the " + f.cfg.RealIPHeader + " header")
	}
	if !strings.EqualFold(f.cfg.RealIPHeader, "X-Forwarded-For") {
		a, err := netip.ParseAddr(strings.TrimSpace(values.At(n - 1)))
		if err != nil {
			return netip.Addr{}, bittorrent.ClientError("the reverse proxy sent an invalid " + f.cfg.RealIPHeader + " header")
		}
		return a.Unmap().WithZone(""), nil
	}
	// X-Forwarded-For grows to the right, one hop at a time; the client
	// is the right-most hop that is not one of our proxies. Anything to
	// its left was written by the client and cannot be trusted.
	for i := n - 1; i >= 0; i-- {
		hops := values.At(i)
		for {
			hop := hops
			j := strings.LastIndexByte(hops, ',')
			if j >= 0 {
				hop, hops = hops[j+1:], hops[:j]
			}
			a, err := netip.ParseAddr(strings.TrimSpace(hop))
			if err != nil {
				return netip.Addr{}, bittorrent.ClientError("the reverse proxy sent an invalid X-Forwarded-For header")
			}
			a = a.Unmap().WithZone("")
			if !f.trusted(a) {
				return a, nil
			}
			if j < 0 {
				break
			}
		}
	}
	return netip.Addr{}, bittorrent.ClientError("X-Forwarded-For names only trusted proxies")
}

func (f *Frontend) trusted(a netip.Addr) bool {
	for _, p := range f.cfg.TrustedProxies {
		if p.Contains(a) {
			return true
		}
	}
	return false
}

// failWith answers an error.
func (f *Frontend) failWith(w http.ResponseWriter, r *http.Request, err error) {
	status, reason := f.failure(err, func() (string, string) { return r.RemoteAddr, r.URL.Path })
	f.fail(w, status, reason)
}

// failure turns an error into the status and failure reason to answer. A
// client's mistake is told as it is; anything else is logged and the
// client learns only that the tracker failed. where names the remote
// address and the path for the log; it is called only to log, so that the
// fast path copies them out of its buffer only then.
func (f *Frontend) failure(err error, where func() (remote, path string)) (int, string) {
	var ce bittorrent.ClientError
	if errors.As(err, &ce) {
		if f.log.Enabled(context.Background(), slog.LevelDebug) {
			remote, _ := where()
			f.log.Debug("request refused", "remote", remote, "reason", ce.Error())
		}
		return http.StatusOK, ce.Error()
	}
	remote, path := where()
	f.log.Error("request failed", "remote", remote, "path", path, "err", err)
	return http.StatusInternalServerError, "internal tracker error, try again later"
}

// fail writes a bencoded failure reason. Client errors use status 200,
// since many BitTorrent clients show the failure reason only then.
func (f *Frontend) fail(w http.ResponseWriter, status int, reason string) {
	body := appendFailure(make([]byte, 0, 32+len(reason)), reason)
	h := w.Header()
	h["Content-Type"] = textPlain
	h["Content-Length"] = []string{strconv.Itoa(len(body))}
	w.WriteHeader(status)
	_, _ = w.Write(body)
}

var textPlain = []string{"text/plain; charset=utf-8"}

func (f *Frontend) write(w http.ResponseWriter, body []byte) {
	h := w.Header()
	h["Content-Type"] = textPlain
	h["Content-Length"] = []string{strconv.Itoa(len(body))}
	_, _ = w.Write(body)
}
