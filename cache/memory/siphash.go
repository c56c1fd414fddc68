package memory

import (
	"encoding/binary"
	"math/bits"

	"github.com/chihaya/chihaya/bittorrent"
)

// peerKey is the secret that turns a peer's identity into the 64-bit hash
// a swarm stores instead of the user id and peer id (24 bytes). A client
// picks its own peer id, so with a known function it could aim a
// collision at another peer; keyed SipHash-2-4 leaves it nothing to aim
// with. The key is random per store and travels in the snapshot, so that
// the hashes of loaded swarms keep their meaning.
type peerKey [2]uint64

// sum returns the keyed hash of (user, id): SipHash-2-4 of the 24 bytes
// user (little-endian) followed by id.
func (k *peerKey) sum(user uint32, id *bittorrent.PeerID) uint64 {
	m0 := uint64(user) | uint64(binary.LittleEndian.Uint32(id[0:4]))<<32
	m1 := binary.LittleEndian.Uint64(id[4:12])
	m2 := binary.LittleEndian.Uint64(id[12:20])
	v0 := k[0] ^ 0x736f6d6570736575
	v1 := k[1] ^ 0x646f72616e646f6d
	v2 := k[0] ^ 0x6c7967656e657261
	v3 := k[1] ^ 0x7465646279746573
	for _, m := range [...]uint64{m0, m1, m2, 24 << 56} {
		v3 ^= m
		v0, v1, v2, v3 = sipRound(v0, v1, v2, v3)
		v0, v1, v2, v3 = sipRound(v0, v1, v2, v3)
		v0 ^= m
	}
	v2 ^= 0xff
	for range 4 {
		v0, v1, v2, v3 = sipRound(v0, v1, v2, v3)
	}
	return v0 ^ v1 ^ v2 ^ v3
}

func sipRound(v0, v1, v2, v3 uint64) (uint64, uint64, uint64, uint64) {
	v0 += v1
	v1 = bits.RotateLeft64(v1, 13)
	v1 ^= v0
	v0 = bits.RotateLeft64(v0, 32)
	v2 += v3
	v3 = bits.RotateLeft64(v3, 16)
	v3 ^= v2
	v0 += v3
	v3 = bits.RotateLeft64(v3, 21)
	v3 ^= v0
	v2 += v1
	v1 = bits.RotateLeft64(v1, 17)
	v1 ^= v2
	v2 = bits.RotateLeft64(v2, 32)
	return v0, v1, v2, v3
}
