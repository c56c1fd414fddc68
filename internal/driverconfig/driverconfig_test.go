package driverconfig

import (
	"encoding/json"
	"testing"
	"time"
)

// block stands for a driver's configuration block.
type block struct {
	Name    json.RawMessage `json:"name"`
	Timeout json.RawMessage `json:"timeout"`
}

// errText is err's message, "" for nil.
func errText(err error) string {
	if err == nil {
		return ""
	}
	return err.Error()
}

func TestSet(t *testing.T) {
	for in, want := range map[string]bool{
		``:        false,
		`null`:    false,
		" null\n": false,
		"  ":      false,
		`0`:       true,
		`""`:      true,
		`false`:   true,
		`{}`:      true,
		` {} `:    true,
		`[]`:      true,
	} {
		if got := Set(json.RawMessage(in)); got != want {
			t.Errorf("Set(%q) = %v, want %v", in, got, want)
		}
	}
}

func TestDecode(t *testing.T) {
	tests := []struct {
		in, err string
		want    block
	}{
		{in: ``},
		{in: `null`},
		{in: " \n "},
		{in: `{}`},
		{in: ` {"name": "x", "timeout": null} `, want: block{Name: json.RawMessage(`"x"`), Timeout: json.RawMessage(`null`)}},
		{in: `{"name": 5}`, want: block{Name: json.RawMessage(`5`)}},
		{in: `{"foo": 1}`, err: `unknown key "foo"`},
		{in: `{"name": 1, "a\"b": 1}`, err: `unknown key "a\"b"`},
		{in: `{"a\\b": 1}`, err: `unknown key "a\\b"`},
		{in: `{"\u0001": 1}`, err: `unknown key "\x01"`},
		{in: `[]`, err: "the configuration must be a JSON object, not array"},
		{in: `"name"`, err: "the configuration must be a JSON object, not string"},
		{in: `{"name": 1} {}`, err: "unexpected data after the configuration object"},
		{in: `{"name": 1} x`, err: "unexpected data after the configuration object"},
		{in: `{"name": }`, err: "invalid JSON at byte 10: invalid character '}' looking for beginning of value"},
		// The offset counts from the block, white space around it aside.
		{in: "\n\t {\"name\": }", err: "invalid JSON at byte 10: invalid character '}' looking for beginning of value"},
	}
	for _, tc := range tests {
		var got block
		err := Decode(json.RawMessage(tc.in), &got)
		if errText(err) != tc.err {
			t.Errorf("Decode(%q): error %q, want %q", tc.in, errText(err), tc.err)
			continue
		}
		if tc.err == "" && (string(got.Name) != string(tc.want.Name) || string(got.Timeout) != string(tc.want.Timeout)) {
			t.Errorf("Decode(%q) = {%s %s}, want {%s %s}", tc.in, got.Name, got.Timeout, tc.want.Name, tc.want.Timeout)
		}
	}
}

func TestDecodeObject(t *testing.T) {
	for in, want := range map[string]string{
		``:                      "",
		`null`:                  "",
		`{"name": "x"}`:         "",
		`{"cert": "x"}`:         `unknown key "tls.cert"`,
		`{"a\"b": 1}`:           `unknown key "tls.a\"b"`,
		`true`:                  "tls must be a JSON object, not bool",
		`{"name": "x"} {}`:      "tls: unexpected data after the object",
		`{"name": "x", "name"}`: "invalid JSON at byte 21: invalid character '}' after object key",
	} {
		var b block
		if err := DecodeObject(json.RawMessage(in), "tls", &b); errText(err) != want {
			t.Errorf("DecodeObject(%q): error %q, want %q", in, errText(err), want)
		}
	}
}

func TestString(t *testing.T) {
	for _, tc := range []struct{ in, want, err string }{
		{in: ``, want: "default"},
		{in: `null`, want: "default"},
		{in: `""`, want: ""},
		{in: `"x"`, want: "x"},
		{in: `5`, want: "default", err: "name: must be a string"},
		{in: `["x"]`, want: "default", err: "name: must be a string"},
	} {
		s := "default"
		err := String(json.RawMessage(tc.in), "name", &s)
		if errText(err) != tc.err || s != tc.want {
			t.Errorf("String(%q) = %q, %q; want %q, %q", tc.in, s, errText(err), tc.want, tc.err)
		}
	}
}

func TestRequired(t *testing.T) {
	for _, tc := range []struct{ in, want, err string }{
		{in: `"h:1/db"`, want: "h:1/db"},
		{in: ``, err: `dsn: required (for example "u@h:1/db")`},
		{in: `null`, err: `dsn: required (for example "u@h:1/db")`},
		{in: `""`, err: `dsn: required (for example "u@h:1/db")`},
		{in: `5`, err: "dsn: must be a string"},
	} {
		got, err := Required(json.RawMessage(tc.in), "dsn", "u@h:1/db")
		if errText(err) != tc.err || got != tc.want {
			t.Errorf("Required(%q) = %q, %q; want %q, %q", tc.in, got, errText(err), tc.want, tc.err)
		}
	}
}

func TestBool(t *testing.T) {
	for _, tc := range []struct {
		in   string
		want bool
		err  string
	}{
		{in: ``, want: true},
		{in: `null`, want: true},
		{in: `false`, want: false},
		{in: `true`, want: true},
		{in: `"yes"`, want: true, err: "tls.enabled: must be true or false"},
		{in: `1`, want: true, err: "tls.enabled: must be true or false"},
	} {
		b := true
		err := Bool(json.RawMessage(tc.in), "tls.enabled", &b)
		if errText(err) != tc.err || b != tc.want {
			t.Errorf("Bool(%q) = %v, %q; want %v, %q", tc.in, b, errText(err), tc.want, tc.err)
		}
	}
}

func TestDuration(t *testing.T) {
	for _, tc := range []struct {
		in   string
		want time.Duration
		err  string
	}{
		{in: ``, want: time.Minute},
		{in: `null`, want: time.Minute},
		{in: `"30s"`, want: 30 * time.Second},
		{in: `"1h2m"`, want: time.Hour + 2*time.Minute},
		{in: `60`, want: time.Minute, err: `timeout: must be a duration string such as "10s"`},
		{in: `"x"`, want: time.Minute, err: `timeout: time: invalid duration "x"`},
		{in: `"0s"`, want: time.Minute, err: "timeout: must be positive"},
		{in: `"-1m"`, want: time.Minute, err: "timeout: must be positive"},
	} {
		d := time.Minute
		err := Duration(json.RawMessage(tc.in), "timeout", "10s", &d)
		if errText(err) != tc.err || d != tc.want {
			t.Errorf("Duration(%q) = %v, %q; want %v, %q", tc.in, d, errText(err), tc.want, tc.err)
		}
	}
}
