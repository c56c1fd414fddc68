package udp

import (
	"crypto/rand"
	"encoding/binary"
	"net/netip"
	"time"

	"github.com/dchest/siphash"
)

// connIDs issues and checks BEP 15 connection IDs without keeping any
// state: an ID is the second it was issued (32 bits) and a MAC of that
// second and the client's address and port (32 bits) under a secret key.
// Only the address that asked for an ID can use it, only while it is fresh,
// and forging one takes 2^32 tries on average, each a packet that earns
// nothing but a short error.
type connIDs struct {
	k0, k1   uint64
	lifetime time.Duration
	// skew is how far in the future an ID's time may be, for trackers
	// sharing a key whose clocks differ a little.
	skew time.Duration
}

func newConnIDs(key [16]byte, lifetime time.Duration) *connIDs {
	if key == ([16]byte{}) {
		// crypto/rand.Read never fails on supported platforms.
		_, _ = rand.Read(key[:])
	}
	return &connIDs{
		k0:       binary.LittleEndian.Uint64(key[:8]),
		k1:       binary.LittleEndian.Uint64(key[8:]),
		lifetime: lifetime,
		skew:     10 * time.Second,
	}
}

func (c *connIDs) mac(addr netip.AddrPort, issued uint32) uint32 {
	var msg [22]byte
	a := addr.Addr().As16()
	copy(msg[:16], a[:])
	binary.BigEndian.PutUint16(msg[16:], addr.Port())
	binary.BigEndian.PutUint32(msg[18:], issued)
	return uint32(siphash.Hash(c.k0, c.k1, msg[:]))
}

// issue returns a connection ID for addr.
func (c *connIDs) issue(addr netip.AddrPort, now time.Time) uint64 {
	issued := uint32(now.Unix())
	return uint64(issued)<<32 | uint64(c.mac(addr, issued))
}

// connIDStatus is the outcome of checking a connection ID.
type connIDStatus uint8

const (
	connIDValid connIDStatus = iota
	connIDExpired
	connIDInvalid
)

// check tells whether id was issued to addr and is still fresh.
func (c *connIDs) check(id uint64, addr netip.AddrPort, now time.Time) connIDStatus {
	issued := uint32(id >> 32)
	if c.mac(addr, issued) != uint32(id) {
		return connIDInvalid
	}
	// The difference is taken in 32 bits so that it stays right when
	// the seconds counter wraps (in 2106).
	age := time.Duration(int32(uint32(now.Unix())-issued)) * time.Second
	if age > c.lifetime || age < -c.skew {
		return connIDExpired
	}
	return connIDValid
}
