package memory

import (
	"encoding/binary"
	"math/bits"
	"math/rand/v2"
	"testing"

	"github.com/chihaya/chihaya/bittorrent"
)

// sipHash24 is SipHash-2-4 of a message of any length, written the plain
// way from the paper, as a reference for peerKey.sum.
func sipHash24(k0, k1 uint64, msg []byte) uint64 {
	v := [4]uint64{k0 ^ 0x736f6d6570736575, k1 ^ 0x646f72616e646f6d, k0 ^ 0x6c7967656e657261, k1 ^ 0x7465646279746573}
	round := func() {
		v[0] += v[1]
		v[1] = bits.RotateLeft64(v[1], 13) ^ v[0]
		v[0] = bits.RotateLeft64(v[0], 32)
		v[2] += v[3]
		v[3] = bits.RotateLeft64(v[3], 16) ^ v[2]
		v[0] += v[3]
		v[3] = bits.RotateLeft64(v[3], 21) ^ v[0]
		v[2] += v[1]
		v[1] = bits.RotateLeft64(v[1], 17) ^ v[2]
		v[2] = bits.RotateLeft64(v[2], 32)
	}
	compress := func(m uint64) {
		v[3] ^= m
		round()
		round()
		v[0] ^= m
	}
	n := len(msg)
	for ; len(msg) >= 8; msg = msg[8:] {
		compress(binary.LittleEndian.Uint64(msg))
	}
	last := uint64(n) << 56
	for i, c := range msg {
		last |= uint64(c) << (8 * i)
	}
	compress(last)
	v[2] ^= 0xff
	for range 4 {
		round()
	}
	return v[0] ^ v[1] ^ v[2] ^ v[3]
}

func TestPeerKeyIsSipHash(t *testing.T) {
	// The paper's example: key 00..0f, message 00..0e.
	msg := make([]byte, 15)
	for i := range msg {
		msg[i] = byte(i)
	}
	k0, k1 := uint64(0x0706050403020100), uint64(0x0f0e0d0c0b0a0908)
	if got := sipHash24(k0, k1, msg); got != 0xa129ca6149be45e5 {
		t.Fatalf("reference SipHash-2-4 = %#x, want 0xa129ca6149be45e5", got)
	}
	rng := rand.New(rand.NewPCG(3, 4))
	for range 1000 {
		k := peerKey{rng.Uint64(), rng.Uint64()}
		user := rng.Uint32()
		var id bittorrent.PeerID
		for i := range id {
			id[i] = byte(rng.Uint32())
		}
		in := binary.LittleEndian.AppendUint32(nil, user)
		in = append(in, id[:]...)
		if got, want := k.sum(user, &id), sipHash24(k[0], k[1], in); got != want {
			t.Fatalf("sum(%d, %x) with key %x = %#x, want %#x", user, id, k, got, want)
		}
	}
}
