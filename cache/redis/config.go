package redis

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"strings"
	"time"
)

// config is the driver's own configuration block.
type config struct {
	// addrs are the Redis servers to connect to: the one server, or any
	// nodes of a cluster from which the client learns the others.
	addrs    []string
	cluster  bool
	username string
	password string
	db       int
	tls      tlsConfig
	// keyPrefix starts every key the driver writes, so that trackers
	// (or tests) sharing one Redis keep apart.
	keyPrefix string
	// poolSize is the number of connections per Redis node that
	// concurrent commands are pipelined over; a power of two.
	poolSize     int
	dialTimeout  time.Duration
	readTimeout  time.Duration
	writeTimeout time.Duration
	reapInterval time.Duration
}

type tlsConfig struct {
	enabled            bool
	caFile             string
	serverName         string
	insecureSkipVerify bool
}

// maxPoolSize is the most connections per node the client supports.
const maxPoolSize = 256

func defaultConfig() config {
	return config{
		addrs:        []string{"127.0.0.1:6379"},
		keyPrefix:    "chihaya:",
		poolSize:     4,
		dialTimeout:  time.Second,
		readTimeout:  500 * time.Millisecond,
		writeTimeout: 500 * time.Millisecond,
		reapInterval: time.Minute,
	}
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
		Addrs        json.RawMessage `json:"addrs"`
		Cluster      json.RawMessage `json:"cluster"`
		Username     json.RawMessage `json:"username"`
		Password     json.RawMessage `json:"password"`
		DB           json.RawMessage `json:"db"`
		TLS          json.RawMessage `json:"tls"`
		KeyPrefix    json.RawMessage `json:"key_prefix"`
		PoolSize     json.RawMessage `json:"pool_size"`
		DialTimeout  json.RawMessage `json:"dial_timeout"`
		ReadTimeout  json.RawMessage `json:"read_timeout"`
		WriteTimeout json.RawMessage `json:"write_timeout"`
		ReapInterval json.RawMessage `json:"reap_interval"`
	}
	if err := decodeStrict(raw, &block, ""); err != nil {
		return c, err
	}

	if isSet(block.Addrs) {
		var addrs []string
		if err := json.Unmarshal(block.Addrs, &addrs); err != nil || len(addrs) == 0 {
			return c, errors.New(`addrs: must be a non-empty list of "host:port" strings`)
		}
		for _, a := range addrs {
			if _, port, err := net.SplitHostPort(a); err != nil || port == "" {
				return c, fmt.Errorf(`addrs: %q is not a "host:port" address`, a)
			}
		}
		c.addrs = addrs
	}
	if isSet(block.Cluster) {
		if err := json.Unmarshal(block.Cluster, &c.cluster); err != nil {
			return c, errors.New("cluster: must be true or false")
		}
	}
	for _, s := range []struct {
		key string
		raw json.RawMessage
		dst *string
	}{
		{"username", block.Username, &c.username},
		{"password", block.Password, &c.password},
		{"key_prefix", block.KeyPrefix, &c.keyPrefix},
	} {
		if isSet(s.raw) {
			if err := json.Unmarshal(s.raw, s.dst); err != nil {
				return c, fmt.Errorf("%s: must be a string", s.key)
			}
		}
	}
	if isSet(block.DB) {
		if err := json.Unmarshal(block.DB, &c.db); err != nil || c.db < 0 {
			return c, errors.New("db: must be a non-negative integer")
		}
	}
	if isSet(block.TLS) {
		t, err := parseTLS(block.TLS)
		if err != nil {
			return c, err
		}
		c.tls = t
	}
	if isSet(block.PoolSize) {
		n := 0
		if err := json.Unmarshal(block.PoolSize, &n); err != nil || n < 1 || n > maxPoolSize || n&(n-1) != 0 {
			return c, fmt.Errorf("pool_size: must be a power of two between 1 and %d", maxPoolSize)
		}
		c.poolSize = n
	}
	for _, d := range []struct {
		key string
		raw json.RawMessage
		dst *time.Duration
	}{
		{"dial_timeout", block.DialTimeout, &c.dialTimeout},
		{"read_timeout", block.ReadTimeout, &c.readTimeout},
		{"write_timeout", block.WriteTimeout, &c.writeTimeout},
		{"reap_interval", block.ReapInterval, &c.reapInterval},
	} {
		if isSet(d.raw) {
			v, err := parseDuration(d.key, d.raw)
			if err != nil {
				return c, err
			}
			*d.dst = v
		}
	}

	if c.cluster && c.db != 0 {
		return c, errors.New("db: a Redis Cluster has only database 0")
	}
	if !c.cluster && len(c.addrs) != 1 {
		return c, errors.New("addrs: a single Redis takes one address; set cluster to true to list cluster nodes")
	}
	return c, nil
}

func parseTLS(raw json.RawMessage) (tlsConfig, error) {
	var t tlsConfig
	var block struct {
		Enabled            json.RawMessage `json:"enabled"`
		CAFile             json.RawMessage `json:"ca_file"`
		ServerName         json.RawMessage `json:"server_name"`
		InsecureSkipVerify json.RawMessage `json:"insecure_skip_verify"`
	}
	if err := decodeStrict(raw, &block, "tls."); err != nil {
		return t, err
	}
	for _, b := range []struct {
		key string
		raw json.RawMessage
		dst *bool
	}{
		{"tls.enabled", block.Enabled, &t.enabled},
		{"tls.insecure_skip_verify", block.InsecureSkipVerify, &t.insecureSkipVerify},
	} {
		if isSet(b.raw) {
			if err := json.Unmarshal(b.raw, b.dst); err != nil {
				return t, fmt.Errorf("%s: must be true or false", b.key)
			}
		}
	}
	for _, s := range []struct {
		key string
		raw json.RawMessage
		dst *string
	}{
		{"tls.ca_file", block.CAFile, &t.caFile},
		{"tls.server_name", block.ServerName, &t.serverName},
	} {
		if isSet(s.raw) {
			if err := json.Unmarshal(s.raw, s.dst); err != nil {
				return t, fmt.Errorf("%s: must be a string", s.key)
			}
		}
	}
	return t, nil
}

func parseDuration(key string, raw json.RawMessage) (time.Duration, error) {
	var s string
	if err := json.Unmarshal(raw, &s); err != nil {
		return 0, fmt.Errorf(`%s: must be a duration string such as "1s"`, key)
	}
	d, err := time.ParseDuration(s)
	if err != nil {
		return 0, fmt.Errorf("%s: %w", key, err)
	}
	if d <= 0 {
		return 0, fmt.Errorf("%s: must be positive", key)
	}
	return d, nil
}

// decodeStrict decodes one JSON object into dst, refusing unknown keys and
// trailing data. path is the prefix of the object's keys in messages.
func decodeStrict(raw json.RawMessage, dst any, path string) error {
	dec := json.NewDecoder(bytes.NewReader(raw))
	dec.DisallowUnknownFields()
	if err := dec.Decode(dst); err != nil {
		return describe(err, path)
	}
	if _, err := dec.Token(); err != io.EOF {
		if path != "" {
			return fmt.Errorf("%s: unexpected data after the object", strings.TrimSuffix(path, "."))
		}
		return errors.New("unexpected data after the configuration object")
	}
	return nil
}

// isSet reports whether a key was given a value other than null, which
// keeps the default.
func isSet(v json.RawMessage) bool {
	return len(v) > 0 && string(v) != "null"
}

// describe turns encoding/json's errors into messages an operator can act
// on; path is the prefix of the object's keys.
func describe(err error, path string) error {
	var typeErr *json.UnmarshalTypeError
	var syntaxErr *json.SyntaxError
	what := "the configuration"
	if path != "" {
		what = strings.TrimSuffix(path, ".")
	}
	switch {
	case errors.As(err, &typeErr):
		return fmt.Errorf("%s must be a JSON object, not %s", what, typeErr.Value)
	case errors.As(err, &syntaxErr):
		return fmt.Errorf("invalid JSON at byte %d: %v", syntaxErr.Offset, err)
	case strings.HasPrefix(err.Error(), "json: unknown field "):
		// encoding/json has no typed error for this case.
		name := strings.Trim(strings.TrimPrefix(err.Error(), "json: unknown field "), `"`)
		return fmt.Errorf("unknown key %q", path+name)
	}
	return err
}
