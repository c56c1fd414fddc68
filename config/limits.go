package config

import (
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"strconv"
	"strings"
)

// RateLimit holds the per-address limits of the tracker logic, which apply
// to HTTP and UDP alike, keyed by the address a request came from.
type RateLimit struct {
	// BadRequestsPerMinute is each address's budget of requests that
	// fail by the client's fault (malformed, unknown passkey,
	// unregistered torrent, ...); an address past it is refused every
	// request until the budget refills. 0 turns the limit off.
	BadRequestsPerMinute int `json:"bad_requests_per_minute"`
	// AnnouncesPerMinute caps each address's announces; 0 turns the
	// limit off.
	AnnouncesPerMinute int `json:"announces_per_minute"`
}

// maxRate bounds the per-minute rates: beyond it a limit limits nothing.
const maxRate = 1_000_000

// minMemoryLimit is the smallest memory_limit taken; below it the garbage
// collector would run without pause, and a bare "2" is more likely a
// missing unit than a wish for two bytes.
const minMemoryLimit = 16 << 20

// ByteSize is a number of bytes written in JSON as a string with an
// optional unit ("512MiB", "2GiB", "1.5GB", "0") or as a plain number.
type ByteSize int64

var byteUnits = []struct {
	suffix string
	size   float64
}{
	// Longest first, so "KiB" is not read as "B".
	{"KiB", 1 << 10}, {"MiB", 1 << 20}, {"GiB", 1 << 30}, {"TiB", 1 << 40},
	{"KB", 1e3}, {"MB", 1e6}, {"GB", 1e9}, {"TB", 1e12},
	{"B", 1},
}

// ParseByteSize reads a size such as "2GiB", "512MiB", "1.5GB" or "1048576".
func ParseByteSize(s string) (ByteSize, error) {
	t := strings.TrimSpace(s)
	mult := 1.0
	for _, u := range byteUnits {
		if rest, ok := strings.CutSuffix(t, u.suffix); ok {
			t, mult = strings.TrimSpace(rest), u.size
			break
		}
	}
	v, err := strconv.ParseFloat(t, 64)
	if err != nil || t == "" || strings.ContainsAny(t, "eExXpP_") || math.IsNaN(v) {
		return 0, fmt.Errorf("invalid size %q: want a number of bytes with an optional unit, such as \"2GiB\" or \"512MiB\"", s)
	}
	v *= mult
	if v < 0 || v >= math.MaxInt64 {
		return 0, fmt.Errorf("invalid size %q: out of range", s)
	}
	return ByteSize(v), nil
}

// UnmarshalJSON reads a size string or a number of bytes.
func (b *ByteSize) UnmarshalJSON(data []byte) error {
	var s string
	if err := json.Unmarshal(data, &s); err != nil {
		var n json.Number
		if json.Unmarshal(data, &n) != nil {
			return errors.New(`want a size such as "2GiB", or "0"`)
		}
		s = n.String()
	}
	v, err := ParseByteSize(s)
	if err != nil {
		return err
	}
	*b = v
	return nil
}

// MarshalJSON writes the size as a string of bytes.
func (b ByteSize) MarshalJSON() ([]byte, error) {
	return json.Marshal(strconv.FormatInt(int64(b), 10))
}

// validateLimits checks the keys of the bounds and abuse controls.
func (c *Config) validateLimits(bad func(key, format string, args ...any)) {
	if c.MemoryLimit != 0 && c.MemoryLimit < minMemoryLimit {
		bad("memory_limit", "must be \"0\" (no limit) or at least 16MiB, got %d bytes", int64(c.MemoryLimit))
	}
	t := c.Tracker
	if t.MinPort < 0 || t.MinPort > math.MaxUint16 {
		bad("tracker.min_port", "must be between 0 (off) and 65535")
	}
	for _, p := range t.BlockedPeerIDPrefixes {
		if p == "" || len(p) > 20 {
			bad("tracker.blocked_peer_id_prefixes", "%q: a prefix must be 1 to 20 bytes", p)
		}
	}
	if r := t.RateLimit.BadRequestsPerMinute; r < 0 || r > maxRate {
		bad("tracker.rate_limit.bad_requests_per_minute", "must be between 0 (off) and %d", maxRate)
	}
	if r := t.RateLimit.AnnouncesPerMinute; r < 0 || r > maxRate {
		bad("tracker.rate_limit.announces_per_minute", "must be between 0 (off) and %d", maxRate)
	}
	if c.HTTP.MaxConnections < 0 {
		bad("http.max_connections", "must not be negative (0 turns the bound off)")
	}
	if c.HTTP.MaxInflight < 0 {
		bad("http.max_inflight", "must not be negative (0 turns the bound off)")
	}
}
