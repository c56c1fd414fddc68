//go:build linux

package udp

import (
	"net"
	"net/netip"
	"os"
	"syscall"
	"unsafe"

	"golang.org/x/sys/unix"
)

// On Linux a reader moves whole batches of packets with recvmmsg and
// sendmmsg: with one system call per packet each way, the calls cost more
// CPU than the tracker logic. The calls are made here rather than through
// x/net's ReadBatch, which allocates a net.UDPAddr for every packet read.

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

func newBatch(conn *net.UDPConn, size int) (*batch, error) {
	rc, err := conn.SyscallConn()
	if err != nil {
		return nil, err
	}
	b := &batch{
		rc:     rc,
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
	b.readFn = b.recv
	b.writeFn = b.send
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
	if err := b.rc.Read(b.readFn); err != nil {
		return 0, err
	}
	if b.errno != 0 {
		return 0, os.NewSyscallError("recvmmsg", b.errno)
	}
	return b.n, nil
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
		if err := b.rc.Write(b.writeFn); err != nil {
			return err
		}
		if b.errno != 0 {
			// sendmmsg reports an error only when it sent
			// nothing: the first message is the one refused.
			b.n = 1
		}
		b.sent += b.n
	}
	return nil
}

func (b *batch) send(fd uintptr) bool {
	for {
		n, _, errno := unix.Syscall6(unix.SYS_SENDMMSG, fd, uintptr(unsafe.Pointer(&b.out[b.sent])), uintptr(b.queued-b.sent), unix.MSG_DONTWAIT, 0, 0)
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
