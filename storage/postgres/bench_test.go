package postgres

import (
	"fmt"
	"net/netip"
	"testing"
	"time"

	"github.com/chihaya/chihaya/storage"
)

// BenchmarkFlush writes batches of 10,000 rows of users, torrents and peers
// — the size of a busy tracker's batch every few seconds — once with the
// built-in bulk path (COPY into a temporary table, one merge statement)
// and once with the same statements per row, pipelined in one transaction
// (what custom SQL does). Every row names an existing user and torrent, and
// every batch after the first updates rows the first inserted. Run with
//
//	go test -run '^$' -bench Flush -benchtime 20x ./storage/postgres
func BenchmarkFlush(b *testing.B) {
	RequirePostgres(b)
	const n = 10_000
	db := NewTestDB(b, BaseDSN(), true, false)
	db.Exec(b, fmt.Sprintf(`INSERT INTO users (id, passkey) SELECT i, 'pk' || i FROM generate_series(1, %d) i;
		INSERT INTO torrents (id, info_hash) SELECT i, substring(sha256(i::text::bytea) FROM 1 FOR 20) FROM generate_series(1, %[1]d) i`, n))
	users := make([]storage.UserDelta, n)
	torrents := make([]storage.TorrentStats, n)
	peers := make([]storage.PeerRow, n)
	now := time.Now()
	for i := range n {
		id := uint32(i + 1)
		users[i] = storage.UserDelta{UserID: id, Uploaded: 1 << 20, Downloaded: 1 << 19}
		torrents[i] = storage.TorrentStats{TorrentID: id, Seeders: 5, Leechers: 3, Snatches: 1, Balance: 100, Seeded: now}
		peers[i] = storage.PeerRow{TorrentID: id, UserID: uint32(n - i), PeerID: peerID(fmt.Sprintf("-TR4000-%012d", i)),
			Full: i%2 == 0, Active: true, Uploaded: 1 << 30, Downloaded: 1 << 29, Left: 1 << 28, UpSpeed: 1000, DownSpeed: 2000,
			TimeSpent: time.Hour, Announces: 7, Addr: netip.AddrFrom4([4]byte{10, byte(i >> 16), byte(i >> 8), byte(i)}), Port: 6881,
			UserAgent: "qBittorrent/4.6.2", Time: now}
	}
	kinds := []struct {
		name  string
		write func(s *Store) error
	}{
		{"users", func(s *Store) error { return s.WriteUsers(ctx, users) }},
		{"torrents", func(s *Store) error { return s.WriteTorrents(ctx, torrents) }},
		{"peers", func(s *Store) error { return s.WritePeers(ctx, peers) }},
	}
	for _, k := range kinds {
		for _, mode := range []string{"bulk", "per-row"} {
			b.Run(k.name+"/"+mode, func(b *testing.B) {
				var extra map[string]any
				if mode == "per-row" {
					extra = map[string]any{"queries": rowStatements, "timeout": "5m"}
				}
				s := db.Open(b, extra)
				if err := k.write(s); err != nil { // the rows exist from here on
					b.Fatal(err)
				}
				b.ResetTimer()
				start := time.Now()
				for range b.N {
					if err := k.write(s); err != nil {
						b.Fatal(err)
					}
				}
				b.ReportMetric(float64(n*b.N)/time.Since(start).Seconds(), "rows/s")
			})
		}
	}
}
