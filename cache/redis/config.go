package redis

import (
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"time"

	"github.com/chihaya/chihaya/internal/driverconfig"
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
	c := defaultConfig()
	if err := driverconfig.Decode(raw, &block); err != nil {
		return c, err
	}

	if driverconfig.Set(block.Addrs) {
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
	if err := driverconfig.Bool(block.Cluster, "cluster", &c.cluster); err != nil {
		return c, err
	}
	if err := driverconfig.String(block.Username, "username", &c.username); err != nil {
		return c, err
	}
	if err := driverconfig.String(block.Password, "password", &c.password); err != nil {
		return c, err
	}
	if err := driverconfig.String(block.KeyPrefix, "key_prefix", &c.keyPrefix); err != nil {
		return c, err
	}
	if driverconfig.Set(block.DB) {
		if err := json.Unmarshal(block.DB, &c.db); err != nil || c.db < 0 {
			return c, errors.New("db: must be a non-negative integer")
		}
	}
	if driverconfig.Set(block.TLS) {
		t, err := parseTLS(block.TLS)
		if err != nil {
			return c, err
		}
		c.tls = t
	}
	if driverconfig.Set(block.PoolSize) {
		n := 0
		if err := json.Unmarshal(block.PoolSize, &n); err != nil || n < 1 || n > maxPoolSize || n&(n-1) != 0 {
			return c, fmt.Errorf("pool_size: must be a power of two between 1 and %d", maxPoolSize)
		}
		c.poolSize = n
	}
	if err := driverconfig.Duration(block.DialTimeout, "dial_timeout", "1s", &c.dialTimeout); err != nil {
		return c, err
	}
	if err := driverconfig.Duration(block.ReadTimeout, "read_timeout", "1s", &c.readTimeout); err != nil {
		return c, err
	}
	if err := driverconfig.Duration(block.WriteTimeout, "write_timeout", "1s", &c.writeTimeout); err != nil {
		return c, err
	}
	if err := driverconfig.Duration(block.ReapInterval, "reap_interval", "1s", &c.reapInterval); err != nil {
		return c, err
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
	if err := driverconfig.DecodeObject(raw, "tls", &block); err != nil {
		return t, err
	}
	if err := driverconfig.Bool(block.Enabled, "tls.enabled", &t.enabled); err != nil {
		return t, err
	}
	if err := driverconfig.Bool(block.InsecureSkipVerify, "tls.insecure_skip_verify", &t.insecureSkipVerify); err != nil {
		return t, err
	}
	if err := driverconfig.String(block.CAFile, "tls.ca_file", &t.caFile); err != nil {
		return t, err
	}
	if err := driverconfig.String(block.ServerName, "tls.server_name", &t.serverName); err != nil {
		return t, err
	}
	return t, nil
}
