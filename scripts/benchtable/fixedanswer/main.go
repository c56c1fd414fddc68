//go:build linux

// Command fixedanswer is a reference for scripts/benchtable, not a tracker:
// it answers every announce and scrape, over HTTP and over UDP (BEP 15),
// with a fixed answer the size of the tracker's answer to the load tool's
// swarm model. It keeps no state and reads no more of a request than it
// needs to frame and answer it, so its responses per CPU-second are what
// the system calls a tracker cannot avoid (accept, read, write, close,
// recvmmsg, sendmmsg) allow on the machine: the ceiling the tracker's own
// figures approach.
//
// It uses nothing of the tracker's packages, so that no tracker logic hides
// in the ceiling. It is Linux only, as the batched UDP system calls are.
package main

import (
	"bytes"
	"context"
	"encoding/binary"
	"flag"
	"fmt"
	"net"
	"net/http"
	"os"
	"runtime"
	"strconv"
	"sync/atomic"
	"syscall"
	"time"
	"unsafe"

	"golang.org/x/sys/unix"
)

// The answers' fixed counts: 20 peers a torrent, 30 % of them seeders, as in
// the load tool's model.
const (
	seeders  = 6
	leechers = 14
	interval = 1800
)

func main() {
	httpAddr := flag.String("http", "", "serve HTTP on this TCP address (empty: no HTTP)")
	udpAddr := flag.String("udp", "", "serve BEP 15 on this UDP address (empty: no UDP)")
	peers := flag.Int("peers", 19, "compact IPv4 peers in each announce answer (a numwant-50 announce in a swarm of 20 gets 19)")
	flag.Parse()
	if *httpAddr == "" && *udpAddr == "" || *peers < 0 || *peers > 200 {
		fmt.Fprintln(os.Stderr, "fixedanswer: give -http, -udp or both, and -peers from 0 to 200")
		os.Exit(2)
	}
	peerList := make([]byte, 0, 6**peers)
	for i := range *peers {
		peerList = append(peerList, 10, 0, byte(i>>8), byte(i), 0x1a, 0xe1)
	}
	// UDP is bound first, so that a caller that waits for the TCP port
	// to accept finds both ready.
	if *udpAddr != "" {
		if err := serveUDP(*udpAddr, peerList); err != nil {
			fmt.Fprintln(os.Stderr, "fixedanswer:", err)
			os.Exit(1)
		}
	}
	if *httpAddr == "" {
		select {}
	}
	// It returns only when it cannot serve.
	fmt.Fprintln(os.Stderr, "fixedanswer:", serveHTTP(*httpAddr, peerList))
	os.Exit(1)
}

// HTTP, as the tracker's own server does it: a connection whose whole
// request arrived with it and asks to close is answered in the accept loop
// (read, write, close); any other gets a goroutine and a net.Conn, and all
// the answers to one read leave in one write. A goroutine and the poller's
// bookkeeping for every one-request connection would cost more than the
// tracker pays, and the ceiling would sit below it.

// deferAcceptSeconds has the kernel hand a connection over once its first
// bytes are in, so that the read after accept finds the request.
const deferAcceptSeconds = 5

// httpDate is the Date header's value, remade once a second rather than
// formatted for every answer.
var httpDate atomic.Pointer[[]byte]

func setDate() {
	d := time.Now().UTC().AppendFormat(nil, http.TimeFormat)
	httpDate.Store(&d)
}

func serveHTTP(addr string, peerList []byte) error {
	lc := net.ListenConfig{Control: func(_, _ string, c syscall.RawConn) error {
		var serr error
		if err := c.Control(func(fd uintptr) {
			serr = unix.SetsockoptInt(int(fd), unix.IPPROTO_TCP, unix.TCP_DEFER_ACCEPT, deferAcceptSeconds)
		}); err != nil {
			return err
		}
		return serr
	}}
	ln, err := lc.Listen(context.Background(), "tcp", addr)
	if err != nil {
		return err
	}
	// A listener's own raw connection cannot wait for a connection; a
	// duplicate of it as a file can, in the poller.
	lf, err := ln.(*net.TCPListener).File()
	ln.Close()
	if err != nil {
		return err
	}
	rc, err := lf.SyscallConn()
	if err != nil {
		return err
	}
	setDate()
	go func() {
		for range time.Tick(time.Second) {
			setDate()
		}
	}()
	announce := fmt.Appendf(nil, "d8:completei%de10:incompletei%de8:intervali%de12:min intervali%de5:peers%d:%se",
		seeders, leechers, interval, interval/2, len(peerList), peerList)
	var fd int
	var acceptErr error
	accept := func(lfd uintptr) bool {
		fd, _, acceptErr = unix.Accept4(int(lfd), unix.SOCK_NONBLOCK|unix.SOCK_CLOEXEC)
		return acceptErr != unix.EAGAIN
	}
	buf := make([]byte, 4096)
	var out []byte
	for {
		if err := rc.Read(accept); err != nil {
			return err
		}
		if acceptErr != nil {
			// Out of descriptors, most likely: the clients retry.
			time.Sleep(10 * time.Millisecond)
			continue
		}
		n, err := unix.Read(fd, buf)
		switch {
		case err == unix.EAGAIN || err == unix.EINTR:
			// Nothing yet: the connection's goroutine waits.
			n = 0
		case err != nil || n == 0:
			// Gone before it asked anything.
			unix.Close(fd)
			continue
		}
		var rest []byte
		var closing bool
		out, rest, closing = answerHeads(out[:0], buf[:n], announce)
		if closing && len(rest) == 0 {
			// A short write would end the answer early, which the
			// client reports; a fresh socket takes a few hundred
			// bytes at once.
			_, _ = unix.Write(fd, out)
			unix.Close(fd)
			continue
		}
		c, err := net.FileConn(os.NewFile(uintptr(fd), ""))
		unix.Close(fd)
		if err != nil {
			continue
		}
		// The connection takes the answers and the buffer they came
		// from; the loop gets new ones.
		go serveConn(c, buf, out, rest, closing, announce)
		buf, out = make([]byte, 4096), nil
	}
}

var headEnd = []byte("\r\n\r\n")

// serveConn serves c from where the accept loop left it: out holds the
// answers to what was read, rest (in buf) the bytes after them, and
// closing says the last answer ends the connection.
func serveConn(c net.Conn, buf, out, rest []byte, closing bool, announce []byte) {
	defer c.Close()
	for {
		if len(out) > 0 {
			if _, err := c.Write(out); err != nil {
				return
			}
		}
		if closing {
			return
		}
		// An incomplete head waits for the rest; one that fills the
		// buffer is not a client of this server.
		held := copy(buf, rest)
		if held == len(buf) {
			return
		}
		n, err := c.Read(buf[held:])
		if err != nil {
			return
		}
		out, rest, closing = answerHeads(out[:0], buf[:held+n], announce)
	}
}

// answerHeads appends the answers to the complete request heads in data
// and returns what follows them; closing says one asked to close, and
// nothing after it is answered.
func answerHeads(out, data, announce []byte) (_, rest []byte, closing bool) {
	for !closing {
		i := bytes.Index(data, headEnd)
		if i < 0 {
			break
		}
		out, closing = appendAnswer(out, data[:i+2], announce)
		data = data[i+4:]
	}
	return out, data, closing
}

// appendAnswer appends the answer to the request head, its lines each
// ending in CRLF, and tells whether the connection closes after it.
func appendAnswer(out, head, announce []byte) ([]byte, bool) {
	line, headers, _ := bytes.Cut(head, []byte("\r\n"))
	closing := bytes.HasSuffix(line, []byte(" HTTP/1.0"))
	for len(headers) > 0 {
		var h []byte
		h, headers, _ = bytes.Cut(headers, []byte("\r\n"))
		name, value, _ := bytes.Cut(h, []byte(":"))
		if bytes.EqualFold(name, []byte("Connection")) && bytes.EqualFold(bytes.TrimSpace(value), []byte("close")) {
			closing = true
		}
	}
	_, rest, _ := bytes.Cut(line, []byte(" "))
	target, _, _ := bytes.Cut(rest, []byte(" "))
	path, query, _ := bytes.Cut(target, []byte("?"))
	body := announce
	var scrape [80]byte
	if bytes.Contains(path, []byte("/scrape")) {
		body = appendScrape(scrape[:0], query)
	}
	out = append(out, "HTTP/1.1 200 OK\r\nContent-Type: text/plain; charset=utf-8\r\nContent-Length: "...)
	out = strconv.AppendInt(out, int64(len(body)), 10)
	out = append(out, "\r\nDate: "...)
	out = append(out, *httpDate.Load()...)
	if closing {
		out = append(out, "\r\nConnection: close"...)
	}
	out = append(out, "\r\n\r\n"...)
	return append(out, body...), closing
}

// scrapeCounts is a torrent's entry in a scrape answer.
var scrapeCounts = fmt.Sprintf("d8:completei%de10:downloadedi0e10:incompletei%dee", seeders, leechers)

// appendScrape appends a scrape answer for the query's first info hash, so
// that the answer is about a torrent the client asked for.
func appendScrape(dst, query []byte) []byte {
	dst = append(dst, "d5:filesd"...)
	for len(query) > 0 {
		var param []byte
		param, query, _ = bytes.Cut(query, []byte("&"))
		value, ok := bytes.CutPrefix(param, []byte("info_hash="))
		if !ok {
			continue
		}
		var hash [20]byte
		if n, ok := unescape(hash[:], value); ok && n == 20 {
			dst = append(dst, "20:"...)
			dst = append(dst, hash[:]...)
			dst = append(dst, scrapeCounts...)
		}
		break
	}
	return append(dst, "ee"...)
}

// unescape percent-decodes s into dst and returns its length; false when s
// is malformed or does not fit.
func unescape(dst, s []byte) (int, bool) {
	n := 0
	for i := 0; i < len(s); i++ {
		if n == len(dst) {
			return n, false
		}
		c := s[i]
		if c == '%' {
			if i+2 >= len(s) {
				return n, false
			}
			v, err := strconv.ParseUint(string(s[i+1:i+3]), 16, 8)
			if err != nil {
				return n, false
			}
			c = byte(v)
			i += 2
		}
		dst[n] = c
		n++
	}
	return n, true
}

// UDP: one reader per GOMAXPROCS, each blocking in recvmmsg outside the Go
// poller and answering its whole batch with one sendmmsg, which is how the
// tracker's UDP frontend moves packets; a ceiling that paid a system call
// or a poller wake-up per packet would sit below the tracker.

const (
	udpBatch = 64
	// maxRequest fits the longest scrape a 1500-byte packet carries.
	maxRequest = 1500
	// maxScrape is the most info hashes that fit in maxRequest.
	maxScrape = (maxRequest - 16) / 20
	// connectionID is what every connect gets and no announce is
	// checked against.
	connectionID = 0x5eed_f00d_0000_0001
)

// mmsghdr is struct mmsghdr; Go lays it out as C does on Linux.
type mmsghdr struct {
	hdr unix.Msghdr
	n   uint32
}

func serveUDP(addr string, peerList []byte) error {
	ua, err := net.ResolveUDPAddr("udp", addr)
	if err != nil {
		return err
	}
	conn, err := net.ListenUDP("udp", ua)
	if err != nil {
		return err
	}
	// Buffers as large as the tracker's, so that neither drops what the
	// other would take.
	_ = conn.SetReadBuffer(8 << 20)
	_ = conn.SetWriteBuffer(4 << 20)
	rc, err := conn.SyscallConn()
	if err != nil {
		return err
	}
	fd, dupErr := -1, error(nil)
	if err := rc.Control(func(cfd uintptr) { fd, dupErr = unix.FcntlInt(cfd, unix.F_DUPFD_CLOEXEC, 0) }); err != nil {
		return err
	}
	if dupErr != nil {
		return dupErr
	}
	// Closing the poller's descriptor leaves the socket to the duplicate,
	// which the readers block on.
	conn.Close()
	if err := unix.SetNonblock(fd, false); err != nil {
		return err
	}
	announce := make([]byte, 20, 20+len(peerList))
	binary.BigEndian.PutUint32(announce[0:], 1)
	binary.BigEndian.PutUint32(announce[8:], interval)
	binary.BigEndian.PutUint32(announce[12:], leechers)
	binary.BigEndian.PutUint32(announce[16:], seeders)
	announce = append(announce, peerList...)
	// As the tracker does, one P more than readers: with none to spare,
	// the runtime hands the P of a reader waiting in recvmmsg to another
	// thread each time the socket runs dry.
	readers := runtime.GOMAXPROCS(0)
	runtime.GOMAXPROCS(readers + 1)
	for range readers {
		go udpReader(fd, announce)
	}
	return nil
}

func udpReader(fd int, announce []byte) {
	in := make([]mmsghdr, udpBatch)
	inIov := make([]unix.Iovec, udpBatch)
	inBuf := make([][]byte, udpBatch)
	names := make([]unix.RawSockaddrInet6, udpBatch)
	out := make([]mmsghdr, udpBatch)
	outIov := make([]unix.Iovec, udpBatch)
	outBuf := make([][]byte, udpBatch)
	for i := range udpBatch {
		inBuf[i] = make([]byte, maxRequest)
		inIov[i].Base = &inBuf[i][0]
		inIov[i].SetLen(maxRequest)
		in[i].hdr.Name = (*byte)(unsafe.Pointer(&names[i]))
		in[i].hdr.Iov = &inIov[i]
		in[i].hdr.SetIovlen(1)
		outBuf[i] = make([]byte, max(len(announce), 8+12*maxScrape))
		outIov[i].Base = &outBuf[i][0]
		out[i].hdr.Iov = &outIov[i]
		out[i].hdr.SetIovlen(1)
	}
	var yielded time.Time
	for {
		// As the tracker's readers do, pass through the scheduler every
		// 5 ms, or the runtime takes the P of a reader that never does.
		if now := time.Now(); now.Sub(yielded) >= 5*time.Millisecond {
			runtime.Gosched()
			yielded = now
		}
		for i := range in {
			in[i].hdr.Namelen = unix.SizeofSockaddrInet6
		}
		r, _, errno := unix.Syscall6(unix.SYS_RECVMMSG, uintptr(fd), uintptr(unsafe.Pointer(&in[0])), udpBatch, unix.MSG_WAITFORONE, 0, 0)
		if errno != 0 {
			continue
		}
		k := 0
		for i := range int(r) {
			n := udpAnswer(outBuf[k], inBuf[i][:in[i].n], announce)
			if n == 0 {
				continue
			}
			outIov[k].SetLen(n)
			out[k].hdr.Name = in[i].hdr.Name
			out[k].hdr.Namelen = in[i].hdr.Namelen
			k++
		}
		for sent := 0; sent < k; {
			w, _, errno := unix.Syscall6(unix.SYS_SENDMMSG, uintptr(fd), uintptr(unsafe.Pointer(&out[sent])), uintptr(k-sent), unix.MSG_NOSIGNAL, 0, 0)
			switch errno {
			case 0:
				sent += int(w)
			case unix.EINTR:
			default:
				// The first answer was refused: drop it, as a
				// lost packet.
				sent++
			}
		}
	}
}

// udpAnswer writes the answer to request p into dst and returns its length,
// 0 for a packet that gets none.
func udpAnswer(dst, p, announce []byte) int {
	if len(p) < 16 {
		return 0
	}
	txID := p[12:16]
	switch binary.BigEndian.Uint32(p[8:12]) {
	case 0:
		binary.BigEndian.PutUint32(dst[0:], 0)
		copy(dst[4:], txID)
		binary.BigEndian.PutUint64(dst[8:], connectionID)
		return 16
	case 1:
		n := copy(dst, announce)
		copy(dst[4:], txID)
		return n
	case 2:
		binary.BigEndian.PutUint32(dst[0:], 2)
		copy(dst[4:], txID)
		n := 8
		for range min((len(p)-16)/20, maxScrape) {
			binary.BigEndian.PutUint32(dst[n:], seeders)
			binary.BigEndian.PutUint32(dst[n+4:], 0)
			binary.BigEndian.PutUint32(dst[n+8:], leechers)
			n += 12
		}
		return n
	}
	return 0
}
