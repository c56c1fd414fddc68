package postgres

import (
	"encoding/json"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/chihaya/chihaya/storage"
)

func TestRegistered(t *testing.T) {
	if !slices.Contains(storage.Drivers(), "postgres") {
		t.Fatalf("postgres not among %q", storage.Drivers())
	}
}

func TestConfigDefaults(t *testing.T) {
	c, err := parseConfig(json.RawMessage(`{"dsn": "postgres://tracker:secret@db.example:5433/site"}`))
	if err != nil {
		t.Fatal(err)
	}
	if c.maxConns != 8 || c.timeout != 10*time.Second || c.channel != "chihaya" || c.readonly {
		t.Errorf("defaults: %+v", c)
	}
	if c.dsnAddr != "tracker@db.example:5433/site" {
		t.Errorf("dsnAddr %q", c.dsnAddr)
	}
	for _, d := range defList {
		st := c.queries[d.key]
		if st == nil || st.custom || st.disabled || st.bulk != (d.sql == "") {
			t.Errorf("default %s: %+v", d.key, st)
		}
	}

	c, err = parseConfig(json.RawMessage(`{"dsn": "host=db user=t dbname=s", "max_conns": 3, "timeout": "2s",
		"channel": "tracker_changes", "readonly": true, "queries": {"write_users": "UPDATE x SET up = up + @uploaded WHERE id = @user_id", "start": ""}}`))
	if err != nil {
		t.Fatal(err)
	}
	if c.maxConns != 3 || c.timeout != 2*time.Second || c.channel != "tracker_changes" || !c.readonly {
		t.Errorf("parsed: %+v", c)
	}
	if st := c.queries[keyWriteUsers]; !st.custom || st.sql != "UPDATE x SET up = up + $1 WHERE id = $2" || !slices.Equal(st.params, []int{1, 0}) {
		t.Errorf("write_users compiled to %q %v", st.sql, st.params)
	}
	if !c.queries[keyStart].disabled {
		t.Error(`"start": "" does not turn the start statement off`)
	}
}

func TestConfigErrors(t *testing.T) {
	const dsn = `"dsn": "postgres://u@h/db"`
	for in, want := range map[string]string{
		``:                                 "dsn: required",
		`{}`:                               "dsn: required",
		`{"dsn": 5}`:                       "dsn: must be a string",
		`{"dsn": "postgres://u:pw@h:x/d"}`: "dsn:",
		`{` + dsn + `, "x": 1}`:            `unknown key "x"`,
		`[1]`:                              "JSON object",
		`{` + dsn + `} {}`:                 "unexpected data",
		`{` + dsn + `, "max_conns": 0}`:    "max_conns",
		`{` + dsn + `, "max_conns": "8"}`:  "max_conns",
		`{` + dsn + `, "timeout": "soon"}`: "timeout",
		`{` + dsn + `, "timeout": "-1s"}`:  "timeout: must be positive",
		`{` + dsn + `, "channel": ""}`:     "channel",
		`{` + dsn + `, "channel": "` + strings.Repeat("c", 64) + `"}`:                             "channel",
		`{` + dsn + `, "readonly": "yes"}`:                                                        "readonly",
		`{` + dsn + `, "queries": []}`:                                                            "queries: must be an object",
		`{` + dsn + `, "queries": {"load_everything": "SELECT 1"}}`:                               `queries: unknown key "load_everything"`,
		`{` + dsn + `, "queries": {"write_users": 1}}`:                                            "queries.write_users: must be a string",
		`{` + dsn + `, "queries": {"write_users": "UPDATE u SET x = @up WHERE id = @user_id"}}`:   "queries.write_users: unknown parameter @up",
		`{` + dsn + `, "queries": {"write_users": "UPDATE u SET x = @uploaded"}}`:                 "queries.write_users: must use @user_id",
		`{` + dsn + `, "queries": {"load_tokens": "SELECT 1 AS user_id, 2 AS torrent_id"}}`:       "queries.load_token: must be given too when queries.load_tokens is",
		`{` + dsn + `, "queries": {"load_user": "SELECT 1 AS id, 'x' AS passkey WHERE @id > 0"}}`: "queries.load_users: must be given too when queries.load_user is",
		`{` + dsn + `, "queries": {"load_users": "SELECT 1 AS id, 'x' AS passkey"}}`:              "missing: start, load_torrents",
		`{` + dsn + `, "queries": {"load_users": ""}}`:                                            "",
	} {
		_, err := parseConfig(json.RawMessage(in))
		if err == nil {
			t.Errorf("%s: no error", in)
			continue
		}
		if !strings.Contains(err.Error(), want) {
			t.Errorf("%s: %v, want it to mention %q", in, err, want)
		}
	}
	// The password never shows.
	_, err := parseConfig(json.RawMessage(`{"dsn": "postgres://u:hunter2@h:notaport/d"}`))
	if err == nil || strings.Contains(err.Error(), "hunter2") {
		t.Errorf("bad DSN: %v", err)
	}
}

func TestCompile(t *testing.T) {
	d := defs[keyWritePeers]
	st, err := compile(d, `INSERT INTO p VALUES (@torrent_id, @user_id, @peer_id, '@not_a_param', @user_id) -- @neither`, true)
	if err != nil {
		t.Fatal(err)
	}
	if st.sql != `INSERT INTO p VALUES ($1, $2, $3, '@not_a_param', $2) -- @neither` {
		t.Errorf("sql %q", st.sql)
	}
	if !slices.Equal(st.params, []int{0, 1, 2}) {
		t.Errorf("params %v", st.params)
	}
	// PostgreSQL's own @ operators are not parameters.
	if _, err := compile(defs[keyLoadUser], `SELECT id, passkey FROM u WHERE tags @> ARRAY['a'] AND id = @id AND @ -1 = 1`, true); err != nil {
		t.Errorf("@ operators: %v", err)
	}
	for _, key := range []string{keyLoadUsers, keyWriteUsers} {
		if _, err := compile(defs[key], "  ", true); err == nil {
			if key == keyLoadUsers {
				t.Errorf("%s may not be turned off", key)
			}
		} else if key == keyWriteUsers {
			t.Errorf("%s: %v", key, err)
		}
	}
}

func TestCleanUserAgent(t *testing.T) {
	for in, want := range map[string]string{
		"":                             "",
		"Transmission/4.0":             "Transmission/4.0",
		"qBittorrent/4.6 \xe2\x9c\x93": "qBittorrent/4.6 \u2713",
		"bad \xff byte":                "bad \uFFFD byte",
		"nul\x00byte":                  "nulbyte",
		strings.Repeat("a", 300):       strings.Repeat("a", 255),
		strings.Repeat("a", 254) + "é": strings.Repeat("a", 254),
	} {
		if got := cleanUserAgent(in); got != want {
			t.Errorf("cleanUserAgent(%q) = %q, want %q", in, got, want)
		}
	}
}
