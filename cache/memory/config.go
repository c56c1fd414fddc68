package memory

import (
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/chihaya/chihaya/internal/driverconfig"
)

// config is the driver's own configuration block.
type config struct {
	// shards is the number of independently locked parts the swarms are
	// spread over; a power of two so a mask picks the shard.
	shards int
	// reapInterval is how often the background reaper walks every shard.
	reapInterval time.Duration
	// snapshotFile is where the swarms are written on Close and read
	// back on Open; empty: nowhere.
	snapshotFile string
	// peerIDs keeps every peer's id, which only answers in the
	// dictionary model (HTTP compact=0 without no_peer_id) list: 20 bytes
	// a peer, more than the rest of an IPv4 record. Off, answers carry
	// zero peer ids.
	peerIDs bool
}

const maxShards = 1 << 16

func defaultConfig() config {
	return config{shards: 1024, reapInterval: time.Minute}
}

// parseConfig reads the JSON block strictly over the defaults. An empty
// block or null means the defaults. Errors name the key.
func parseConfig(raw json.RawMessage) (config, error) {
	var block struct {
		Shards       json.RawMessage `json:"shards"`
		ReapInterval json.RawMessage `json:"reap_interval"`
		SnapshotFile json.RawMessage `json:"snapshot_file"`
		PeerIDs      json.RawMessage `json:"peer_ids"`
	}
	c := defaultConfig()
	if err := driverconfig.Decode(raw, &block); err != nil {
		return c, err
	}

	if driverconfig.Set(block.Shards) {
		n := 0
		if err := json.Unmarshal(block.Shards, &n); err != nil || n < 1 || n > maxShards || n&(n-1) != 0 {
			return c, fmt.Errorf("shards: must be a power of two between 1 and %d", maxShards)
		}
		c.shards = n
	}
	if err := driverconfig.Duration(block.ReapInterval, "reap_interval", "1m", &c.reapInterval); err != nil {
		return c, err
	}
	if driverconfig.Set(block.SnapshotFile) {
		if err := json.Unmarshal(block.SnapshotFile, &c.snapshotFile); err != nil {
			return c, errors.New(`snapshot_file: must be a file path string ("" for none)`)
		}
		if strings.ContainsRune(c.snapshotFile, 0) {
			return c, errors.New("snapshot_file: must not contain a NUL byte")
		}
	}
	if driverconfig.Set(block.PeerIDs) {
		if err := json.Unmarshal(block.PeerIDs, &c.peerIDs); err != nil {
			return c, errors.New("peer_ids: must be true or false")
		}
	}
	return c, nil
}
