package memory

import (
	"bufio"
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"io"
	"io/fs"
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
//	header   magic "CHYSWARM", version uint16 (1), reserved uint16 (0),
//	         the writer's wall clock int64 (Unix nanoseconds)
//	swarm    tag uint8 (1), info hash [20], snatches uint32,
//	         age of the last announce uint32 (seconds), peer count uint32,
//	         then that many peers
//	peer     flags uint8 (1 IPv4 endpoint, 2 IPv6 endpoint, 4 seeder,
//	         8 paused, 16 snatched; at least one endpoint), user uint32,
//	         peer id [20], uploaded uint64, downloaded uint64;
//	         with flag 1: IPv4 address [4], port uint16, age uint32;
//	         with flag 2: IPv6 address [16], port uint16, age uint32
//	trailer  tag uint8 (0), swarm count uint64, peer count uint64,
//	         CRC-32C (Castagnoli) of every byte before it, uint32
//
// Times are ages, in seconds before the writer's clock, so they mean the
// same in a store opened later: the reader adds the time that passed since
// the snapshot was written and drops what has outlived the peer lifetime
// meanwhile. A peer takes 51 bytes with an IPv4 endpoint only, 63 with an
// IPv6 one only, 73 with both; a swarm 33 bytes beside its peers.
const (
	snapMagic   = "CHYSWARM"
	snapVersion = 1

	snapHeaderSize  = len(snapMagic) + 2 + 2 + 8
	snapSwarmSize   = 20 + 4 + 4 + 4
	snapPeerSize    = 4 + 20 + 8 + 8 // after the flags byte
	snapEndpoint4   = 4 + 2 + 4
	snapEndpoint6   = 16 + 2 + 4
	snapTrailerSize = 8 + 8

	snapTagEnd   = 0
	snapTagSwarm = 1

	// snapFlags are the peer flags a snapshot may carry. Their values are
	// the record's flags; TestSnapshotFlagValues pins them, since changing
	// one changes the format.
	snapFlags = has4 | has6 | seeder | paused | snatched

	// snapChunk is how much encoded data is collected before it is written
	// out, and the reader's buffer size.
	snapChunk = 64 << 10
	// snapMaxPrealloc bounds the peers allocated for a swarm before they
	// are read, so that a peer count a corrupt file inflates costs no more
	// memory than the data that is actually there.
	snapMaxPrealloc = 4096
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
		for h := range sh.swarms {
			s := sh.lookup(h, now, st.life)
			if s == nil {
				continue
			}
			buf = s.appendSnapshot(buf, h, now)
			stats.swarms++
			stats.peers += len(s.peers)
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

// appendSnapshot appends the swarm's record to buf.
func (s *swarm) appendSnapshot(buf []byte, h bittorrent.InfoHash, now uint32) []byte {
	buf = append(buf, snapTagSwarm)
	buf = append(buf, h[:]...)
	buf = binary.BigEndian.AppendUint32(buf, s.snatches)
	buf = binary.BigEndian.AppendUint32(buf, age(s.touched, now))
	buf = binary.BigEndian.AppendUint32(buf, uint32(len(s.peers)))
	for i := range s.peers {
		p := &s.peers[i]
		buf = append(buf, p.flags)
		buf = binary.BigEndian.AppendUint32(buf, p.key.user)
		buf = append(buf, p.key.id[:]...)
		buf = binary.BigEndian.AppendUint64(buf, p.uploaded)
		buf = binary.BigEndian.AppendUint64(buf, p.downloaded)
		if p.flags&has4 != 0 {
			buf = append(buf, p.addr4[:]...)
			buf = binary.BigEndian.AppendUint16(buf, p.port4)
			buf = binary.BigEndian.AppendUint32(buf, age(p.seen4, now))
		}
		if p.flags&has6 != 0 {
			buf = append(buf, p.addr6[:]...)
			buf = binary.BigEndian.AppendUint16(buf, p.port6)
			buf = binary.BigEndian.AppendUint32(buf, age(p.seen6, now))
		}
	}
	return buf
}

// decoder reads a snapshot, keeping the checksum of what it has read and
// its offset for error messages.
type decoder struct {
	r   *bufio.Reader
	crc uint32
	off int64
	buf [snapPeerSize + snapEndpoint4 + snapEndpoint6]byte
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
	if v := binary.BigEndian.Uint16(b); v != snapVersion {
		return stats, fmt.Errorf("snapshot format version %d is not supported (this build reads version %d)", v, snapVersion)
	}
	if reserved := binary.BigEndian.Uint16(b[2:]); reserved != 0 {
		return stats, errAt(int64(len(snapMagic))+2, "reserved header field is %#x, want 0", reserved)
	}
	stats.written = time.Unix(0, int64(binary.BigEndian.Uint64(b[4:])))

	wall := st.now()
	rb := rebaser{now: st.seconds(wall), life: st.life}
	if down := wall.Sub(stats.written); down > 0 {
		rb.down = uint64(down / time.Second)
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
		s, live, dropped, err := d.readSwarm(b[20:], rb)
		if err != nil {
			return stats, fmt.Errorf("swarm %x: %w", h[:], err)
		}
		swarms++
		peers += uint64(len(s.peers) + dropped)
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
		stats.peers += len(s.peers)
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
	return stats, st.install(staged)
}

// readSwarm reads the peers of the swarm whose header, after the info
// hash, is hdr, and builds the swarm as announces would have: downloaders
// first, the seeder count, the index. Peers with no endpoint left within
// the lifetime are dropped and counted in dropped. A swarm left with no
// peers is live while its last announce is within the lifetime, as lookup
// has it.
func (d *decoder) readSwarm(hdr []byte, rb rebaser) (s *swarm, live bool, dropped int, err error) {
	snatches := binary.BigEndian.Uint32(hdr)
	touched, recent := rb.seen(binary.BigEndian.Uint32(hdr[4:]))
	n := binary.BigEndian.Uint32(hdr[8:])
	s = &swarm{
		snatches: snatches,
		touched:  touched,
		oldest:   rb.now,
		peers:    make([]peer, 0, min(n, snapMaxPrealloc)),
	}
	for range n {
		start := d.off
		b, err := d.next(1)
		if err != nil {
			return nil, false, 0, err
		}
		f := b[0]
		if f&^snapFlags != 0 || f&(has4|has6) == 0 {
			return nil, false, 0, errAt(start, "invalid peer flags %#x", f)
		}
		size := snapPeerSize
		if f&has4 != 0 {
			size += snapEndpoint4
		}
		if f&has6 != 0 {
			size += snapEndpoint6
		}
		if b, err = d.next(size); err != nil {
			return nil, false, 0, err
		}
		p := peer{
			flags:      f,
			key:        peerKey{user: binary.BigEndian.Uint32(b), id: bittorrent.PeerID(b[4:24])},
			uploaded:   binary.BigEndian.Uint64(b[24:]),
			downloaded: binary.BigEndian.Uint64(b[32:]),
		}
		b = b[snapPeerSize:]
		if f&has4 != 0 {
			p.addr4 = [4]byte(b)
			p.port4 = binary.BigEndian.Uint16(b[4:])
			var live bool
			if p.seen4, live = rb.seen(binary.BigEndian.Uint32(b[6:])); !live {
				p.flags &^= has4
			}
			b = b[snapEndpoint4:]
		}
		if f&has6 != 0 {
			p.addr6 = [16]byte(b)
			if netip.AddrFrom16(p.addr6).Is4In6() {
				return nil, false, 0, errAt(start, "an IPv4-mapped address as the IPv6 endpoint")
			}
			p.port6 = binary.BigEndian.Uint16(b[16:])
			var live bool
			if p.seen6, live = rb.seen(binary.BigEndian.Uint32(b[18:])); !live {
				p.flags &^= has6
			}
		}
		if p.flags&seeder != 0 {
			s.seeders++
		}
		s.peers = append(s.peers, p)
	}

	// Downloaders first, then the index, which also finds duplicates.
	for i := range s.peers {
		if s.peers[i].downloads() {
			s.peers[i], s.peers[s.downloaders] = s.peers[s.downloaders], s.peers[i]
			s.downloaders++
		}
	}
	if len(s.peers) > indexAbove {
		s.index = make(map[peerKey]uint32, len(s.peers))
	}
	for i := range s.peers {
		key := s.peers[i].key
		if s.index != nil {
			if _, dup := s.index[key]; dup {
				return nil, false, 0, errDuplicatePeer(key)
			}
			s.index[key] = uint32(i)
			continue
		}
		for j := range i {
			if s.peers[j].key == key {
				return nil, false, 0, errDuplicatePeer(key)
			}
		}
	}

	// Drop the peers that expired while the tracker was down, as sweep
	// does, and note the oldest endpoint left.
	for i := len(s.peers) - 1; i >= 0; i-- {
		p := &s.peers[i]
		if p.flags&(has4|has6) == 0 {
			s.remove(i)
			dropped++
			continue
		}
		if p.flags&has4 != 0 {
			s.oldest = min(s.oldest, p.seen4)
		}
		if p.flags&has6 != 0 {
			s.oldest = min(s.oldest, p.seen6)
		}
	}
	if dropped > 0 {
		s.reindex()
		s.compact()
	}
	return s, recent || len(s.peers) > 0, dropped, nil
}

// errDuplicatePeer is a function of its own so that the caller's key does
// not escape to the heap on every peer.
func errDuplicatePeer(key peerKey) error {
	return fmt.Errorf("peer %q of user %d appears twice", key.id[:], key.user)
}

// empty reports whether the store holds no swarms.
func (st *store) empty() bool {
	for i := range st.shards {
		sh := &st.shards[i]
		sh.mu.Lock()
		n := len(sh.swarms)
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
func (st *store) install(staged []map[bittorrent.InfoHash]*swarm) error {
	for i := range st.shards {
		st.shards[i].mu.Lock()
	}
	defer func() {
		for i := range st.shards {
			st.shards[i].mu.Unlock()
		}
	}()
	for i := range st.shards {
		if len(st.shards[i].swarms) > 0 {
			return errSnapNotEmpty
		}
	}
	for i, m := range staged {
		if m != nil {
			st.shards[i].swarms = m
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
