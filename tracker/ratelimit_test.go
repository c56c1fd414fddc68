package tracker

import (
	"net/netip"
	"testing"
	"time"
)

func addr4(i int) netip.Addr {
	return netip.AddrFrom4([4]byte{10, byte(i >> 16), byte(i >> 8), byte(i)})
}

func TestRateLimiterBudgetAndRefill(t *testing.T) {
	l := NewRateLimiter(6, 64) // one token every 10 s, six at once
	a, b := addr4(1), addr4(2)
	const sec = int64(time.Second)
	now := 1000 * sec
	for i := range 6 {
		if l.Blocked(a, now) {
			t.Fatalf("blocked after %d of 6", i)
		}
		if !l.Allow(a, now) {
			t.Fatalf("refused the %d. of a budget of 6", i+1)
		}
	}
	if !l.Blocked(a, now) || l.Allow(a, now) {
		t.Fatal("the 7th within the same instant was allowed")
	}
	if !l.Allow(b, now) {
		t.Fatal("another address paid for the first one")
	}
	// A refusal costs nothing: one interval later exactly one more.
	if l.Allow(a, now+9*sec) {
		t.Fatal("allowed before a token came back")
	}
	if !l.Allow(a, now+10*sec) || l.Allow(a, now+10*sec) {
		t.Fatal("want exactly one token back after 10 s")
	}
	// A minute of silence refills the whole budget, and no more.
	now += 2 * 60 * sec
	for i := range 6 {
		if !l.Allow(a, now) {
			t.Fatalf("refused the %d. after the refill", i+1)
		}
	}
	if l.Allow(a, now) {
		t.Fatal("a long pause saved more than the burst")
	}
}

func TestRateLimiterChargeSaturates(t *testing.T) {
	l := NewRateLimiter(6, 64)
	a := addr4(1)
	const sec = int64(time.Second)
	for range 1000 {
		l.Charge(a, 0)
	}
	if !l.Blocked(a, 0) {
		t.Fatal("not blocked after 1000 charges")
	}
	// The debt stops at one token past the budget.
	if l.Blocked(a, 10*sec) {
		t.Fatal("still blocked one interval after the last charge: the debt grew without bound")
	}
}

func TestRateLimiterKeys(t *testing.T) {
	l := NewRateLimiter(1, 64)
	mustBlock := func(spent, other netip.Addr, same bool) {
		t.Helper()
		l := NewRateLimiter(1, 64)
		l.Charge(spent, 0)
		if !l.Blocked(spent, 0) {
			t.Fatalf("%v not blocked", spent)
		}
		if l.Blocked(other, 0) != same {
			t.Errorf("%v blocked = %v after %v spent its budget; want %v", other, !same, spent, same)
		}
	}
	mustBlock(netip.MustParseAddr("2001:db8:1:2::1"), netip.MustParseAddr("2001:db8:1:2:ffff::9"), true)
	mustBlock(netip.MustParseAddr("2001:db8:1:2::1"), netip.MustParseAddr("2001:db8:1:3::1"), false)
	mustBlock(netip.MustParseAddr("10.0.0.1"), netip.MustParseAddr("::ffff:10.0.0.1"), true)
	mustBlock(netip.MustParseAddr("10.0.0.1"), netip.MustParseAddr("10.0.0.2"), false)
	// IPv4 addresses are not one /64 of the mapped range.
	mustBlock(netip.MustParseAddr("10.0.0.1"), netip.MustParseAddr("::"), false)
	mustBlock(netip.MustParseAddr("::1"), netip.MustParseAddr("0.0.0.1"), false)

	for range 10 {
		l.Charge(netip.Addr{}, 0)
	}
	if l.Blocked(netip.Addr{}, 0) || !l.Allow(netip.Addr{}, 0) || l.Len() != 0 {
		t.Error("the zero Addr is limited")
	}
}

// The table never grows: a flood of addresses only replaces entries, and
// those in debt outlive those that are not.
func TestRateLimiterBoundedMemory(t *testing.T) {
	l := NewRateLimiter(2, 1)
	if l.Capacity() != limiterWays {
		t.Fatalf("capacity %d, want one set of %d", l.Capacity(), limiterWays)
	}
	abuser := netip.MustParseAddr("192.0.2.1")
	l.Charge(abuser, 0)
	l.Charge(abuser, 0)
	for i := range 100_000 {
		l.Allow(addr4(i), 0)
	}
	if n := l.Len(); n > l.Capacity() {
		t.Fatalf("%d entries in a table of %d", n, l.Capacity())
	}
	if !l.Blocked(abuser, 0) {
		t.Error("a flood of one-off addresses pushed out the address in debt")
	}

	if c := NewRateLimiter(60, DefaultLimiterEntries).Capacity(); c != DefaultLimiterEntries {
		t.Fatalf("capacity %d", c)
	}
	big := NewRateLimiter(60, 1<<12)
	for i := range 16 << 12 {
		big.Charge(addr4(i), int64(i))
	}
	// Every set saw some sixty-four addresses: the table is full, and
	// no fuller.
	if n := big.Len(); n != big.Capacity() {
		t.Fatalf("%d entries in a table of %d", n, big.Capacity())
	}
	now := int64(16 << 12)
	a := netip.MustParseAddr("2001:db8::1")
	allocs := testing.AllocsPerRun(1000, func() {
		big.Charge(a, now)
		big.Allow(a, now)
		big.Blocked(a, now)
	})
	if allocs != 0 {
		t.Errorf("%v allocations per call", allocs)
	}
}

func BenchmarkRateLimiterAllow(b *testing.B) {
	l := NewRateLimiter(1_000_000, DefaultLimiterEntries)
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		i := 0
		for pb.Next() {
			l.Allow(addr4(i&0xffff), int64(i))
			i++
		}
	})
}
