package gazelle

import (
	"encoding/json"
	"errors"
	"fmt"
	"net/url"
	"strings"
	"time"

	"github.com/go-sql-driver/mysql"

	"github.com/chihaya/chihaya/internal/driverconfig"
)

// Dialects of the Gazelle schema. They differ only in where the transfer
// totals and the swarm counters live.
const (
	// DialectOPS is Orpheus (OPSnet) Gazelle with Ocelot 2.x: counters in
	// users_leech_stats and torrents_leech_stats.
	DialectOPS = "ops"
	// DialectWhat is What.CD Gazelle with Ocelot 1.0: counters are
	// columns of users_main and torrents.
	DialectWhat = "what"
)

// Report formats of the site interface's report calls.
const (
	formatJSON = "json" // Ocelot 2.x, what OPS Gazelle parses
	formatText = "text" // Ocelot 1.0, what What.CD Gazelle parses
)

// secretLen is the length of both site secrets. Gazelle's secrets are 32
// characters, and Ocelot finds the action at a fixed offset after them, so
// a site configured for Ocelot never has any other length.
const secretLen = 32

// config is the driver's own configuration block.
type config struct {
	// mysql is the parsed DSN; dsnAddr is how errors name the database
	// without its password.
	mysql   *mysql.Config
	dsnAddr string
	dialect string
	// readonly makes every write and the start-up truncation a no-op,
	// so a test tracker can run against a production database.
	readonly bool
	// sitePassword and reportPassword are the first path segment of
	// Gazelle's update and report calls; empty disables that call.
	sitePassword   string
	reportPassword string
	// siteURL is the base of the token-expiry callback, ending in "/";
	// empty means tokens are expired in the database directly.
	siteURL      string
	maxOpenConns int
	// timeout bounds each statement and each callback request;
	// loadTimeout bounds a whole Load, which streams every user.
	timeout     time.Duration
	loadTimeout time.Duration
	// reportFormat is formatJSON or formatText.
	reportFormat string
}

func defaultConfig() config {
	return config{
		dialect:      DialectOPS,
		maxOpenConns: 8,
		timeout:      10 * time.Second,
		loadTimeout:  5 * time.Minute,
	}
}

// parseConfig reads the JSON block strictly over the defaults. Errors name
// the key.
func parseConfig(raw json.RawMessage) (config, error) {
	var block struct {
		DSN            json.RawMessage `json:"dsn"`
		Dialect        json.RawMessage `json:"dialect"`
		Readonly       json.RawMessage `json:"readonly"`
		SitePassword   json.RawMessage `json:"site_password"`
		ReportPassword json.RawMessage `json:"report_password"`
		SiteURL        json.RawMessage `json:"site_url"`
		MaxOpenConns   json.RawMessage `json:"max_open_conns"`
		Timeout        json.RawMessage `json:"timeout"`
		LoadTimeout    json.RawMessage `json:"load_timeout"`
		ReportFormat   json.RawMessage `json:"report_format"`
	}
	c := defaultConfig()
	if err := driverconfig.Decode(raw, &block); err != nil {
		return c, err
	}

	dsn, err := driverconfig.Required(block.DSN, "dsn", "root@tcp(127.0.0.1:3306)/gazelle")
	if err != nil {
		return c, err
	}
	mc, err := mysql.ParseDSN(dsn)
	if err != nil {
		return c, fmt.Errorf("dsn: %w", err)
	}
	if mc.DBName == "" {
		return c, errors.New("dsn: names no database (it must end in /<database>)")
	}
	c.mysql = mc
	c.dsnAddr = describeDSN(mc)

	if err := driverconfig.String(block.Dialect, "dialect", &c.dialect); err != nil {
		return c, err
	}
	if c.dialect != DialectOPS && c.dialect != DialectWhat {
		return c, fmt.Errorf("dialect: must be %q (Orpheus, Ocelot 2) or %q (What.CD, Ocelot 1), not %q", DialectOPS, DialectWhat, c.dialect)
	}
	if err := driverconfig.Bool(block.Readonly, "readonly", &c.readonly); err != nil {
		return c, err
	}
	for _, s := range []struct {
		raw  json.RawMessage
		key  string
		into *string
	}{
		{block.SitePassword, "site_password", &c.sitePassword},
		{block.ReportPassword, "report_password", &c.reportPassword},
	} {
		if err := driverconfig.String(s.raw, s.key, s.into); err != nil {
			return c, err
		}
		if err := checkSecret(*s.into); err != nil {
			return c, fmt.Errorf("%s: %w", s.key, err)
		}
	}
	if err := driverconfig.String(block.SiteURL, "site_url", &c.siteURL); err != nil {
		return c, err
	}
	if c.siteURL != "" {
		u, err := url.Parse(c.siteURL)
		if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" || u.RawQuery != "" || u.Fragment != "" {
			return c, fmt.Errorf("site_url: must be an http or https base URL such as \"http://127.0.0.1:80/\", not %q", c.siteURL)
		}
		if !strings.HasSuffix(c.siteURL, "/") {
			// The callback is "<site_url>tools.php"; the base is a
			// directory whichever way it was written.
			c.siteURL += "/"
		}
		if c.sitePassword == "" {
			return c, errors.New("site_url: needs site_password, which the site checks on the token-expiry callback")
		}
	}
	if driverconfig.Set(block.MaxOpenConns) {
		if err := json.Unmarshal(block.MaxOpenConns, &c.maxOpenConns); err != nil || c.maxOpenConns < 1 || c.maxOpenConns > 1000 {
			return c, errors.New("max_open_conns: must be an integer between 1 and 1000")
		}
	}
	if err := driverconfig.Duration(block.Timeout, "timeout", "10s", &c.timeout); err != nil {
		return c, err
	}
	if err := driverconfig.Duration(block.LoadTimeout, "load_timeout", "10s", &c.loadTimeout); err != nil {
		return c, err
	}
	c.reportFormat = formatJSON
	if c.dialect == DialectWhat {
		c.reportFormat = formatText
	}
	if err := driverconfig.String(block.ReportFormat, "report_format", &c.reportFormat); err != nil {
		return c, err
	}
	if c.reportFormat != formatJSON && c.reportFormat != formatText {
		return c, fmt.Errorf("report_format: must be %q (OPS Gazelle) or %q (What.CD Gazelle), not %q", formatJSON, formatText, c.reportFormat)
	}
	return c, nil
}

// checkSecret accepts the empty string (call disabled) or 32 characters that
// survive a URL path unescaped, as Gazelle's generated secrets do.
func checkSecret(s string) error {
	if s == "" {
		return nil
	}
	if len(s) != secretLen {
		return fmt.Errorf("must be %d characters (or empty to disable the call), not %d", secretLen, len(s))
	}
	for i := 0; i < len(s); i++ {
		if !unreserved(s[i]) {
			return errors.New("may hold only letters, digits and - _ . ~")
		}
	}
	return nil
}

// describeDSN names the database for messages: user, address and database,
// never the password.
func describeDSN(c *mysql.Config) string {
	user := c.User
	if user != "" {
		user += "@"
	}
	return fmt.Sprintf("%s%s(%s)/%s", user, c.Net, c.Addr, c.DBName)
}
