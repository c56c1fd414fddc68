//go:build race

package udp

// raceEnabled tells tests that the race detector, which allocates on its
// own, is on.
const raceEnabled = true
