package gazelle

import (
	"encoding/json"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/chihaya/chihaya/storage"
)

func TestRegistered(t *testing.T) {
	if !slices.Contains(storage.Drivers(), "gazelle") {
		t.Fatalf("gazelle not among %q", storage.Drivers())
	}
}

func TestConfigDefaults(t *testing.T) {
	c, err := parseConfig(json.RawMessage(`{"dsn": "root@tcp(127.0.0.1:3306)/gazelle"}`))
	if err != nil {
		t.Fatal(err)
	}
	if c.dialect != DialectOPS || c.readonly || c.sitePassword != "" || c.reportPassword != "" || c.siteURL != "" ||
		c.maxOpenConns != 8 || c.timeout != 10*time.Second || c.loadTimeout != 5*time.Minute ||
		c.reportFormat != formatJSON {
		t.Errorf("defaults: %+v", c)
	}
	if c.dsnAddr != "root@tcp(127.0.0.1:3306)/gazelle" {
		t.Errorf("dsnAddr %q", c.dsnAddr)
	}

	c, err = parseConfig(json.RawMessage(`{"dsn": "u:p@tcp(db:3306)/g", "dialect": "what", "readonly": true,
		"site_password": "` + testSitePassword + `", "report_password": "` + testReportPassword + `",
		"site_url": "https://example.org/gazelle", "max_open_conns": 3, "timeout": "2s", "load_timeout": "1m"}`))
	if err != nil {
		t.Fatal(err)
	}
	if c.dialect != DialectWhat || !c.readonly || c.siteURL != "https://example.org/gazelle/" || c.maxOpenConns != 3 ||
		c.timeout != 2*time.Second || c.loadTimeout != time.Minute || c.reportFormat != formatText {
		t.Errorf("parsed: %+v", c)
	}
	if strings.Contains(c.dsnAddr, ":p@") {
		t.Errorf("dsnAddr shows the password: %q", c.dsnAddr)
	}
}

func TestConfigErrors(t *testing.T) {
	for in, key := range map[string]string{
		``:                                   "dsn",
		`{}`:                                 "dsn",
		`{"dsn": 5}`:                         "dsn",
		`{"dsn": "nonsense"}`:                "dsn",
		`{"dsn": "root@tcp(h:1)/"}`:          "dsn",
		`{"dsn": "root@tcp(h:1)/g", "x": 1}`: `unknown key "x"`,
		`[1]`:                                "JSON object",
		`{"dsn": "root@tcp(h:1)/g"} {}`:      "unexpected data",
		`{"dsn": "root@tcp(h:1)/g", "dialect": "oops"}`:                                    "dialect",
		`{"dsn": "root@tcp(h:1)/g", "readonly": "yes"}`:                                    "readonly",
		`{"dsn": "root@tcp(h:1)/g", "site_password": "short"}`:                             "site_password",
		`{"dsn": "root@tcp(h:1)/g", "report_password": "` + strings.Repeat("/", 32) + `"}`: "report_password",
		`{"dsn": "root@tcp(h:1)/g", "site_url": "ftp://x/"}`:                               "site_url",
		`{"dsn": "root@tcp(h:1)/g", "site_url": "http://x/?a=b"}`:                          "site_url",
		`{"dsn": "root@tcp(h:1)/g", "site_url": "http://x/"}`:                              "site_url: needs site_password",
		`{"dsn": "root@tcp(h:1)/g", "max_open_conns": 0}`:                                  "max_open_conns",
		`{"dsn": "root@tcp(h:1)/g", "timeout": 10}`:                                        "timeout",
		`{"dsn": "root@tcp(h:1)/g", "timeout": "-1s"}`:                                     "timeout",
		`{"dsn": "root@tcp(h:1)/g", "load_timeout": "soon"}`:                               "load_timeout",
		`{"dsn": "root@tcp(h:1)/g", "report_format": "xml"}`:                               "report_format",
	} {
		_, err := parseConfig(json.RawMessage(in))
		if err == nil || !strings.Contains(err.Error(), key) {
			t.Errorf("%s: error %v, want one naming %q", in, err, key)
		}
	}
}

// A failed connection names the server, never the password.
func TestOpenUnreachable(t *testing.T) {
	_, err := Driver{}.Open(json.RawMessage(`{"dsn": "tracker:hunter2@tcp(127.0.0.1:1)/gazelle?timeout=2s", "timeout": "3s"}`))
	if err == nil {
		t.Fatal("opened a database on port 1")
	}
	msg := err.Error()
	if !strings.HasPrefix(msg, "dsn: ") || !strings.Contains(msg, "tracker@tcp(127.0.0.1:1)/gazelle") || strings.Contains(msg, "hunter2") {
		t.Errorf("error %q: want the dsn key and address, without the password", msg)
	}
}
