package main

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"strconv"
	"strings"
)

// What the tool reads about the server process from /proc (Linux only).

// clockTicks is the unit of the CPU times in /proc/<pid>/stat. It is
// sysconf(_SC_CLK_TCK), USER_HZ, which Linux fixes at 100 for user space
// whatever the kernel's own tick rate, so it needs no cgo call to learn.
const clockTicks = 100

// procSample is a process's state at one moment.
type procSample struct {
	// cpu is user plus system CPU time of all the process's threads,
	// in clock ticks.
	cpu uint64
	// rss is the resident set size in bytes.
	rss uint64
}

// readProc samples process pid ("self" is the tool itself).
func readProc(pid string) (procSample, error) {
	stat, err := os.ReadFile("/proc/" + pid + "/stat")
	if err != nil {
		return procSample{}, err
	}
	cpu, err := parseStatCPU(stat)
	if err != nil {
		return procSample{}, fmt.Errorf("/proc/%s/stat: %w", pid, err)
	}
	status, err := os.ReadFile("/proc/" + pid + "/status")
	if err != nil {
		return procSample{}, err
	}
	rss, err := parseStatusRSS(status)
	if err != nil {
		return procSample{}, fmt.Errorf("/proc/%s/status: %w", pid, err)
	}
	return procSample{cpu: cpu, rss: rss}, nil
}

// parseStatCPU returns utime+stime from the text of /proc/<pid>/stat. The
// second field, the command name in parentheses, may itself hold spaces
// and parentheses, so fields are counted from the last ')'.
func parseStatCPU(stat []byte) (uint64, error) {
	end := bytes.LastIndexByte(stat, ')')
	if end < 0 {
		return 0, errors.New("no command name")
	}
	// After ")" come the fields from the third, state, on; utime and
	// stime are the 14th and 15th (proc(5)).
	fields := strings.Fields(string(stat[end+1:]))
	const utime, stime = 14 - 3, 15 - 3
	if len(fields) <= stime {
		return 0, errors.New("too few fields")
	}
	u, err := strconv.ParseUint(fields[utime], 10, 64)
	if err != nil {
		return 0, fmt.Errorf("utime: %w", err)
	}
	s, err := strconv.ParseUint(fields[stime], 10, 64)
	if err != nil {
		return 0, fmt.Errorf("stime: %w", err)
	}
	return u + s, nil
}

// parseStatusRSS returns VmRSS, in bytes, from the text of
// /proc/<pid>/status ("VmRSS:	   12345 kB").
func parseStatusRSS(status []byte) (uint64, error) {
	for line := range strings.SplitSeq(string(status), "\n") {
		rest, ok := strings.CutPrefix(line, "VmRSS:")
		if !ok {
			continue
		}
		f := strings.Fields(rest)
		if len(f) != 2 || f[1] != "kB" {
			return 0, fmt.Errorf("unexpected VmRSS line %q", line)
		}
		kb, err := strconv.ParseUint(f[0], 10, 64)
		if err != nil {
			return 0, fmt.Errorf("VmRSS: %w", err)
		}
		return kb * 1024, nil
	}
	// Kernel threads and zombies have no VmRSS.
	return 0, errors.New("no VmRSS line")
}

// machineCPU is the machine's CPU time, all CPUs together, in clock
// ticks, from the first line of /proc/stat.
type machineCPU struct {
	// tasks is user, nice and system time: what processes were
	// charged with.
	tasks uint64
	// softirq is time in soft interrupts (on loopback, mostly packet
	// delivery). The kernel samples it at each tick, so part of it is
	// also in the time of the process that was running: it tells how
	// busy the network stack was, not who paid.
	softirq uint64
	// steal is time the hypervisor gave to other guests.
	steal uint64
}

func readMachineCPU() (machineCPU, error) {
	data, err := os.ReadFile("/proc/stat")
	if err != nil {
		return machineCPU{}, err
	}
	return parseMachineCPU(data)
}

// parseMachineCPU reads the first line of /proc/stat, "cpu user nice
// system idle iowait irq softirq steal ..." (proc(5)).
func parseMachineCPU(data []byte) (machineCPU, error) {
	line, _, _ := strings.Cut(string(data), "\n")
	f := strings.Fields(line)
	if len(f) < 9 || f[0] != "cpu" {
		return machineCPU{}, errors.New("/proc/stat: no cpu line")
	}
	var v [8]uint64
	for i := range v {
		n, err := strconv.ParseUint(f[i+1], 10, 64)
		if err != nil {
			return machineCPU{}, fmt.Errorf("/proc/stat: %w", err)
		}
		v[i] = n
	}
	return machineCPU{tasks: v[0] + v[1] + v[2], softirq: v[6], steal: v[7]}, nil
}

// udpCounters are the kernel's UDP counters of one network namespace.
type udpCounters struct {
	inErrors, rcvbufErrors uint64
}

// readUDPCounters reads the UDP counters of the network namespace process
// pid lives in. Datagrams the kernel drops because a socket's receive
// buffer is full count there and nowhere else: lost packets that are the
// buffer's doing rather than the tracker's show up here.
func readUDPCounters(pid string) (udpCounters, error) {
	data, err := os.ReadFile("/proc/" + pid + "/net/snmp")
	if err != nil {
		return udpCounters{}, err
	}
	return parseSNMPUDP(data)
}

// parseSNMPUDP reads the "Udp:" header and value lines of /proc/net/snmp.
func parseSNMPUDP(data []byte) (udpCounters, error) {
	var names []string
	for line := range strings.SplitSeq(string(data), "\n") {
		rest, ok := strings.CutPrefix(line, "Udp:")
		if !ok {
			continue
		}
		if names == nil {
			names = strings.Fields(rest)
			continue
		}
		values := strings.Fields(rest)
		if len(values) != len(names) {
			return udpCounters{}, errors.New("the Udp: header and value lines differ in length")
		}
		var c udpCounters
		for i, n := range names {
			v, err := strconv.ParseUint(values[i], 10, 64)
			if err != nil {
				continue
			}
			switch n {
			case "InErrors":
				c.inErrors = v
			case "RcvbufErrors":
				c.rcvbufErrors = v
			}
		}
		return c, nil
	}
	return udpCounters{}, errors.New("no Udp: lines")
}
