package postgres

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"slices"
	"strings"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
)

// config is the driver's own configuration block.
type config struct {
	pool *pgxpool.Config
	// dsnAddr is how messages name the database: user, address and
	// database, never the password.
	dsnAddr string
	// maxConns bounds the pool; the LISTEN connection comes on top.
	maxConns int32
	// timeout bounds each write batch and each fetch of changed rows.
	timeout time.Duration
	// channel is the LISTEN/NOTIFY channel of live changes.
	channel string
	// readonly makes every write, the start-up statement and Migrate
	// no-ops or errors, so a test tracker can read a production
	// database.
	readonly bool
	// queries holds every statement, defaults and overrides alike.
	queries queries
}

func defaultConfig() config {
	return config{
		maxConns: 8,
		timeout:  10 * time.Second,
		channel:  "chihaya",
	}
}

// maxChannelLen is NAMEDATALEN - 1: PostgreSQL truncates longer
// identifiers, so a longer channel would LISTEN to another name than the
// one configured.
const maxChannelLen = 63

// parseConfig reads the JSON block strictly over the defaults. Errors name
// the key.
func parseConfig(raw json.RawMessage) (config, error) {
	c := defaultConfig()
	raw = bytes.TrimSpace(raw)
	if len(raw) == 0 || string(raw) == "null" {
		return c, errors.New(`dsn: required (for example "postgres://tracker@127.0.0.1:5432/site")`)
	}
	var block struct {
		DSN      json.RawMessage `json:"dsn"`
		MaxConns json.RawMessage `json:"max_conns"`
		Timeout  json.RawMessage `json:"timeout"`
		Channel  json.RawMessage `json:"channel"`
		Queries  json.RawMessage `json:"queries"`
		Readonly json.RawMessage `json:"readonly"`
	}
	dec := json.NewDecoder(bytes.NewReader(raw))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&block); err != nil {
		return c, describe(err, "")
	}
	if _, err := dec.Token(); err != io.EOF {
		return c, errors.New("unexpected data after the configuration object")
	}

	var dsn string
	if err := decodeString(block.DSN, "dsn", &dsn); err != nil {
		return c, err
	}
	if dsn == "" {
		return c, errors.New(`dsn: required (for example "postgres://tracker@127.0.0.1:5432/site")`)
	}
	pc, err := pgxpool.ParseConfig(dsn)
	if err != nil {
		// pgx's message quotes the DSN with its password masked.
		return c, fmt.Errorf("dsn: %w", err)
	}
	c.pool = pc
	cc := pc.ConnConfig
	c.dsnAddr = fmt.Sprintf("%s@%s:%d/%s", cc.User, cc.Host, cc.Port, cc.Database)

	if isSet(block.MaxConns) {
		var n int
		if err := json.Unmarshal(block.MaxConns, &n); err != nil || n < 1 || n > 1000 {
			return c, errors.New("max_conns: must be an integer between 1 and 1000")
		}
		c.maxConns = int32(n)
	}
	if isSet(block.Timeout) {
		var s string
		if err := json.Unmarshal(block.Timeout, &s); err != nil {
			return c, errors.New(`timeout: must be a duration string such as "10s"`)
		}
		d, err := time.ParseDuration(s)
		if err != nil {
			return c, fmt.Errorf("timeout: %w", err)
		}
		if d <= 0 {
			return c, errors.New("timeout: must be positive")
		}
		c.timeout = d
	}
	if err := decodeString(block.Channel, "channel", &c.channel); err != nil {
		return c, err
	}
	if c.channel == "" || len(c.channel) > maxChannelLen || strings.ContainsRune(c.channel, 0) {
		return c, fmt.Errorf("channel: must be 1 to %d bytes without NUL, not %q", maxChannelLen, c.channel)
	}
	if isSet(block.Readonly) {
		if err := json.Unmarshal(block.Readonly, &c.readonly); err != nil {
			return c, errors.New("readonly: must be true or false")
		}
	}
	if c.queries, err = parseQueries(block.Queries); err != nil {
		return c, err
	}
	return c, nil
}

// parseQueries reads the queries block: statement key to SQL, over the
// defaults.
func parseQueries(raw json.RawMessage) (queries, error) {
	given := map[string]string{}
	if isSet(raw) {
		var obj map[string]json.RawMessage
		if err := json.Unmarshal(raw, &obj); err != nil {
			return queries{}, errors.New("queries: must be an object of statement names to SQL")
		}
		keys := make([]string, 0, len(obj))
		for k := range obj {
			keys = append(keys, k)
		}
		slices.Sort(keys)
		for _, k := range keys {
			if defs[k] == nil {
				return queries{}, fmt.Errorf("queries: unknown key %q (known: %s)", k, strings.Join(defKeys(), ", "))
			}
			var sql string
			if err := json.Unmarshal(obj[k], &sql); err != nil {
				return queries{}, fmt.Errorf("queries.%s: must be a string", k)
			}
			given[k] = sql
		}
	}
	return buildQueries(given)
}

// isSet reports whether a key was given a value other than null, which
// keeps the default.
func isSet(v json.RawMessage) bool {
	return len(v) > 0 && string(v) != "null"
}

func decodeString(raw json.RawMessage, key string, into *string) error {
	if !isSet(raw) {
		return nil
	}
	if err := json.Unmarshal(raw, into); err != nil {
		return fmt.Errorf("%s: must be a string", key)
	}
	return nil
}

// describe turns encoding/json's errors into messages an operator can act
// on.
func describe(err error, path string) error {
	var typeErr *json.UnmarshalTypeError
	var syntaxErr *json.SyntaxError
	switch {
	case errors.As(err, &typeErr):
		return fmt.Errorf("the configuration must be a JSON object, not %s", typeErr.Value)
	case errors.As(err, &syntaxErr):
		return fmt.Errorf("invalid JSON at byte %d: %v", syntaxErr.Offset, err)
	case strings.HasPrefix(err.Error(), "json: unknown field "):
		// encoding/json has no typed error for this case.
		return fmt.Errorf("unknown key %s%s", path, strings.TrimPrefix(err.Error(), "json: unknown field "))
	}
	return err
}
