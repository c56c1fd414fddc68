package memory

import (
	"bytes"
	"context"
	"encoding/json"
	"net/netip"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/chihaya/chihaya/cache"
)

// snapshotStore builds a store of 10,000 swarms of 100 peers (a million),
// one in five a seeder and one in four dual-stack, the rest IPv4 only.
func snapshotStore(b *testing.B, raw string) *store {
	b.Helper()
	const swarms, perSwarm = 10_000, 100
	s, err := driver{}.Open(json.RawMessage(raw), cache.Options{PeerLifetime: 45 * time.Minute})
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { s.Close() })
	var r cache.Result
	for i := range swarms {
		h := hash(i)
		for n := range perSwarm {
			a := cache.Announce{
				InfoHash:   h,
				PeerID:     peerID(n),
				IPv4:       netip.AddrFrom4([4]byte{10, byte(i >> 8), byte(i), byte(n)}),
				Port:       6881,
				Seeder:     n%5 == 0,
				Uploaded:   uint64(n) << 20,
				Downloaded: uint64(i) << 10,
			}
			if n%4 == 0 {
				a.IPv6 = netip.AddrFrom16([16]byte{0x20, 0x01, 0x0d, 0xb8, 12: byte(i >> 8), 13: byte(i), 15: byte(n)})
			}
			if err := s.Announce(context.Background(), &a, &r); err != nil {
				b.Fatal(err)
			}
		}
	}
	return s.(*store)
}

// BenchmarkSnapshot measures writing and loading a snapshot of a million
// peers, in memory and through the file Close writes and Open reads:
//
//	go test -run '^$' -bench Snapshot -benchtime 5x ./cache/memory
func BenchmarkSnapshot(b *testing.B) {
	s := snapshotStore(b, `{}`)
	var buf bytes.Buffer
	if err := s.WriteSnapshot(&buf); err != nil {
		b.Fatal(err)
	}
	data := buf.Bytes()
	b.Run("Write", func(b *testing.B) {
		var out bytes.Buffer
		out.Grow(len(data))
		for b.Loop() {
			out.Reset()
			if err := s.WriteSnapshot(&out); err != nil {
				b.Fatal(err)
			}
		}
		b.ReportMetric(float64(out.Len()), "bytes")
		b.ReportMetric(float64(out.Len())/1e6, "B/peer")
	})
	b.Run("Read", func(b *testing.B) {
		for b.Loop() {
			b.StopTimer()
			l, err := open(config{shards: 1024, reapInterval: time.Hour}, cache.Options{PeerLifetime: 45 * time.Minute})
			if err != nil {
				b.Fatal(err)
			}
			b.StartTimer()
			if err := l.ReadSnapshot(bytes.NewReader(data)); err != nil {
				b.Fatal(err)
			}
			b.StopTimer()
			l.Close()
			b.StartTimer()
		}
	})
	// Through the file: Close's write, fsync and rename, and Open's load.
	file := filepath.Join(b.TempDir(), "swarms.snap")
	b.Run("CloseFile", func(b *testing.B) {
		for b.Loop() {
			s.snapshotFile = file
			if err := s.saveSnapshotFile(); err != nil {
				b.Fatal(err)
			}
		}
	})
	s.snapshotFile = ""
	b.Run("OpenFile", func(b *testing.B) {
		raw, _ := json.Marshal(map[string]string{"snapshot_file": file})
		for b.Loop() {
			b.StopTimer()
			if err := os.WriteFile(file, data, 0o600); err != nil {
				b.Fatal(err)
			}
			b.StartTimer()
			l, err := driver{}.Open(raw, cache.Options{PeerLifetime: 45 * time.Minute})
			if err != nil {
				b.Fatal(err)
			}
			b.StopTimer()
			if l.(*store).empty() {
				b.Fatal("nothing loaded")
			}
			l.(*store).snapshotFile = ""
			l.Close()
			b.StartTimer()
		}
	})
}
