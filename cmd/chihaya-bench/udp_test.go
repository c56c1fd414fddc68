package main

import (
	"context"
	"encoding/binary"
	"io"
	"net"
	"sync"
	"testing"
	"time"
)

// fakeTracker is a BEP 15 responder with faults: it declares the first
// connection ID an announce uses expired and drops every dropEvery-th
// announce.
type fakeTracker struct {
	conn      *net.UDPConn
	dropEvery int

	mu        sync.Mutex
	connects  int
	announces int
	expired   uint64
}

func startFakeTracker(t *testing.T, dropEvery int) *fakeTracker {
	t.Helper()
	conn, err := net.ListenUDP("udp", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	f := &fakeTracker{conn: conn, dropEvery: dropEvery}
	done := make(chan struct{})
	go f.serve(done)
	t.Cleanup(func() {
		conn.Close()
		<-done
	})
	return f
}

func (f *fakeTracker) serve(done chan struct{}) {
	defer close(done)
	buf := make([]byte, 2048)
	for {
		n, from, err := f.conn.ReadFromUDPAddrPort(buf)
		if err != nil {
			return
		}
		p := buf[:n]
		if n < 16 {
			continue
		}
		connID := binary.BigEndian.Uint64(p[0:8])
		action := binary.BigEndian.Uint32(p[8:12])
		tx := binary.BigEndian.Uint32(p[12:16])
		out := binary.BigEndian.AppendUint32(nil, action)
		out = binary.BigEndian.AppendUint32(out, tx)
		f.mu.Lock()
		switch {
		case action == actConnect && connID == udpProtocolID:
			f.connects++
			out = binary.BigEndian.AppendUint64(out, uint64(f.connects))
		case action == actAnnounce && (f.expired == 0 || connID == f.expired):
			f.expired = connID
			out = append(binary.BigEndian.AppendUint32(nil, actError), out[4:]...)
			out = append(out, "connection ID expired"...)
		case action == actAnnounce:
			f.announces++
			if f.dropEvery > 0 && f.announces%f.dropEvery == 0 {
				out = nil
				break
			}
			out = binary.BigEndian.AppendUint32(out, 1800)
			out = binary.BigEndian.AppendUint32(out, 1)
			out = binary.BigEndian.AppendUint32(out, 2)
			out = append(out, 127, 0, 0, 1, 0x1A, 0xE1)
		default:
			out = nil
		}
		f.mu.Unlock()
		if out != nil {
			_, _ = f.conn.WriteToUDPAddrPort(out, from)
		}
	}
}

func fakeConfig(t *testing.T, f *fakeTracker) config {
	t.Helper()
	c := defaultConfig()
	c.mode = modeUDPAnnounce
	c.addr = f.conn.LocalAddr().String()
	c.torrents, c.peers = 20, 5
	c.prefill = false
	c.warmup, c.duration = 0, 700*time.Millisecond
	c.sockets, c.concurrency = 1, 8
	c.timeout = 100 * time.Millisecond
	c.quiet = true
	if err := c.validate(); err != nil {
		t.Fatal(err)
	}
	return c
}

func TestUDPReconnectsAndCountsLostPackets(t *testing.T) {
	f := startFakeTracker(t, 25)
	c := fakeConfig(t, f)
	res, err := run(context.Background(), c, io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	m := res.report().Measured
	// The first ID is refused: the socket gets a second and goes on.
	if m.Connects < 2 {
		t.Errorf("%d connects, want a new ID after the expiry error", m.Connects)
	}
	if m.ErrorClasses["udp error: connection ID expired"] == 0 {
		t.Errorf("no expiry error counted: %v", m.ErrorClasses)
	}
	if lost := m.ErrorClasses["timeout"]; lost == 0 || lost > m.Requests/20 {
		t.Errorf("%d timeouts of %d requests, want about 1 in 25", lost, m.Requests)
	}
	for class := range m.ErrorClasses {
		if class != "timeout" && class != "udp error: connection ID expired" {
			t.Errorf("unexpected error class %q", class)
		}
	}
	if m.Responses == 0 || m.Requests != m.Responses+m.Errors {
		t.Errorf("%d requests, %d responses, %d errors: every request must have one outcome", m.Requests, m.Responses, m.Errors)
	}
}

func TestUDPRenewsAgingConnectionIDs(t *testing.T) {
	f := startFakeTracker(t, 0)
	c := fakeConfig(t, f)
	c.connIDMaxAge = 150 * time.Millisecond
	res, err := run(context.Background(), c, io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	m := res.report().Measured
	// The first ID is refused; after that, an ID is renewed every
	// 150ms while the old one is still in use.
	if m.Connects < 4 {
		t.Errorf("%d connects in 700ms with IDs kept 150ms", m.Connects)
	}
	if n := m.ErrorClasses["udp error: connection ID expired"]; n == 0 || m.Errors != n {
		t.Errorf("errors %v: only the refused first ID may cause any", m.ErrorClasses)
	}
}
