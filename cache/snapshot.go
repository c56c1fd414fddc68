package cache

import "io"

// Snapshotter is implemented by stores that keep their swarms in the
// tracker process, so that a graceful restart need not lose them: the
// swarms are written out on shutdown and read back on start.
type Snapshotter interface {
	// WriteSnapshot writes every swarm to w in the driver's own format,
	// which carries its own version and checksum. It may run while the
	// store serves: it holds up announces for no longer than a reaper
	// pass does, so the snapshot is consistent per swarm, not as a whole.
	WriteSnapshot(w io.Writer) error
	// ReadSnapshot loads a snapshot written by WriteSnapshot into a store
	// that holds no swarms yet, before it serves. It loads all of the
	// snapshot or, on any error (corrupt, truncated, another format
	// version, a store that is not empty), nothing.
	ReadSnapshot(r io.Reader) error
}
