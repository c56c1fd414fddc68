package main

import (
	"os"
	"strconv"
	"testing"
	"time"
)

func TestReadProcOfThisProcess(t *testing.T) {
	if _, err := os.Stat("/proc/self/stat"); err != nil {
		t.Skip("no /proc")
	}
	pid := strconv.Itoa(os.Getpid())
	before, err := readProc(pid)
	if err != nil {
		t.Fatal(err)
	}
	if before.rss < 1<<20 {
		t.Errorf("RSS %d bytes, implausibly small for a Go test binary", before.rss)
	}
	// Burn CPU until the kernel has counted some: at 100 ticks a
	// second that takes tens of milliseconds, longer on a busy machine.
	deadline := time.Now().Add(10 * time.Second)
	x := uint64(1)
	for time.Now().Before(deadline) {
		for i := range 1_000_000 {
			x = x*6364136223846793005 + uint64(i)
		}
		after, err := readProc(pid)
		if err != nil {
			t.Fatal(err)
		}
		if after.cpu >= before.cpu+3 {
			return
		}
	}
	t.Fatalf("CPU time did not grow in 10s of spinning (%d)", x)
}

func TestParseStatCPU(t *testing.T) {
	// A command name with spaces and parentheses, as a process can
	// give itself; utime 1234 and stime 567 are fields 14 and 15.
	stat := "4242 (evil) name (x) R 1 4242 4242 0 -1 4194560 100 0 0 0 1234 567 0 0 20 0 9 0 1000 123456789 2000 18446744073709551615\n"
	got, err := parseStatCPU([]byte(stat))
	if err != nil || got != 1234+567 {
		t.Fatalf("parseStatCPU = %d, %v; want 1801", got, err)
	}
	for _, bad := range []string{"", "1 (x) R 1 2", "1 x R", "1 (x) R 1 1 1 0 -1 0 0 0 0 0 a b"} {
		if _, err := parseStatCPU([]byte(bad)); err == nil {
			t.Errorf("parseStatCPU(%q) accepted", bad)
		}
	}
}

func TestParseStatusRSS(t *testing.T) {
	status := "Name:\tchihaya\nVmPeak:\t 1000 kB\nVmRSS:\t   12345 kB\nThreads:\t9\n"
	got, err := parseStatusRSS([]byte(status))
	if err != nil || got != 12345*1024 {
		t.Fatalf("parseStatusRSS = %d, %v", got, err)
	}
	if _, err := parseStatusRSS([]byte("Name:\tkthreadd\n")); err == nil {
		t.Error("a status without VmRSS was accepted")
	}
	if _, err := parseStatusRSS([]byte("VmRSS:\t12 MB\n")); err == nil {
		t.Error("an unknown unit was accepted")
	}
}

func TestParseSNMPAndMachineCPU(t *testing.T) {
	snmp := "Ip: Forwarding DefaultTTL\nIp: 1 64\n" +
		"Udp: InDatagrams NoPorts InErrors OutDatagrams RcvbufErrors SndbufErrors InCsumErrors IgnoredMulti MemErrors\n" +
		"Udp: 100 2 7 90 5 0 0 0 0\n" +
		"UdpLite: InDatagrams NoPorts InErrors OutDatagrams RcvbufErrors SndbufErrors InCsumErrors IgnoredMulti MemErrors\n" +
		"UdpLite: 0 0 0 0 0 0 0 0 0\n"
	c, err := parseSNMPUDP([]byte(snmp))
	if err != nil || c.inErrors != 7 || c.rcvbufErrors != 5 {
		t.Fatalf("parseSNMPUDP = %+v, %v", c, err)
	}
	if _, err := readUDPCounters("self"); err != nil {
		t.Errorf("reading this process's counters: %v", err)
	}

	stat := "cpu  100 5 50 1000 3 0 20 7 0 0\ncpu0 50 2 25 500 1 0 12 3 0 0\nintr 1 2 3\n"
	m, err := parseMachineCPU([]byte(stat))
	if err != nil || m.tasks != 155 || m.softirq != 20 || m.steal != 7 {
		t.Fatalf("parseMachineCPU = %+v, %v", m, err)
	}
	if _, err := readMachineCPU(); err != nil {
		t.Errorf("reading /proc/stat: %v", err)
	}
}
