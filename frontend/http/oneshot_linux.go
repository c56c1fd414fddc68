package http

import (
	"errors"
	"net"
	"net/netip"
	"os"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
)

// Most clients open a connection for each announce, send one request with
// "Connection: close" and read the answer. Serving such a connection
// through net.Conn costs more than the announce itself: a goroutine whose
// stack grows, the poller's registration and wake-ups, a finalizer, and
// three system calls (getsockname, setsockopt, epoll_ctl) that opentracker,
// say, does not make. So on Linux the accept loop takes connections with
// accept4 itself and answers, in place, one whose whole request arrived
// with it and asks to close: read, answer, write, close. Any other
// connection (a partial request, keep-alive, a body, pipelining, the site
// handler's paths, an answer the socket does not take at once) becomes a
// net.Conn, with what was read, and is served as before.

// deferAcceptSeconds has the kernel hand a connection over only once its
// first bytes have arrived, so that the read after accept finds the
// request. A client that connects and sends nothing is not seen until it
// sends (or until the kernel, after this long, passes it on anyway).
const deferAcceptSeconds = 5

// deferAccept is the listening socket's setup for inline answers.
func deferAccept(_, _ string, c syscall.RawConn) error {
	var serr error
	err := c.Control(func(fd uintptr) {
		serr = unix.SetsockoptInt(int(fd), unix.IPPROTO_TCP, unix.TCP_DEFER_ACCEPT, deferAcceptSeconds)
	})
	if err != nil {
		return err
	}
	return serr
}

// oneShotListener is a TCP listener whose Accept answers one-shot
// connections itself and returns only the others. Several accept loops
// may call Accept at once, each then using an acceptor of its own.
type oneShotListener struct {
	*net.TCPListener
	all  []*acceptor
	free chan *acceptor
}

// acceptor is one accept loop's state. Each has its own descriptor of the
// listening socket, in the poller as a file (a TCPListener's raw
// connection cannot wait, and a file's waits are one at a time), and its
// own connection state, reused for every connection it answers so that
// buffers, the exchange and interned strings are not made again.
type acceptor struct {
	file *os.File
	rc   syscall.RawConn
	c    conn
	buf  []byte
	addr fdAddr
}

// oneShot wraps ln for n accept loops; nil when the platform does not
// allow it.
func oneShot(ln net.Listener, n int) *oneShotListener {
	tl, ok := ln.(*net.TCPListener)
	if !ok {
		return nil
	}
	lrc, err := tl.SyscallConn()
	if err != nil {
		return nil
	}
	l := &oneShotListener{TCPListener: tl, free: make(chan *acceptor, max(n, 1))}
	for range max(n, 1) {
		dup := -1
		var derr error
		if err := lrc.Control(func(fd uintptr) { dup, derr = unix.Dup(int(fd)) }); err != nil || derr != nil {
			break
		}
		unix.CloseOnExec(dup)
		// The descriptor shares the socket's non-blocking mode, so
		// NewFile puts it in the poller.
		file := os.NewFile(uintptr(dup), "http listener")
		rc, err := file.SyscallConn()
		if err != nil {
			file.Close()
			break
		}
		a := &acceptor{file: file, rc: rc, buf: make([]byte, initialReadBuffer)}
		l.all = append(l.all, a)
		l.free <- a
	}
	if len(l.all) == 0 {
		return nil
	}
	return l
}

// acceptors is the number of accept loops l serves.
func (l *oneShotListener) acceptors() int { return len(l.all) }

// attach makes s the server of l's one-shot connections.
func (l *oneShotListener) attach(s *server) {
	for _, a := range l.all {
		// The acceptor answers one connection at a time, so the
		// exchange is its own rather than the pool's per request.
		a.c = conn{s: s, rbuf: &a.buf, x: s.f.pool.Get().(*exchange)}
	}
}

// Close closes every descriptor, which ends the waiting Accepts.
func (l *oneShotListener) Close() error {
	for _, a := range l.all {
		_ = a.file.Close()
	}
	return l.TCPListener.Close()
}

// Accept returns the next connection that needs the full server.
func (l *oneShotListener) Accept() (net.Conn, error) {
	a := <-l.free
	defer func() { l.free <- a }()
	var (
		next   net.Conn
		sysErr error
	)
	err := a.rc.Read(func(fd uintptr) bool {
		for {
			nfd, sa, err := unix.Accept4(int(fd), unix.SOCK_NONBLOCK|unix.SOCK_CLOEXEC)
			switch {
			case err == unix.EAGAIN:
				// Wait in the poller for the next one.
				return false
			case err == unix.EINTR || err == unix.ECONNABORTED:
				continue
			case err != nil:
				sysErr = os.NewSyscallError("accept4", err)
				return true
			}
			if nc := a.serve(nfd, sa); nc != nil {
				next = nc
				return true
			}
		}
	})
	if err == nil {
		err = sysErr
	}
	if errors.Is(err, os.ErrClosed) {
		// The server stops on net.ErrClosed.
		err = net.ErrClosed
	}
	if err != nil {
		return nil, &net.OpError{Op: "accept", Net: "tcp", Addr: l.Addr(), Err: err}
	}
	return next, nil
}

// serve answers connection fd if it is a one-shot one and returns nil;
// otherwise it returns the connection as a net.Conn, holding what was
// read from it.
func (a *acceptor) serve(fd int, sa unix.Sockaddr) net.Conn {
	n, err := unix.Read(fd, a.buf)
	switch {
	case err == unix.EAGAIN:
		n = 0
	case err != nil || n == 0:
		// Reset or closed before it asked anything.
		_ = unix.Close(fd)
		return nil
	}
	if n == 0 || !a.oneShotHead(n) {
		return handOff(fd, a.buf[:n])
	}
	c := &a.c
	c.r, c.w = 0, n
	c.out = c.out[:0]
	c.closing, c.refused = false, false
	c.readBy, c.writeBy = deadline{}, deadline{}
	a.addr.remote = addrPortOf(sa)
	c.peer, c.peerErr, c.remote = a.addr.remote.Addr().Unmap(), nil, ""
	c.nc = &a.addr
	c.handle(n)

	out := c.out
	for len(out) > 0 {
		k, err := unix.Write(fd, out)
		if err == unix.EINTR {
			continue
		}
		if err == unix.EAGAIN {
			// The socket did not take the whole answer: a
			// goroutine writes the rest, under the write timeout.
			rest := append([]byte(nil), out...)
			if nc := handOff(fd, nil); nc != nil {
				go finishWrite(nc, rest, c.s.f.cfg.WriteTimeout)
			}
			return nil
		}
		if err != nil {
			break
		}
		out = out[k:]
	}
	_ = unix.Close(fd)
	return nil
}

// oneShotHead parses the n bytes read and reports whether they are the
// whole of one request that the connection ends with, and one the
// tracker answers (an announce or a scrape).
func (a *acceptor) oneShotHead(n int) bool {
	h := &a.c.h
	s := a.c.s
	m, err := parseHead(a.buf[:n], h, s.realIP)
	if err != nil || m != n || h.persistent() || h.contentLength > 0 || h.transferEncoding || s.shutting.Load() {
		return false
	}
	_, action := splitPath(bstr(h.path))
	return action != ""
}

// handOff turns fd into a net.Conn for the full server; read is what was
// already read from it.
func handOff(fd int, read []byte) net.Conn {
	f := os.NewFile(uintptr(fd), "")
	nc, err := net.FileConn(f)
	// FileConn works on a duplicate of the descriptor.
	_ = f.Close()
	if err != nil {
		return nil
	}
	if len(read) == 0 {
		return nc
	}
	return &readAhead{Conn: nc, ahead: append([]byte(nil), read...)}
}

// finishWrite writes the rest of a one-shot answer and closes.
func finishWrite(nc net.Conn, rest []byte, timeout time.Duration) {
	defer nc.Close()
	if timeout > 0 {
		_ = nc.SetWriteDeadline(time.Now().Add(timeout))
	}
	_, _ = nc.Write(rest)
}

// readAhead is a connection some of whose bytes were read already. Only
// the connection's own goroutine reads it.
type readAhead struct {
	net.Conn
	ahead []byte
}

func (r *readAhead) Read(p []byte) (int, error) {
	if len(r.ahead) > 0 {
		n := copy(p, r.ahead)
		r.ahead = r.ahead[n:]
		return n, nil
	}
	return r.Conn.Read(p)
}

// CloseWrite passes through, for the server's lingering close.
func (r *readAhead) CloseWrite() error {
	if cw, ok := r.Conn.(interface{ CloseWrite() error }); ok {
		return cw.CloseWrite()
	}
	return errors.ErrUnsupported
}

// fdAddr stands in for the net.Conn of a one-shot connection, which the
// request's handling asks only for its remote address (for a log line).
type fdAddr struct {
	net.Conn
	remote netip.AddrPort
}

func (a *fdAddr) RemoteAddr() net.Addr { return net.TCPAddrFromAddrPort(a.remote) }

// addrPortOf is the address accept4 reported.
func addrPortOf(sa unix.Sockaddr) netip.AddrPort {
	switch a := sa.(type) {
	case *unix.SockaddrInet4:
		return netip.AddrPortFrom(netip.AddrFrom4(a.Addr), uint16(a.Port))
	case *unix.SockaddrInet6:
		return netip.AddrPortFrom(netip.AddrFrom16(a.Addr), uint16(a.Port))
	}
	return netip.AddrPort{}
}
