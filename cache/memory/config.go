package memory

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"strings"
	"time"
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
}

const maxShards = 1 << 16

func defaultConfig() config {
	return config{shards: 1024, reapInterval: time.Minute}
}

// parseConfig reads the JSON block strictly over the defaults. An empty
// block or null means the defaults. Errors name the key.
func parseConfig(raw json.RawMessage) (config, error) {
	c := defaultConfig()
	raw = bytes.TrimSpace(raw)
	if len(raw) == 0 || string(raw) == "null" {
		return c, nil
	}
	// Each key is decoded on its own in a second step so that a value of
	// the wrong type gets the same message, naming the key, as an
	// out-of-range one.
	var block struct {
		Shards       json.RawMessage `json:"shards"`
		ReapInterval json.RawMessage `json:"reap_interval"`
		SnapshotFile json.RawMessage `json:"snapshot_file"`
	}
	dec := json.NewDecoder(bytes.NewReader(raw))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&block); err != nil {
		return c, describe(err)
	}
	if _, err := dec.Token(); err != io.EOF {
		return c, errors.New("unexpected data after the configuration object")
	}

	if isSet(block.Shards) {
		n := 0
		if err := json.Unmarshal(block.Shards, &n); err != nil || n < 1 || n > maxShards || n&(n-1) != 0 {
			return c, fmt.Errorf("shards: must be a power of two between 1 and %d", maxShards)
		}
		c.shards = n
	}
	if isSet(block.ReapInterval) {
		var s string
		if err := json.Unmarshal(block.ReapInterval, &s); err != nil {
			return c, errors.New(`reap_interval: must be a duration string such as "1m"`)
		}
		d, err := time.ParseDuration(s)
		if err != nil {
			return c, fmt.Errorf("reap_interval: %w", err)
		}
		if d <= 0 {
			return c, errors.New("reap_interval: must be positive")
		}
		c.reapInterval = d
	}
	if isSet(block.SnapshotFile) {
		if err := json.Unmarshal(block.SnapshotFile, &c.snapshotFile); err != nil {
			return c, errors.New(`snapshot_file: must be a file path string ("" for none)`)
		}
		if strings.ContainsRune(c.snapshotFile, 0) {
			return c, errors.New("snapshot_file: must not contain a NUL byte")
		}
	}
	return c, nil
}

// isSet reports whether a key was given a value other than null, which
// keeps the default.
func isSet(v json.RawMessage) bool {
	return len(v) > 0 && string(v) != "null"
}

// describe turns encoding/json's errors into messages an operator can act
// on.
func describe(err error) error {
	var typeErr *json.UnmarshalTypeError
	var syntaxErr *json.SyntaxError
	switch {
	case errors.As(err, &typeErr):
		return fmt.Errorf("the configuration must be a JSON object, not %s", typeErr.Value)
	case errors.As(err, &syntaxErr):
		return fmt.Errorf("invalid JSON at byte %d: %v", syntaxErr.Offset, err)
	case strings.HasPrefix(err.Error(), "json: unknown field "):
		// encoding/json has no typed error for this case.
		return fmt.Errorf("unknown key %s", strings.TrimPrefix(err.Error(), "json: unknown field "))
	}
	return err
}
