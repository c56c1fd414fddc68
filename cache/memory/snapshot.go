package memory

import (
	"bufio"
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"io"
	"io/fs"
	"math/rand/v2"
	"net/netip"
	"os"
	"path/filepath"
	"time"

	"github.com/chihaya/chihaya/bittorrent"
	"github.com/chihaya/chihaya/cache"
)

// A snapshot is every swarm of a store, written by Close and read back by
// Open so that a graceful restart keeps the swarms. All integers are
// big-endian.
//
//	header   magic "CHYSWARM", version uint16 (2), reserved uint16 (0),
//	         the writer's wall clock int64 (Unix nanoseconds),
//	         the store's peer key, two uint64
//	swarm    tag uint8 (1), info hash [20], snatches uint32,
//	         age of the last announce uint32 (seconds), peer count uint32,
//	         then that many peers
//	peer     flags uint8 (1 IPv4 endpoint, 2 IPv6 endpoint, 4 seeder,
//	         8 paused, 16 snatched, 32 totals, 64 peer id; at least one
//	         endpoint), the peer's keyed hash uint64;
//	         with flag 32: uploaded uint64, downloaded uint64;
//	         with flag 64: peer id [20];
//	         with flag 1: IPv4 address [4], port uint16, age uint32;
//	         with flag 2: IPv6 address [16], port uint16, age uint32
//	trailer  tag uint8 (0), swarm count uint64, peer count uint64,
//	         CRC-32C (Castagnoli) of every byte before it, uint32
//
// Times are ages, in seconds before the writer's clock, so they mean the
// same in a store opened later: the reader adds the time that passed since
// the snapshot was written and drops what has outlived the peer lifetime
// meanwhile. Peers are stored by the hash of their identity, which only
// means something with the key that made it, so the key is in the header
// and the reading store adopts it. An IPv4 peer takes 19 bytes with neither
// totals nor peer id; a swarm 33 bytes beside its peers.
//
// Version 1 files, which stored the user id and peer id of every peer and
// always the totals, are still read: their peers are hashed with a new key
// on loading.
const (
	snapMagic   = "CHYSWARM"
	snapVersion = 2

	snapHeaderSize  = len(snapMagic) + 2 + 2 + 8
	snapKeySize     = 16
	snapSwarmSize   = 20 + 4 + 4 + 4
	snapEndpoint4   = 4 + 2 + 4
	snapEndpoint6   = 16 + 2 + 4
	snapTrailerSize = 8 + 8
	// snapV1PeerSize is a version 1 peer after its flags: user, peer id,
	// totals.
	snapV1PeerSize = 4 + 20 + 8 + 8

	snapTagEnd   = 0
	snapTagSwarm = 1

	// Peer flags. The first five mean the same in both versions.
	snapHas4     = 1
	snapHas6     = 2
	snapSeeder   = 4
	snapPaused   = 8
	snapSnatched = 16
	snapTotals   = 32
	snapID       = 64
	snapV1Flags  = snapHas4 | snapHas6 | snapSeeder | snapPaused | snapSnatched
	snapV2Flags  = snapV1Flags | snapTotals | snapID

	// snapChunk is how much encoded data is collected before it is written
	// out, and the reader's buffer size.
	snapChunk = 64 << 10
)

var castagnoli = crc32.MakeTable(crc32.Castagnoli)

var (
	errSnapMagic     = errors.New("not a chihaya swarm snapshot (wrong magic bytes)")
	errSnapChecksum  = errors.New("checksum mismatch: the snapshot is corrupt")
	errSnapTruncated = fmt.Errorf("the snapshot ends early: %w", io.ErrUnexpectedEOF)
	errSnapNotEmpty  = errors.New("a snapshot is only loaded into a store with no swarms")
)

var _ cache.Snapshotter = (*store)(nil)

// snapStats describes a snapshot written or read.
type snapStats struct {
	// swarms and peers were written, or loaded.
	swarms, peers int
	// expiredSwarms and expiredPeers were in the snapshot but outlived the
	// peer lifetime before it was loaded.
	expiredSwarms, expiredPeers int
	bytes                       int64
	// written is the writer's clock.
	written time.Time
}

// WriteSnapshot implements cache.Snapshotter.
func (st *store) WriteSnapshot(w io.Writer) error {
	_, err := st.writeSnapshot(w)
	return err
}

// ReadSnapshot implements cache.Snapshotter.
func (st *store) ReadSnapshot(r io.Reader) error {
	_, err := st.readSnapshot(r)
	return err
}

// writeSnapshot encodes the swarms one shard at a time under that shard's
// lock, and writes what it collected after letting go of the lock once it
// has a chunk's worth, so the only copy it holds is about one shard's.
// Stale endpoints are swept first, as a scrape would.
func (st *store) writeSnapshot(w io.Writer) (snapStats, error) {
	wall := st.now()
	now := st.seconds(wall)
	stats := snapStats{written: wall}
	buf := make([]byte, 0, 2*snapChunk)
	buf = append(buf, snapMagic...)
	buf = binary.BigEndian.AppendUint16(buf, snapVersion)
	buf = binary.BigEndian.AppendUint16(buf, 0)
	buf = binary.BigEndian.AppendUint64(buf, uint64(wall.UnixNano()))

	var crc uint32
	flush := func() error {
		crc = crc32.Update(crc, castagnoli, buf)
		n, err := w.Write(buf)
		stats.bytes += int64(n)
		buf = buf[:0]
		return err
	}
	for i := range st.shards {
		sh := &st.shards[i]
		sh.mu.Lock()
		if i == 0 {
			// The key only changes under every shard lock.
			buf = binary.BigEndian.AppendUint64(buf, st.key[0])
			buf = binary.BigEndian.AppendUint64(buf, st.key[1])
		}
		for h, s := range sh.swarms.All() {
			if !sh.keep(h, s, now, st.life) {
				continue
			}
			buf = s.appendSnapshot(buf, *h, now)
			stats.swarms++
			stats.peers += int(s.peers)
		}
		sh.mu.Unlock()
		if len(buf) >= snapChunk {
			if err := flush(); err != nil {
				return stats, err
			}
		}
	}
	buf = append(buf, snapTagEnd)
	buf = binary.BigEndian.AppendUint64(buf, uint64(stats.swarms))
	buf = binary.BigEndian.AppendUint64(buf, uint64(stats.peers))
	if err := flush(); err != nil {
		return stats, err
	}
	n, err := w.Write(binary.BigEndian.AppendUint32(buf, crc))
	stats.bytes += int64(n)
	return stats, err
}

// age is how many seconds before now something last seen at seen is; a
// clock that went backwards makes it 0.
func age(seen, now uint32) uint32 {
	if now > seen {
		return now - seen
	}
	return 0
}

// appendSnapshot appends the swarm's record to buf: its IPv4 records, each
// with its peer's IPv6 endpoint if it is dual-stack, then the IPv6 records
// of the peers that have no IPv4 one.
func (s *swarm) appendSnapshot(buf []byte, h bittorrent.InfoHash, now uint32) []byte {
	buf = append(buf, snapTagSwarm)
	buf = append(buf, h[:]...)
	buf = binary.BigEndian.AppendUint32(buf, s.snatches)
	buf = binary.BigEndian.AppendUint32(buf, age(s.touched, now))
	buf = binary.BigEndian.AppendUint32(buf, s.peers)
	for i := range int(s.v4.n) {
		j := -1
		if s.v4.flags(i)&dual != 0 {
			j = s.v6.find(s.v4.hash(i))
		}
		buf = appendPeer(buf, &s.v4, i, &s.v6, j, now)
	}
	for j := range int(s.v6.n) {
		if s.v6.flags(j)&dual == 0 {
			buf = appendPeer(buf, nil, -1, &s.v6, j, now)
		}
	}
	return buf
}

// appendPeer appends the peer whose records are slot i of v4 and slot j of
// v6 (-1: none).
func appendPeer(buf []byte, v4 *list, i int, v6 *list, j int, now uint32) []byte {
	l, k := v4, i
	if i < 0 {
		l, k = v6, j
	}
	f := l.flags(k)
	var sf uint8
	if i >= 0 {
		sf |= snapHas4
	}
	if j >= 0 {
		sf |= snapHas6
	}
	if f&seeder != 0 {
		sf |= snapSeeder
	}
	if f&paused != 0 {
		sf |= snapPaused
	}
	if f&snatched != 0 {
		sf |= snapSnatched
	}
	up, down := l.totals(k)
	if up|down != 0 {
		sf |= snapTotals
	}
	if l.layout&withID != 0 {
		sf |= snapID
	}
	buf = append(buf, sf)
	buf = binary.BigEndian.AppendUint64(buf, l.hash(k))
	if sf&snapTotals != 0 {
		buf = binary.BigEndian.AppendUint64(buf, up)
		buf = binary.BigEndian.AppendUint64(buf, down)
	}
	if sf&snapID != 0 {
		id := l.id(k)
		buf = append(buf, id[:]...)
	}
	if i >= 0 {
		buf = appendEndpoint(buf, v4, i, now)
	}
	if j >= 0 {
		buf = appendEndpoint(buf, v6, j, now)
	}
	return buf
}

func appendEndpoint(buf []byte, l *list, i int, now uint32) []byte {
	r := l.rec(i)
	buf = append(buf, r[offAddr:offAddr+int(l.alen)+2]...)
	return binary.BigEndian.AppendUint32(buf, age(l.seen(i), now))
}

// decoder reads a snapshot, keeping the checksum of what it has read and
// its offset for error messages.
type decoder struct {
	r   *bufio.Reader
	crc uint32
	off int64
	buf [snapV1PeerSize + snapEndpoint4 + snapEndpoint6]byte
}

// next reads the next n bytes into a buffer valid until the next call.
func (d *decoder) next(n int) ([]byte, error) {
	b := d.buf[:n]
	if k, err := io.ReadFull(d.r, b); err != nil {
		if errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) {
			return nil, fmt.Errorf("at byte %d: %w", d.off+int64(k), errSnapTruncated)
		}
		return nil, err
	}
	d.crc = crc32.Update(d.crc, castagnoli, b)
	d.off += int64(n)
	return b, nil
}

// errAt describes a malformed part of the snapshot that starts at off.
func errAt(off int64, format string, args ...any) error {
	return fmt.Errorf("at byte %d: %s", off, fmt.Sprintf(format, args...))
}

// rebaser turns ages in a snapshot into this store's seconds.
type rebaser struct {
	// down is the time between the snapshot and now, in seconds.
	down uint64
	now  uint32
	life uint32
}

// seen returns the store second at which something age seconds old in the
// snapshot was seen, and whether it is still within the peer lifetime.
func (rb rebaser) seen(age uint32) (uint32, bool) {
	total := uint64(age) + rb.down
	if total >= uint64(rb.now) {
		// Only with a lifetime beyond the epoch's head start (34 years).
		return 0, total <= uint64(rb.life)
	}
	return rb.now - uint32(total), total <= uint64(rb.life)
}

// swarmReader is what decoding a snapshot needs beside the bytes.
type swarmReader struct {
	d       *decoder
	rb      rebaser
	version uint16
	key     peerKey
	layout  uint8
	// peers is readSwarm's scratch space, kept from swarm to swarm.
	peers []snapPeer
}

// readSnapshot decodes a whole snapshot into new swarms and, only if all of
// it is valid, puts them into the store, which must hold no swarms.
func (st *store) readSnapshot(r io.Reader) (snapStats, error) {
	var stats snapStats
	if !st.empty() {
		return stats, errSnapNotEmpty
	}
	d := &decoder{r: bufio.NewReaderSize(r, snapChunk)}
	b, err := d.next(snapHeaderSize)
	if err != nil {
		return stats, err
	}
	if string(b[:len(snapMagic)]) != snapMagic {
		return stats, errSnapMagic
	}
	b = b[len(snapMagic):]
	sr := swarmReader{d: d, version: binary.BigEndian.Uint16(b), layout: st.layout}
	if sr.version != 1 && sr.version != snapVersion {
		return stats, fmt.Errorf("snapshot format version %d is not supported (this build reads versions 1 and %d)", sr.version, snapVersion)
	}
	if reserved := binary.BigEndian.Uint16(b[2:]); reserved != 0 {
		return stats, errAt(int64(len(snapMagic))+2, "reserved header field is %#x, want 0", reserved)
	}
	stats.written = time.Unix(0, int64(binary.BigEndian.Uint64(b[4:])))
	if sr.version == 1 {
		// Version 1 peers are hashed on loading, with a key of their own.
		sr.key = peerKey{rand.Uint64(), rand.Uint64()}
	} else {
		if b, err = d.next(snapKeySize); err != nil {
			return stats, err
		}
		sr.key = peerKey{binary.BigEndian.Uint64(b), binary.BigEndian.Uint64(b[8:])}
	}

	wall := st.now()
	sr.rb = rebaser{now: st.seconds(wall), life: st.life}
	if down := wall.Sub(stats.written); down > 0 {
		sr.rb.down = uint64(down / time.Second)
	}

	staged := make([]map[bittorrent.InfoHash]*swarm, len(st.shards))
	// dead holds the swarms read but expired, to find duplicates.
	var dead map[bittorrent.InfoHash]struct{}
	var swarms, peers uint64
	for {
		start := d.off
		b, err := d.next(1)
		if err != nil {
			return stats, err
		}
		if b[0] == snapTagEnd {
			break
		}
		if b[0] != snapTagSwarm {
			return stats, errAt(start, "unknown record tag %d", b[0])
		}
		b, err = d.next(snapSwarmSize)
		if err != nil {
			return stats, err
		}
		h := bittorrent.InfoHash(b[:20])
		i := binary.LittleEndian.Uint32(h[:4]) & st.mask
		_, dup := staged[i][h]
		if _, again := dead[h]; dup || again {
			return stats, errAt(start, "swarm %x appears twice", h[:])
		}
		s, live, dropped, err := sr.readSwarm(b[20:])
		if err != nil {
			return stats, fmt.Errorf("swarm %x: %w", h[:], err)
		}
		swarms++
		peers += uint64(int(s.peers) + dropped)
		stats.expiredPeers += dropped
		if !live {
			if dead == nil {
				dead = make(map[bittorrent.InfoHash]struct{})
			}
			dead[h] = struct{}{}
			stats.expiredSwarms++
			continue
		}
		if staged[i] == nil {
			staged[i] = make(map[bittorrent.InfoHash]*swarm)
		}
		staged[i][h] = s
		stats.swarms++
		stats.peers += int(s.peers)
	}

	start := d.off
	b, err = d.next(snapTrailerSize)
	if err != nil {
		return stats, err
	}
	if n, m := binary.BigEndian.Uint64(b), binary.BigEndian.Uint64(b[8:]); n != swarms || m != peers {
		return stats, errAt(start, "the trailer counts %d swarms and %d peers, the snapshot holds %d and %d", n, m, swarms, peers)
	}
	sum := d.crc
	if b, err = d.next(4); err != nil {
		return stats, err
	}
	if binary.BigEndian.Uint32(b) != sum {
		return stats, errSnapChecksum
	}
	if _, err := d.r.ReadByte(); err != io.EOF {
		if err != nil {
			return stats, err
		}
		return stats, errAt(d.off, "data after the checksum")
	}
	stats.bytes = d.off
	return stats, st.install(staged, sr.key)
}

// snapPeer is a peer as a snapshot describes it.
type snapPeer struct {
	flags    uint8
	hash     uint64
	up, down uint64
	id       bittorrent.PeerID
	addr4    netip.Addr
	addr6    netip.Addr
	port4    uint16
	port6    uint16
	// seen4 and seen6 are in store seconds; live4 and live6 say whether
	// the endpoints are still within the lifetime.
	seen4, seen6 uint32
	live4, live6 bool
}

// readPeer decodes one peer.
func (sr *swarmReader) readPeer(p *snapPeer) error {
	d := sr.d
	start := d.off
	b, err := d.next(1)
	if err != nil {
		return err
	}
	f := b[0]
	valid := uint8(snapV2Flags)
	if sr.version == 1 {
		valid = snapV1Flags
	}
	if f&^valid != 0 || f&(snapHas4|snapHas6) == 0 {
		return errAt(start, "invalid peer flags %#x", f)
	}
	*p = snapPeer{flags: f}
	if sr.version == 1 {
		if b, err = d.next(snapV1PeerSize); err != nil {
			return err
		}
		p.id = bittorrent.PeerID(b[4:24])
		p.hash = sr.key.sum(binary.BigEndian.Uint32(b), &p.id)
		p.up, p.down = binary.BigEndian.Uint64(b[24:]), binary.BigEndian.Uint64(b[32:])
		p.flags |= snapID
	} else {
		size := 8
		if f&snapTotals != 0 {
			size += totalsLen
		}
		if f&snapID != 0 {
			size += len(p.id)
		}
		if b, err = d.next(size); err != nil {
			return err
		}
		p.hash = binary.BigEndian.Uint64(b)
		b = b[8:]
		if f&snapTotals != 0 {
			p.up, p.down = binary.BigEndian.Uint64(b), binary.BigEndian.Uint64(b[8:])
			if p.up|p.down == 0 {
				return errAt(start, "totals flagged but zero")
			}
			b = b[totalsLen:]
		}
		if f&snapID != 0 {
			p.id = bittorrent.PeerID(b)
		}
	}
	if f&snapHas4 != 0 {
		if b, err = d.next(snapEndpoint4); err != nil {
			return err
		}
		p.addr4 = netip.AddrFrom4([4]byte(b))
		p.port4 = binary.BigEndian.Uint16(b[4:])
		p.seen4, p.live4 = sr.rb.seen(binary.BigEndian.Uint32(b[6:]))
	}
	if f&snapHas6 != 0 {
		if b, err = d.next(snapEndpoint6); err != nil {
			return err
		}
		p.addr6 = netip.AddrFrom16([16]byte(b))
		if p.addr6.Is4In6() {
			return errAt(start, "an IPv4-mapped address as the IPv6 endpoint")
		}
		p.port6 = binary.BigEndian.Uint16(b[16:])
		p.seen6, p.live6 = sr.rb.seen(binary.BigEndian.Uint32(b[18:]))
	}
	return nil
}

// readSwarm reads the peers of the swarm whose header, after the info
// hash, is hdr, and builds the swarm as announces would have. Peers with
// no endpoint left within the lifetime are dropped and counted in
// dropped. A swarm left with no peers is live while its last announce is
// within the lifetime, as lookup has it.
func (sr *swarmReader) readSwarm(hdr []byte) (s *swarm, live bool, dropped int, err error) {
	rb := sr.rb
	touched, recent := rb.seen(binary.BigEndian.Uint32(hdr[4:]))
	n := binary.BigEndian.Uint32(hdr[8:])
	s = newSwarm(rb.now, sr.layout)
	s.snatches = binary.BigEndian.Uint32(hdr)
	s.touched = touched
	// The live peers are collected first, so that each list is allocated
	// once, at its size and layout.
	live4, live6 := 0, 0
	var totals4, totals6 bool
	sr.peers = sr.peers[:0]
	for range n {
		var p snapPeer
		if err := sr.readPeer(&p); err != nil {
			return nil, false, 0, err
		}
		if !p.live4 && !p.live6 {
			dropped++
			continue
		}
		totals := p.up|p.down != 0
		if p.live4 {
			live4++
			totals4 = totals4 || totals
		}
		if p.live6 {
			live6++
			totals6 = totals6 || totals
		}
		sr.peers = append(sr.peers, p)
	}
	for _, l := range []struct {
		l      *list
		n      int
		totals bool
	}{{&s.v4, live4, totals4}, {&s.v6, live6, totals6}} {
		if l.totals {
			l.l.relayout(l.l.layout | withTotals)
		}
		l.l.b = make([]byte, 0, l.n*int(l.l.stride))
	}
	for i := range sr.peers {
		p := &sr.peers[i]
		if s.v4.find(p.hash) >= 0 || s.v6.find(p.hash) >= 0 {
			return nil, false, 0, fmt.Errorf("peer %016x appears twice", p.hash)
		}
		s.load(p)
	}
	return s, recent || s.peers > 0, dropped, nil
}

// load adds a peer read from a snapshot, with its live endpoints.
func (s *swarm) load(p *snapPeer) {
	var f uint8
	if p.flags&snapSeeder != 0 {
		f |= seeder
		s.seeders++
	}
	if p.flags&snapPaused != 0 {
		f |= paused
	}
	if p.flags&snapSnatched != 0 {
		f |= snatched
	}
	if p.live4 && p.live6 {
		f |= dual
	}
	s.peers++
	add := func(l *list, a netip.Addr, port uint16, seen uint32) {
		i := l.add(p.hash)
		l.setEndpoint(i, a, port, seen)
		l.setTotals(i, p.up, p.down)
		if p.flags&snapID != 0 {
			l.setID(i, &p.id)
		}
		l.setFlags(i, f)
		s.oldest = min(s.oldest, seen)
	}
	if p.live4 {
		add(&s.v4, p.addr4, p.port4, p.seen4)
	}
	if p.live6 {
		add(&s.v6, p.addr6, p.port6, p.seen6)
	}
}

// empty reports whether the store holds no swarms.
func (st *store) empty() bool {
	for i := range st.shards {
		sh := &st.shards[i]
		sh.mu.Lock()
		n := sh.swarms.Len()
		sh.mu.Unlock()
		if n > 0 {
			return false
		}
	}
	return true
}

// install puts staged swarms, by shard, into the store if it still holds
// none. It takes every shard lock at once, so that an announce that slipped
// in meanwhile makes it load nothing rather than part.
func (st *store) install(staged []map[bittorrent.InfoHash]*swarm, key peerKey) error {
	for i := range st.shards {
		st.shards[i].mu.Lock()
	}
	defer func() {
		for i := range st.shards {
			st.shards[i].mu.Unlock()
		}
	}()
	for i := range st.shards {
		if st.shards[i].swarms.Len() > 0 {
			return errSnapNotEmpty
		}
	}
	st.key = key
	for i, m := range staged {
		sh := &st.shards[i]
		for h, s := range m {
			sh.swarms.Set(&h, s)
		}
	}
	return nil
}

// checkSnapshotPath makes sure, when the store opens, that the snapshot
// can be written where the configuration says, rather than finding out at
// shutdown.
func checkSnapshotPath(file string) error {
	dir := filepath.Dir(file)
	fi, err := os.Stat(dir)
	if errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("the directory %s does not exist", dir)
	}
	if err != nil {
		return err
	}
	if !fi.IsDir() {
		return fmt.Errorf("%s is not a directory", dir)
	}
	if fi, err := os.Stat(file); err == nil && !fi.Mode().IsRegular() {
		return fmt.Errorf("%s is not a regular file", file)
	}
	return nil
}

// loadSnapshotFile loads the snapshot file if there is one. A snapshot that
// cannot be loaded is logged and renamed to <file>.rejected, for whoever
// wants to look at it, and the store starts empty; one that was loaded is
// removed, so that a crash later cannot bring back swarms that old.
func (st *store) loadSnapshotFile() {
	file := st.snapshotFile
	start := time.Now()
	f, err := os.Open(file)
	if errors.Is(err, fs.ErrNotExist) {
		st.log.Info("no swarm snapshot to load", "file", file)
		return
	}
	if err != nil {
		st.log.Warn("swarm snapshot not loaded; starting with no swarms", "file", file, "err", err)
		return
	}
	stats, err := st.readSnapshot(f)
	f.Close()
	if err != nil {
		rejected := file + ".rejected"
		if rerr := os.Rename(file, rejected); rerr != nil {
			rejected = ""
			st.log.Warn("could not set the rejected snapshot aside", "file", file, "err", rerr)
		}
		st.log.Warn("swarm snapshot ignored; starting with no swarms", "file", file, "err", err, "moved_to", rejected)
		return
	}
	if err := os.Remove(file); err != nil {
		st.log.Warn("could not remove the loaded swarm snapshot", "file", file, "err", err)
	}
	st.log.Info("swarm snapshot loaded", "file", file,
		"swarms", stats.swarms, "peers", stats.peers,
		"expired_swarms", stats.expiredSwarms, "expired_peers", stats.expiredPeers,
		"bytes", stats.bytes, "written", stats.written.UTC().Format(time.RFC3339),
		"took", time.Since(start))
}

// saveSnapshotFile writes the snapshot to <file>.tmp, syncs it to disk and
// renames it over the file, so the file is always a whole snapshot, the
// new one or the previous one.
func (st *store) saveSnapshotFile() error {
	file := st.snapshotFile
	tmp := file + ".tmp"
	start := time.Now()
	f, err := os.OpenFile(tmp, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o600)
	if err != nil {
		return fmt.Errorf("snapshot_file: %w", err)
	}
	stats, err := st.writeSnapshot(f)
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Rename(tmp, file)
	}
	if err != nil {
		os.Remove(tmp)
		return fmt.Errorf("snapshot_file: writing %s: %w", file, err)
	}
	// The rename is durable once the directory is synced.
	if dir, err := os.Open(filepath.Dir(file)); err == nil {
		if err := dir.Sync(); err != nil {
			st.log.Warn("could not sync the snapshot's directory", "file", file, "err", err)
		}
		dir.Close()
	}
	st.log.Info("swarm snapshot written", "file", file,
		"swarms", stats.swarms, "peers", stats.peers, "bytes", stats.bytes,
		"took", time.Since(start))
	return nil
}
