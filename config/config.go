// Package config reads the tracker's JSON configuration file. The embedded
// example.json is both the documentation of every key and the defaults: a
// file only has to name what it changes.
package config

import (
	"bytes"
	_ "embed"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/netip"
	"os"
	"reflect"
	"sort"
	"strings"
	"time"
)

//go:embed example.json
var defaults []byte

// Config is the whole configuration.
type Config struct {
	// LogLevel is one of debug, info, warn, error.
	LogLevel string `json:"log_level"`
	// ShutdownTimeout bounds how long a graceful shutdown waits for
	// requests in flight and for the stores to close.
	ShutdownTimeout Duration `json:"shutdown_timeout"`
	Tracker         Tracker  `json:"tracker"`
	HTTP            HTTP     `json:"http"`
	UDP             UDP      `json:"udp"`
	Admin           Admin    `json:"admin"`
	Cache           Driver   `json:"cache"`
	Storage         Storage  `json:"storage"`

	// MemoryLimit is the Go runtime's soft memory limit
	// (debug.SetMemoryLimit); 0 leaves the runtime's own (GOMEMLIMIT).
	MemoryLimit ByteSize `json:"memory_limit"`
}

// Tracker holds the protocol-free announce and scrape rules.
type Tracker struct {
	// AnnounceInterval is the interval sent to clients.
	AnnounceInterval Duration `json:"announce_interval"`
	// MinAnnounceInterval is the min interval sent to clients.
	MinAnnounceInterval Duration `json:"min_announce_interval"`
	// AnnounceJitter is the largest random amount added to each interval,
	// so that clients started together drift apart.
	AnnounceJitter Duration `json:"announce_jitter"`
	// PeerLifetime is how long a peer stays in a swarm after its last
	// announce; it must outlast the interval plus the jitter.
	PeerLifetime Duration `json:"peer_lifetime"`
	// DefaultNumWant is used when a client does not send numwant.
	DefaultNumWant int `json:"default_numwant"`
	// MaxNumWant caps the numwant a client may ask for.
	MaxNumWant int `json:"max_numwant"`
	// MaxScrapeInfoHashes caps the info hashes in one scrape.
	MaxScrapeInfoHashes int `json:"max_scrape_infohashes"`
	// InfoHashList is a file of info hashes (40 hex digits a line) that
	// an open tracker allows or denies; empty: none. SIGHUP re-reads it.
	InfoHashList string `json:"infohash_list"`
	// InfoHashListMode is "allow" (only the listed torrents) or "deny"
	// (all but the listed torrents).
	InfoHashListMode string `json:"infohash_list_mode"`
	// MinPort refuses announces from lower ports (1024 refuses the
	// privileged ones); 0 turns the check off.
	MinPort int `json:"min_port"`
	// BlockedPeerIDPrefixes refuses clients whose peer id starts with
	// one of these ("-XX0001-").
	BlockedPeerIDPrefixes []string `json:"blocked_peer_id_prefixes"`
	// RateLimit holds the per-address rate limits.
	RateLimit RateLimit `json:"rate_limit"`
}

// HTTP configures the HTTP frontend.
type HTTP struct {
	// Enabled turns the frontend on.
	Enabled bool `json:"enabled"`
	// Listen is the address to listen on; a host-less ":port" listens on
	// every address of both families.
	Listen string `json:"listen"`
	// ReadTimeout bounds reading a whole request, headers included.
	ReadTimeout Duration `json:"read_timeout"`
	// WriteTimeout bounds writing a response.
	WriteTimeout Duration `json:"write_timeout"`
	// IdleTimeout bounds how long a keep-alive connection waits for its
	// next request.
	IdleTimeout Duration `json:"idle_timeout"`
	// MaxHeaderBytes bounds the request line plus headers.
	MaxHeaderBytes int `json:"max_header_bytes"`
	// MaxConnections bounds the open connections; past it a new one is
	// answered 503 and closed. 0 turns the bound off.
	MaxConnections int `json:"max_connections"`
	// MaxInflight bounds the announces and scrapes served at once; past
	// it a request is answered 503 at once. 0 turns the bound off.
	MaxInflight int `json:"max_inflight"`
	// AllowIPParam lets clients name their own addresses with the ip,
	// ipv4 and ipv6 parameters. Off by default, since it lets anyone add
	// any address to a swarm.
	AllowIPParam bool `json:"allow_ip_param"`
	// TrustedProxies are the addresses or prefixes of reverse proxies
	// whose RealIPHeader is believed.
	TrustedProxies []string `json:"trusted_proxies"`
	// RealIPHeader names the header a trusted proxy puts the client's
	// address in, such as X-Real-IP or X-Forwarded-For.
	RealIPHeader string `json:"real_ip_header"`
	// TLSCertFile and TLSKeyFile name the PEM certificate chain and key
	// the port is served with over TLS; both empty serves plain HTTP.
	TLSCertFile string `json:"tls_cert_file"`
	TLSKeyFile  string `json:"tls_key_file"`
}

// UDP configures the UDP frontend (BEP 15).
type UDP struct {
	// Enabled turns the frontend on.
	Enabled bool `json:"enabled"`
	// Listen is the address to listen on; a host-less ":port" listens on
	// every address of both families.
	Listen string `json:"listen"`
	// Readers is the number of goroutines reading packets; 0 means one
	// per CPU the process may use, or 32 per CPU with a cache behind a
	// network.
	Readers int `json:"readers"`
	// SpareProc runs the process with one more Go P (GOMAXPROCS) than
	// readers that wait in the kernel, so that a reader waiting for
	// packets keeps its P: faster UDP, at some cost to HTTP served by the
	// same process on as few CPUs.
	SpareProc bool `json:"spare_proc"`
	// ConnectionIDLifetime is how long a connection ID stays valid after
	// it was issued (BEP 15 says two minutes).
	ConnectionIDLifetime Duration `json:"connection_id_lifetime"`
	// ConnectionIDKey is the secret, 32 hex digits, that connection IDs
	// are signed with. Empty: a random key at every start. Trackers that
	// share one address behind a load balancer must share the key.
	ConnectionIDKey string `json:"connection_id_key"`
	// AllowIPParam believes the announce's IP address field.
	AllowIPParam bool `json:"allow_ip_param"`
	// MaxNumWant caps the peers of one UDP answer, below
	// tracker.max_numwant, so that answers fit one unfragmented packet.
	MaxNumWant int `json:"max_numwant"`
	// MaxScrapeInfoHashes caps the info hashes of one scrape packet.
	MaxScrapeInfoHashes int `json:"max_scrape_infohashes"`
}

// Admin configures the operators' HTTP server: metrics, stats, health
// checks, the full scrape and the profiler.
type Admin struct {
	// Enabled turns the server on.
	Enabled bool `json:"enabled"`
	// Listen is its address; keep it off the public internet.
	Listen string `json:"listen"`
	// Pprof serves Go's profiler under /debug/pprof/.
	Pprof bool `json:"pprof"`
}

// Driver picks a data-store driver by name and carries its own block, which
// the driver validates.
type Driver struct {
	// Name is the registered driver name; empty means none.
	Name string `json:"driver"`
	// Config is the driver's own configuration.
	Config json.RawMessage `json:"config"`
}

// Storage picks the web application's database and says how the tracker
// uses it. With no driver the tracker is an open tracker.
type Storage struct {
	// Name is the registered driver name; empty means none.
	Name string `json:"driver"`
	// Config is the driver's own configuration.
	Config json.RawMessage `json:"config"`
	// FlushInterval is how often collected statistics are written.
	FlushInterval Duration `json:"flush_interval"`
	// WriteTimeout bounds one batch write.
	WriteTimeout Duration `json:"write_timeout"`
	// MaxRetryInterval caps the back-off between failed writes.
	MaxRetryInterval Duration `json:"max_retry_interval"`
	// MaxPendingPeerRows bounds the peer rows waiting to be written;
	// past it the oldest are dropped (the next announce rewrites them).
	MaxPendingPeerRows int `json:"max_pending_peer_rows"`
	// ReloadInterval is how often users, torrents, tokens and the
	// whitelist are reloaded as a diff; 0 turns periodic reloads off
	// (SIGUSR1 still reloads).
	ReloadInterval Duration `json:"reload_interval"`
	// DeletionReasonLifetime is how long announces for a deleted torrent
	// are told why it was deleted.
	DeletionReasonLifetime Duration `json:"deletion_reason_lifetime"`
}

// Duration is a time.Duration written in JSON as a Go duration string
// ("30m", "1h30m").
type Duration time.Duration

// UnmarshalJSON reads a duration string.
func (d *Duration) UnmarshalJSON(b []byte) error {
	var s string
	if err := json.Unmarshal(b, &s); err != nil {
		return errors.New(`want a duration string such as "30m"`)
	}
	v, err := time.ParseDuration(s)
	if err != nil {
		return fmt.Errorf("invalid duration %q", s)
	}
	*d = Duration(v)
	return nil
}

// MarshalJSON writes the duration as a string.
func (d Duration) MarshalJSON() ([]byte, error) {
	return json.Marshal(time.Duration(d).String())
}

// D returns the duration as a time.Duration.
func (d Duration) D() time.Duration { return time.Duration(d) }

// Default returns the embedded defaults.
func Default() *Config {
	c, err := decode(nil, bytes.NewReader(defaults))
	if err != nil {
		panic("config: embedded defaults are invalid: " + err.Error())
	}
	return c
}

// Load reads the file at path over the defaults and validates the result.
func Load(path string) (*Config, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	c, err := Parse(f)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	return c, nil
}

// Parse reads a configuration over the defaults and validates it.
func Parse(r io.Reader) (*Config, error) {
	return decode(Default(), r)
}

func decode(base *Config, r io.Reader) (*Config, error) {
	c := base
	if c == nil {
		c = &Config{}
	}
	data, err := io.ReadAll(r)
	if err != nil {
		return nil, err
	}
	if len(bytes.TrimSpace(data)) == 0 {
		return nil, errors.New("the configuration is empty")
	}
	if err := decodeInto(reflect.ValueOf(c).Elem(), data, ""); err != nil {
		return nil, err
	}
	if err := c.Validate(); err != nil {
		return nil, err
	}
	return c, nil
}

var (
	rawMessageType = reflect.TypeFor[json.RawMessage]()
	driverTypes    = map[reflect.Type]bool{reflect.TypeFor[Driver](): true, reflect.TypeFor[Storage](): true}
	unmarshalerTyp = reflect.TypeFor[json.Unmarshaler]()
)

// decodeInto decodes one JSON object into the struct v key by key, so that
// every error names the full key ("http.read_timeout"), including unknown
// keys, which encoding/json reports without their path. Keys the data does
// not name keep the value v already holds: the defaults.
func decodeInto(v reflect.Value, data []byte, path string) error {
	var obj map[string]json.RawMessage
	if err := json.Unmarshal(data, &obj); err != nil || obj == nil {
		if path == "" {
			var syntaxErr *json.SyntaxError
			if errors.As(err, &syntaxErr) {
				return fmt.Errorf("invalid JSON at byte %d: %v", syntaxErr.Offset, err)
			}
			return errors.New("the configuration must be a JSON object")
		}
		return fmt.Errorf("%s: want an object", path)
	}
	fields := map[string]reflect.Value{}
	for i := range v.NumField() {
		name, _, _ := strings.Cut(v.Type().Field(i).Tag.Get("json"), ",")
		fields[name] = v.Field(i)
	}
	keys := make([]string, 0, len(obj))
	for k := range obj {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, key := range keys {
		raw := obj[key]
		full := key
		if path != "" {
			full = path + "." + key
		}
		field, ok := fields[key]
		if !ok {
			return fmt.Errorf("unknown key %q", full)
		}
		if field.Kind() == reflect.Struct && !field.Addr().Type().Implements(unmarshalerTyp) {
			if err := decodeInto(field, raw, full); err != nil {
				return err
			}
			continue
		}
		if field.Type() == rawMessageType {
			field.SetBytes(append(json.RawMessage(nil), raw...))
			continue
		}
		fresh := reflect.New(field.Type())
		if err := json.Unmarshal(raw, fresh.Interface()); err != nil {
			return fmt.Errorf("%s: %s", full, describeValueError(err))
		}
		field.Set(fresh.Elem())
	}
	// A file that switches to another driver without giving its block
	// must not hand the old driver's default block to the new one.
	if driverTypes[v.Type()] {
		if _, named := obj["driver"]; named {
			if _, configured := obj["config"]; !configured {
				v.FieldByName("Config").SetBytes(nil)
			}
		}
	}
	return nil
}

func describeValueError(err error) string {
	var typeErr *json.UnmarshalTypeError
	if errors.As(err, &typeErr) {
		return fmt.Sprintf("want %s, got %s", jsonKind(typeErr.Type.Kind()), typeErr.Value)
	}
	return err.Error()
}

func jsonKind(k reflect.Kind) string {
	switch k {
	case reflect.Int, reflect.Int64, reflect.Uint16, reflect.Uint32:
		return "a whole number"
	case reflect.Bool:
		return "true or false"
	case reflect.String:
		return "a string"
	case reflect.Slice:
		return "a list"
	case reflect.Struct, reflect.Map:
		return "an object"
	}
	return k.String()
}

// Validate checks every value; the error names the key and the problem.
func (c *Config) Validate() error {
	var errs []error
	bad := func(key, format string, args ...any) {
		errs = append(errs, fmt.Errorf("%s: %s", key, fmt.Sprintf(format, args...)))
	}
	if _, err := ParseLogLevel(c.LogLevel); err != nil {
		bad("log_level", "%v", err)
	}
	if c.ShutdownTimeout <= 0 {
		bad("shutdown_timeout", "must be positive")
	}

	t := c.Tracker
	if t.AnnounceInterval <= 0 {
		bad("tracker.announce_interval", "must be positive")
	}
	if t.MinAnnounceInterval <= 0 || t.MinAnnounceInterval > t.AnnounceInterval {
		bad("tracker.min_announce_interval", "must be positive and at most announce_interval (%s)", t.AnnounceInterval.D())
	}
	if t.AnnounceJitter < 0 {
		bad("tracker.announce_jitter", "must not be negative")
	}
	if t.PeerLifetime <= t.AnnounceInterval+t.AnnounceJitter {
		bad("tracker.peer_lifetime", "must be longer than announce_interval plus announce_jitter (%s), or peers expire between announces", (t.AnnounceInterval + t.AnnounceJitter).D())
	}
	if t.MaxNumWant < 0 {
		bad("tracker.max_numwant", "must not be negative")
	}
	if t.DefaultNumWant < 0 || t.DefaultNumWant > t.MaxNumWant {
		bad("tracker.default_numwant", "must be between 0 and max_numwant (%d)", t.MaxNumWant)
	}
	if t.MaxScrapeInfoHashes < 1 {
		bad("tracker.max_scrape_infohashes", "must be at least 1")
	}
	if t.InfoHashListMode != "allow" && t.InfoHashListMode != "deny" {
		bad("tracker.infohash_list_mode", "must be \"allow\" or \"deny\"")
	}

	h := c.HTTP
	if h.Enabled {
		if h.Listen == "" {
			bad("http.listen", "must be set while http.enabled is true")
		}
		if h.ReadTimeout <= 0 {
			bad("http.read_timeout", "must be positive")
		}
		if h.WriteTimeout <= 0 {
			bad("http.write_timeout", "must be positive")
		}
		if h.IdleTimeout <= 0 {
			bad("http.idle_timeout", "must be positive")
		}
		if h.MaxHeaderBytes < 512 {
			bad("http.max_header_bytes", "must be at least 512")
		}
		if (h.TLSCertFile == "") != (h.TLSKeyFile == "") {
			bad("http.tls_cert_file", "tls_cert_file and tls_key_file must be set together")
		}
	}
	u := c.UDP
	if u.Enabled {
		if u.Listen == "" {
			bad("udp.listen", "must be set while udp.enabled is true")
		}
		if u.Readers < 0 || u.Readers > 1024 {
			bad("udp.readers", "must be between 0 (one per CPU) and 1024")
		}
		if u.ConnectionIDLifetime < Duration(time.Minute) || u.ConnectionIDLifetime > Duration(time.Hour) {
			bad("udp.connection_id_lifetime", "must be between 1m and 1h")
		}
		if u.MaxNumWant < 0 {
			bad("udp.max_numwant", "must not be negative")
		}
		if u.MaxScrapeInfoHashes < 1 {
			bad("udp.max_scrape_infohashes", "must be at least 1")
		}
	}
	if c.Admin.Enabled && c.Admin.Listen == "" {
		bad("admin.listen", "must be set while admin.enabled is true")
	}
	if !h.Enabled && !u.Enabled {
		bad("http.enabled", "http and udp are both disabled: enable at least one frontend")
	}
	if _, err := ParseKey(u.ConnectionIDKey); err != nil {
		bad("udp.connection_id_key", "%v", err)
	}
	if _, err := ParsePrefixes(h.TrustedProxies); err != nil {
		bad("http.trusted_proxies", "%v", err)
	}
	if len(h.TrustedProxies) > 0 && h.RealIPHeader == "" {
		bad("http.real_ip_header", "must be set when trusted_proxies is not empty")
	}
	if h.RealIPHeader != "" && len(h.TrustedProxies) == 0 {
		bad("http.trusted_proxies", "must list the proxies whose %s header is believed", h.RealIPHeader)
	}
	st := c.Storage
	if st.FlushInterval <= 0 {
		bad("storage.flush_interval", "must be positive")
	}
	if st.WriteTimeout <= 0 {
		bad("storage.write_timeout", "must be positive")
	}
	if st.MaxRetryInterval < st.FlushInterval {
		bad("storage.max_retry_interval", "must be at least flush_interval (%s)", st.FlushInterval.D())
	}
	if st.MaxPendingPeerRows < 1 {
		bad("storage.max_pending_peer_rows", "must be at least 1")
	}
	if st.ReloadInterval < 0 {
		bad("storage.reload_interval", "must not be negative (0 turns periodic reloads off)")
	}
	if st.DeletionReasonLifetime < 0 {
		bad("storage.deletion_reason_lifetime", "must not be negative")
	}
	if c.Cache.Name == "" {
		bad("cache.driver", "must name a cache driver, such as \"memory\"")
	}
	c.validateLimits(bad)
	return errors.Join(errs...)
}

// ParseKey reads a 16-byte secret written as 32 hex digits; the empty string
// is the zero key, which means "generate one".
func ParseKey(s string) ([16]byte, error) {
	var key [16]byte
	if s == "" {
		return key, nil
	}
	if len(s) != 32 {
		return key, fmt.Errorf("must be 32 hex digits, got %d characters", len(s))
	}
	if _, err := hex.Decode(key[:], []byte(s)); err != nil {
		return key, errors.New("must be 32 hex digits")
	}
	if key == ([16]byte{}) {
		return key, errors.New("must not be all zeros")
	}
	return key, nil
}

// ParseLogLevel reads a log level name.
func ParseLogLevel(s string) (slog.Level, error) {
	var l slog.Level
	if err := l.UnmarshalText([]byte(s)); err != nil {
		return 0, fmt.Errorf("unknown level %q (want debug, info, warn or error)", s)
	}
	return l, nil
}

// ParsePrefixes reads addresses ("10.0.0.1", "::1") and prefixes
// ("10.0.0.0/8"); addresses become single-address prefixes. IPv4-mapped
// IPv6 addresses are unmapped, as the frontends unmap client addresses.
func ParsePrefixes(list []string) ([]netip.Prefix, error) {
	out := make([]netip.Prefix, 0, len(list))
	for _, s := range list {
		if strings.Contains(s, "/") {
			p, err := netip.ParsePrefix(s)
			if err != nil {
				return nil, fmt.Errorf("%q is not an address or prefix", s)
			}
			if p.Addr().Is4In6() && p.Bits() >= 96 {
				p = netip.PrefixFrom(p.Addr().Unmap(), p.Bits()-96)
			}
			out = append(out, p.Masked())
			continue
		}
		a, err := netip.ParseAddr(s)
		if err != nil {
			return nil, fmt.Errorf("%q is not an address or prefix", s)
		}
		a = a.Unmap()
		out = append(out, netip.PrefixFrom(a, a.BitLen()))
	}
	return out, nil
}
