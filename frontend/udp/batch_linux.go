//go:build linux

package udp

import (
	"net"
	"net/netip"
	"os"
	"sync/atomic"
	"syscall"
	"unsafe"

	"golang.org/x/sys/unix"
)

// On Linux a reader moves whole batches of packets with recvmmsg and
// sendmmsg: with one system call per packet each way, the calls cost more
// CPU than the tracker logic. The calls are made here rather than through
// x/net's ReadBatch, which allocates a net.UDPAddr for every packet read.
//
// With no more readers than CPUs the socket is also taken out of the Go
// poller and the readers block in the kernel, as a C tracker's threads do.
// A socket in the poller costs, for every packet sent or received, an
// epoll wakeup in the kernel, and for every idle moment a trip through the
// scheduler; measured, that was a fifth of the server's CPU. Many readers
// per CPU (a cache behind a network) keep the poller: a goroutine blocked
// in the kernel holds its thread and, until the runtime notices, its CPU,
// which the readers waiting on network round trips need.

// socket is the frontend's UDP socket, in one of the two modes.
type socket struct {
	// conn is the socket in poller mode, nil in blocking mode.
	conn *net.UDPConn
	// fd is the socket in blocking mode.
	fd     int
	addr   net.Addr
	closed atomic.Bool
}

// listen opens the socket; blocking chooses the mode.
func listen(addr *net.UDPAddr, blocking bool) (*socket, error) {
	// The net package picks the family (":6969" is one dual-stack
	// IPv6 socket) and binds; blocking mode then takes over the file.
	conn, err := net.ListenUDP("udp", addr)
	if err != nil {
		return nil, err
	}
	tuneBuffers(conn)
	s := &socket{conn: conn, addr: conn.LocalAddr()}
	if !blocking {
		return s, nil
	}
	rc, err := conn.SyscallConn()
	if err != nil {
		conn.Close()
		return nil, err
	}
	fd, dupErr := -1, error(nil)
	if err := rc.Control(func(cfd uintptr) {
		fd, dupErr = unix.FcntlInt(cfd, unix.F_DUPFD_CLOEXEC, 0)
	}); err != nil {
		dupErr = err
	}
	// Closing the poller's descriptor takes the socket out of the
	// poller; the duplicate keeps it open and bound.
	conn.Close()
	if dupErr != nil {
		return nil, os.NewSyscallError("fcntl", dupErr)
	}
	if err := unix.SetNonblock(fd, false); err != nil {
		unix.Close(fd)
		return nil, os.NewSyscallError("fcntl", err)
	}
	// A write blocked on a full send buffer gives up after a while and
	// drops the answer, as a lost packet.
	tv := unix.Timeval{Sec: 1}
	if err := unix.SetsockoptTimeval(fd, unix.SOL_SOCKET, unix.SO_SNDTIMEO, &tv); err != nil {
		unix.Close(fd)
		return nil, os.NewSyscallError("setsockopt", err)
	}
	s.conn, s.fd = nil, fd
	return s, nil
}

// blocking reports whether the readers wait in the kernel rather than in
// the Go poller.
func (s *socket) blocking() bool { return s.conn == nil }

// shutdown stops the readers: they answer what they hold, read what is
// still queued, and then find the socket closed.
func (s *socket) shutdown() error {
	s.closed.Store(true)
	if s.conn != nil {
		return s.conn.Close()
	}
	// Shutting down the receiving side wakes the readers blocked in
	// recvmmsg; it reports ENOTCONN on a socket with no peer but takes
	// effect all the same. Answers can still be sent.
	_ = unix.Shutdown(s.fd, unix.SHUT_RD)
	return nil
}

// release frees the socket once no reader uses it any more; before that, a
// closed descriptor number could be reused under a reader's feet.
func (s *socket) release() {
	if s.conn == nil {
		unix.Close(s.fd)
	}
}

// mmsghdr is struct mmsghdr: a message header and the length the kernel
// moved. Go pads it as C does on every Linux architecture.
type mmsghdr struct {
	hdr unix.Msghdr
	n   uint32
}

// batch is one reader's packets in hand: the requests of the last read and
// the answers queued for them. Every buffer is allocated once, and the
// headers point into them, so a batch must not be copied.
type batch struct {
	sock *socket
	// rc is the socket in poller mode.
	rc syscall.RawConn

	in    []mmsghdr
	inIov []unix.Iovec
	inBuf [][]byte
	// names holds each request's source exactly as the kernel gave it;
	// the answer goes back to it unchanged, so an IPv4 client of a
	// dual-stack socket is answered on its IPv4-mapped address, with
	// the same scope for a link-local one.
	names []unix.RawSockaddrInet6

	out    []mmsghdr
	outIov []unix.Iovec
	outBuf [][]byte
	queued int
	// sent is how many of the queued answers flush has written.
	sent int

	// The system call's outcome, set inside the RawConn callbacks; the
	// callbacks are method values bound once, so that a call allocates
	// no closure.
	n       int
	errno   syscall.Errno
	readFn  func(fd uintptr) bool
	writeFn func(fd uintptr) bool
}

func (s *socket) newBatch(size int) (*batch, error) {
	b := &batch{
		sock:   s,
		in:     make([]mmsghdr, size),
		inIov:  make([]unix.Iovec, size),
		inBuf:  make([][]byte, size),
		names:  make([]unix.RawSockaddrInet6, size),
		out:    make([]mmsghdr, size),
		outIov: make([]unix.Iovec, size),
		outBuf: make([][]byte, size),
	}
	slab := make([]byte, size*(maxPacket+1))
	for i := range size {
		b.inBuf[i] = slab[i*(maxPacket+1) : (i+1)*(maxPacket+1)]
		b.inIov[i].Base = &b.inBuf[i][0]
		b.inIov[i].SetLen(maxPacket + 1)
		b.in[i].hdr.Name = (*byte)(unsafe.Pointer(&b.names[i]))
		b.in[i].hdr.Iov = &b.inIov[i]
		b.in[i].hdr.SetIovlen(1)
		b.outBuf[i] = make([]byte, 0, answerCap)
		b.out[i].hdr.Iov = &b.outIov[i]
		b.out[i].hdr.SetIovlen(1)
	}
	if s.conn != nil {
		rc, err := s.conn.SyscallConn()
		if err != nil {
			return nil, err
		}
		b.rc = rc
		b.readFn = b.recv
		b.writeFn = b.send
	}
	return b, nil
}

// read waits for packets and reads as many as are queued, up to the batch
// size. It drops the answers of the previous read, written or not.
func (b *batch) read() (int, error) {
	b.queued = 0
	for i := range b.in {
		b.in[i].hdr.Namelen = unix.SizeofSockaddrInet6
		b.in[i].hdr.Flags = 0
		b.in[i].n = 0
	}
	b.n, b.errno = 0, 0
	if b.rc == nil {
		b.recvBlocking()
		if b.n == 0 && b.sock.closed.Load() {
			return 0, net.ErrClosed
		}
	} else if err := b.rc.Read(b.readFn); err != nil {
		return 0, err
	}
	if b.errno != 0 {
		return 0, os.NewSyscallError("recvmmsg", b.errno)
	}
	return b.n, nil
}

// recvBlocking waits in the kernel for at least one packet and takes what
// else is queued, up to the batch size.
func (b *batch) recvBlocking() {
	for {
		n, _, errno := unix.Syscall6(unix.SYS_RECVMMSG, uintptr(b.sock.fd), uintptr(unsafe.Pointer(&b.in[0])), uintptr(len(b.in)), unix.MSG_WAITFORONE, 0, 0)
		switch errno {
		case 0:
			b.n = int(n)
			if b.sock.closed.Load() {
				// Once the queue is empty, a shut down
				// socket reads as empty messages from no
				// address; the packets before them are
				// real.
				for i := range b.n {
					if b.in[i].hdr.Namelen == 0 {
						b.n = i
						break
					}
				}
			}
			return
		case unix.EINTR:
			continue
		case unix.EAGAIN:
			// No timeout is set, but a shut down socket may
			// say so rather than read as empty messages.
			if b.sock.closed.Load() {
				return
			}
			continue
		}
		b.errno = errno
		return
	}
}

func (b *batch) recv(fd uintptr) bool {
	for {
		n, _, errno := unix.Syscall6(unix.SYS_RECVMMSG, fd, uintptr(unsafe.Pointer(&b.in[0])), uintptr(len(b.in)), unix.MSG_DONTWAIT, 0, 0)
		switch errno {
		case 0:
			b.n = int(n)
			return true
		case unix.EINTR:
			continue
		case unix.EAGAIN:
			// Nothing queued: the poller waits for more.
			return false
		}
		b.errno = errno
		return true
	}
}

// packet returns request i of the last read and its source. A packet longer
// than maxPacket comes back with maxPacket+1 bytes, for the caller to drop.
func (b *batch) packet(i int) ([]byte, netip.AddrPort) {
	p := b.inBuf[i][:b.in[i].n]
	sa := &b.names[i]
	// The port is in network order in both families' layouts.
	port := uint16(sa.Port>>8) | uint16(sa.Port<<8)
	switch sa.Family {
	case unix.AF_INET6:
		return p, netip.AddrPortFrom(netip.AddrFrom16(sa.Addr), port)
	case unix.AF_INET:
		sa4 := (*unix.RawSockaddrInet4)(unsafe.Pointer(sa))
		return p, netip.AddrPortFrom(netip.AddrFrom4(sa4.Addr), port)
	}
	return p, netip.AddrPort{}
}

// answerBuf returns an empty buffer to build the next answer in.
func (b *batch) answerBuf() []byte {
	return b.outBuf[b.queued][:0]
}

// answer queues out, built in the buffer answerBuf returned, as the answer
// to request i.
func (b *batch) answer(i int, out []byte) {
	k := b.queued
	b.queued++
	// An answer that outgrew its buffer got a larger one; it is kept.
	b.outBuf[k] = out[:0]
	b.outIov[k].Base = unsafe.SliceData(out)
	b.outIov[k].SetLen(len(out))
	b.out[k].hdr.Name = b.in[i].hdr.Name
	b.out[k].hdr.Namelen = b.in[i].hdr.Namelen
	b.out[k].n = 0
}

// flush writes the queued answers in as few system calls as the kernel
// allows. An answer the kernel refuses is dropped, as a lost packet would
// be, and the rest still go; an error of the socket itself (closed, past
// its write deadline) drops them all and is returned.
func (b *batch) flush() error {
	defer func() { b.queued = 0 }()
	for b.sent = 0; b.sent < b.queued; {
		b.n, b.errno = 0, 0
		if b.rc == nil {
			b.sendBlocking()
		} else if err := b.rc.Write(b.writeFn); err != nil {
			return err
		}
		switch b.errno {
		case 0:
		case unix.EAGAIN:
			// The send timeout of blocking mode: the buffer
			// has not drained for a second, and would not for
			// the rest either.
			return os.NewSyscallError("sendmmsg", b.errno)
		default:
			// sendmmsg reports an error only when it sent
			// nothing: the first message is the one refused.
			b.n = 1
		}
		b.sent += b.n
	}
	return nil
}

func (b *batch) sendBlocking() {
	for {
		n, _, errno := unix.Syscall6(unix.SYS_SENDMMSG, uintptr(b.sock.fd), uintptr(unsafe.Pointer(&b.out[b.sent])), uintptr(b.queued-b.sent), unix.MSG_NOSIGNAL, 0, 0)
		if errno == unix.EINTR {
			continue
		}
		b.n, b.errno = int(n), errno
		return
	}
}

func (b *batch) send(fd uintptr) bool {
	for {
		n, _, errno := unix.Syscall6(unix.SYS_SENDMMSG, fd, uintptr(unsafe.Pointer(&b.out[b.sent])), uintptr(b.queued-b.sent), unix.MSG_DONTWAIT|unix.MSG_NOSIGNAL, 0, 0)
		switch errno {
		case 0:
			b.n = int(n)
			return true
		case unix.EINTR:
			continue
		case unix.EAGAIN:
			// The send buffer is full: wait until it drains (or
			// the write deadline passes).
			return false
		}
		b.errno = errno
		return true
	}
}
