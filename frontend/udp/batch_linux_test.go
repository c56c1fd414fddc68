package udp

import (
	"context"
	"fmt"
	"net"
	"net/netip"
	"runtime"
	"testing"
)

// batchRig is a reader's batch on a real socket and clients that send it
// announces, driven by hand: one round writes a batch of packets, reads,
// answers and flushes them, and reads the answers back.
type batchRig struct {
	h       *harness
	sock    *socket
	b       *batch
	clients []*net.UDPConn
	packets [][]byte
	buf     []byte
}

func newBatchRig(t testing.TB, blocking bool, size int) *batchRig {
	t.Helper()
	h := newHarness(t, Config{})
	sock, err := listen(net.UDPAddrFromAddrPort(netip.MustParseAddrPort("127.0.0.1:0")), blocking)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { sock.shutdown(); sock.release() })
	b, err := sock.newBatch(size)
	if err != nil {
		t.Fatal(err)
	}
	r := &batchRig{h: h, sock: sock, b: b, buf: make([]byte, 2048)}
	for i := range size {
		conn, err := net.DialUDP("udp", nil, sock.addr.(*net.UDPAddr))
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { conn.Close() })
		from := conn.LocalAddr().(*net.UDPAddr).AddrPort()
		a := announceArgs{connID: h.connect(t, from), txID: uint32(i), hash: "hash-b", peer: fmt.Sprint("peer", i), left: uint64(i % 2), port: 6881, numWant: 50}
		r.clients = append(r.clients, conn)
		r.packets = append(r.packets, a.packet())
	}
	return r
}

// round sends one packet from each client and checks every answer.
func (r *batchRig) round(t testing.TB) {
	for i, conn := range r.clients {
		if _, err := conn.Write(r.packets[i]); err != nil {
			t.Fatal(err)
		}
	}
	ctx := context.Background()
	for done := 0; done < len(r.clients); {
		n, err := r.b.read()
		if err != nil {
			t.Fatal(err)
		}
		r.h.w.now = r.h.fe.cfg.Now()
		for i := range n {
			p, from := r.b.packet(i)
			r.h.w.out = r.b.answerBuf()
			if out := r.h.fe.handle(ctx, r.h.w, p, from); out != nil {
				r.b.answer(i, out)
			}
		}
		if err := r.b.flush(); err != nil {
			t.Fatal(err)
		}
		done += n
	}
	for i, conn := range r.clients {
		n, err := conn.Read(r.buf)
		if err != nil {
			t.Fatal(err)
		}
		if n < 20 || r.buf[3] != actionAnnounce || int(r.buf[7]) != i {
			t.Fatalf("client %d got %x", i, r.buf[:n])
		}
	}
}

// A reader allocates nothing per packet: reading, answering and writing a
// batch reuse the batch's buffers, in both modes.
func TestBatchAllocs(t *testing.T) {
	if raceEnabled {
		t.Skip("the race detector allocates in the poller's system call path")
	}
	for _, blocking := range []bool{true, false} {
		t.Run(fmt.Sprint("blocking=", blocking), func(t *testing.T) {
			r := newBatchRig(t, blocking, 16)
			r.round(t)
			if allocs := testing.AllocsPerRun(50, func() { r.round(t) }); allocs != 0 {
				t.Fatalf("%v allocations per batch of %d announces", allocs, len(r.clients))
			}
		})
	}
}

// BenchmarkBatch measures batches of 16 announces through the socket,
// clients included, per packet.
func BenchmarkBatch(b *testing.B) {
	for _, blocking := range []bool{true, false} {
		b.Run(fmt.Sprint("blocking=", blocking), func(b *testing.B) {
			r := newBatchRig(b, blocking, 16)
			b.ReportAllocs()
			for b.Loop() {
				r.round(b)
			}
			b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*len(r.clients)), "ns/packet")
		})
	}
}

// TestBlockingReadersKeepASpareP: with SpareProc, readers that wait in the
// kernel run with one P more than there are of them, so that the runtime
// does not hand a waiting reader's P to another thread; Shutdown puts
// GOMAXPROCS back. A frontend with a P to spare, whose readers wait in the
// poller, or without SpareProc leaves GOMAXPROCS alone.
func TestBlockingReadersKeepASpareP(t *testing.T) {
	// Two Ps, whatever the machine, so that fewer readers than Ps exist.
	defer runtime.GOMAXPROCS(runtime.GOMAXPROCS(2))
	cases := []struct {
		name            string
		readers, during int
		spare           bool
	}{
		{"as many readers as Ps", 2, 3, true},
		{"fewer readers than Ps", 1, 2, true},
		{"more readers than Ps (poller)", 5, 2, true},
		{"SpareProc off", 2, 2, false},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			h := newHarness(t, Config{Addr: "127.0.0.1:0", Readers: c.readers, SpareProc: c.spare})
			if _, err := h.fe.ListenAndServe(); err != nil {
				t.Fatal(err)
			}
			if got := runtime.GOMAXPROCS(0); got != c.during {
				t.Errorf("%d readers on 2 Ps: GOMAXPROCS %d while serving, want %d", c.readers, got, c.during)
			}
			if err := h.fe.Shutdown(context.Background()); err != nil {
				t.Fatal(err)
			}
			if got := runtime.GOMAXPROCS(0); got != 2 {
				t.Errorf("GOMAXPROCS %d after Shutdown, want 2 again", got)
			}
		})
	}
}
