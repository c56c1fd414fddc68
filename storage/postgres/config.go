package postgres

import (
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/chihaya/chihaya/internal/driverconfig"
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
	var block struct {
		DSN      json.RawMessage `json:"dsn"`
		MaxConns json.RawMessage `json:"max_conns"`
		Timeout  json.RawMessage `json:"timeout"`
		Channel  json.RawMessage `json:"channel"`
		Queries  json.RawMessage `json:"queries"`
		Readonly json.RawMessage `json:"readonly"`
	}
	c := defaultConfig()
	if err := driverconfig.Decode(raw, &block); err != nil {
		return c, err
	}

	dsn, err := driverconfig.Required(block.DSN, "dsn", "postgres://tracker@127.0.0.1:5432/site")
	if err != nil {
		return c, err
	}
	pc, err := pgxpool.ParseConfig(dsn)
	if err != nil {
		// pgx's message quotes the DSN with its password masked.
		return c, fmt.Errorf("dsn: %w", err)
	}
	c.pool = pc
	cc := pc.ConnConfig
	c.dsnAddr = fmt.Sprintf("%s@%s:%d/%s", cc.User, cc.Host, cc.Port, cc.Database)

	if driverconfig.Set(block.MaxConns) {
		var n int
		if err := json.Unmarshal(block.MaxConns, &n); err != nil || n < 1 || n > 1000 {
			return c, errors.New("max_conns: must be an integer between 1 and 1000")
		}
		c.maxConns = int32(n)
	}
	if err := driverconfig.Duration(block.Timeout, "timeout", "10s", &c.timeout); err != nil {
		return c, err
	}
	if err := driverconfig.String(block.Channel, "channel", &c.channel); err != nil {
		return c, err
	}
	if c.channel == "" || len(c.channel) > maxChannelLen || strings.ContainsRune(c.channel, 0) {
		return c, fmt.Errorf("channel: must be 1 to %d bytes without NUL, not %q", maxChannelLen, c.channel)
	}
	if err := driverconfig.Bool(block.Readonly, "readonly", &c.readonly); err != nil {
		return c, err
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
	if driverconfig.Set(raw) {
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
