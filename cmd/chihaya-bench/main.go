// Command chihaya-bench is a load generator for a BitTorrent tracker, meant
// for operators to measure their own tracker: HTTP announces and scrapes
// (BEP 3, 23, 7, 48) and UDP announces and scrapes (BEP 15).
//
// It simulates a population of torrents and peers (a swarm model), first
// announces every peer once (the prefill), then sends load for a warmup and
// a measured window, with a bounded number of requests in flight, and
// reports the rate, the errors by class and the latency percentiles; given
// the tracker's pid, also the tracker's CPU time and memory in the window.
//
//	chihaya-bench -mode udp-announce -addr 127.0.0.1:6969 -pid $(pidof chihaya)
//
// Every run is bounded in time and in count and ends by itself; point it only
// at a tracker you run.
package main

import (
	"bufio"
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"runtime/pprof"
	"syscall"
)

func main() {
	os.Exit(mainExit(os.Args[1:], os.Stdout, os.Stderr))
}

// mainExit runs the command and returns its exit status: 0 when the run
// completed, whatever it measured, 2 for a usage error, 1 when the run
// could not be carried out.
func mainExit(args []string, stdout, stderr io.Writer) int {
	c, err := parseFlags(args, stderr)
	if errors.Is(err, flag.ErrHelp) {
		return 0
	}
	if err != nil {
		fmt.Fprintln(stderr, "chihaya-bench:", err)
		return 2
	}
	if c.listInfoHashes {
		return listInfoHashes(c, stdout, stderr)
	}
	// The first interrupt ends the run early with a report; a second
	// one, after signal.NotifyContext stops catching, kills the tool.
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	go func() {
		<-ctx.Done()
		stop()
	}()

	if c.cpuProfile != "" {
		f, err := os.Create(c.cpuProfile)
		if err == nil {
			err = pprof.StartCPUProfile(f)
		}
		if err != nil {
			fmt.Fprintln(stderr, "chihaya-bench: -cpuprofile:", err)
			return 1
		}
		defer f.Close()
		defer pprof.StopCPUProfile()
	}
	res, err := run(ctx, c, stderr)
	if err != nil {
		fmt.Fprintln(stderr, "chihaya-bench:", err)
		return 1
	}
	rep := res.report()
	if c.json {
		err = rep.writeJSON(stdout)
	} else {
		err = rep.writeText(stdout)
	}
	if err != nil {
		fmt.Fprintln(stderr, "chihaya-bench:", err)
		return 1
	}
	return 0
}

// listInfoHashes prints the info hashes the model announces to, so that an
// operator can register them on a private tracker before measuring it.
func listInfoHashes(c config, stdout, stderr io.Writer) int {
	m := newModel(c.torrents, c.peers, c.seeders, c.numWant, c.mix, c.zipf, c.seed)
	w := bufio.NewWriter(stdout)
	for _, h := range m.hashes {
		fmt.Fprintf(w, "%x\n", h)
	}
	if err := w.Flush(); err != nil {
		fmt.Fprintln(stderr, "chihaya-bench:", err)
		return 1
	}
	return 0
}
