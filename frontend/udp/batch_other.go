//go:build !linux

package udp

import (
	"net"
	"net/netip"
)

// socket is the frontend's UDP socket.
type socket struct {
	conn *net.UDPConn
	addr net.Addr
}

// blocking reports whether the readers wait in the kernel: never here.
func (s *socket) blocking() bool { return false }

// listen opens the socket. Readers always wait in the Go poller here.
func listen(addr *net.UDPAddr, _ bool) (*socket, error) {
	conn, err := net.ListenUDP("udp", addr)
	if err != nil {
		return nil, err
	}
	tuneBuffers(conn)
	return &socket{conn: conn, addr: conn.LocalAddr()}, nil
}

// shutdown closes the socket, which stops the readers.
func (s *socket) shutdown() error { return s.conn.Close() }

// release has nothing left to free once the socket is closed.
func (s *socket) release() {}

// batch is one reader's packets in hand. Without recvmmsg and sendmmsg a
// batch holds one packet, moved with the ordinary calls.
type batch struct {
	conn   *net.UDPConn
	in     [maxPacket + 1]byte
	n      int
	from   netip.AddrPort
	out    []byte
	queued bool
}

func (s *socket) newBatch(int) (*batch, error) {
	return &batch{conn: s.conn, out: make([]byte, 0, answerCap)}, nil
}

// read waits for a packet and reads it.
func (b *batch) read() (int, error) {
	b.queued = false
	n, from, err := b.conn.ReadFromUDPAddrPort(b.in[:])
	if err != nil {
		return 0, err
	}
	b.n, b.from = n, from
	return 1, nil
}

// packet returns the packet read and its source.
func (b *batch) packet(int) ([]byte, netip.AddrPort) {
	return b.in[:b.n], b.from
}

// answerBuf returns an empty buffer to build the answer in.
func (b *batch) answerBuf() []byte {
	return b.out[:0]
}

// answer queues out as the answer to the packet read.
func (b *batch) answer(_ int, out []byte) {
	b.out = out
	b.queued = true
}

// flush writes the answer, if there is one.
func (b *batch) flush() error {
	if !b.queued {
		return nil
	}
	b.queued = false
	_, err := b.conn.WriteToUDPAddrPort(b.out, b.from)
	if err != nil && isClosed(err) {
		return err
	}
	// Any other error concerns this one answer, which is dropped as a
	// lost packet would be.
	return nil
}
