package main

import (
	"log/slog"
	"runtime/debug"

	"github.com/chihaya/chihaya/config"
)

// runtimeMemoryLimit is the Go runtime's memory limit before the
// configuration touched it: GOMEMLIMIT's, or none. memory_limit "0" goes
// back to it.
var runtimeMemoryLimit = debug.SetMemoryLimit(-1)

// applyMemoryLimit sets the runtime's soft memory limit from memory_limit,
// at start and on SIGHUP. Near the limit the garbage collector runs more
// often (up to about half the CPU) instead of letting the heap grow; it is
// not a hard cap.
func applyMemoryLimit(limit config.ByteSize, log *slog.Logger) {
	want := runtimeMemoryLimit
	if limit > 0 {
		want = int64(limit)
	}
	if prev := debug.SetMemoryLimit(want); prev != want {
		log.Info("memory limit set", "bytes", want)
	}
}
