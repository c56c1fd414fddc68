// Package driverconfig holds what the cache and storage drivers share to
// read their own JSON configuration block strictly.
//
// A driver decodes its block with Decode into a struct of json.RawMessage
// fields, one a key, and then each key on its own with String, Required,
// Bool, Duration or its own code, so that a value of the wrong type gets a
// message naming the key, as an out-of-range one does. A key that is
// absent or null (see Set) keeps the driver's default. Which keys are
// required, ranges and the rest of the checks stay with the driver.
package driverconfig

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"strconv"
	"strings"
	"time"
)

// Set reports whether raw holds a value other than null: an absent key,
// a null, and a block that is empty or only white space keep the default.
func Set(raw json.RawMessage) bool {
	raw = bytes.TrimSpace(raw)
	return len(raw) > 0 && string(raw) != "null"
}

// Decode decodes a driver's whole configuration block, a JSON object, into
// the struct into. A block that is not Set (empty or null) holds no keys:
// into is left as it is. Decode refuses keys into has no field for
// (`unknown key "x"`), anything but an object, and data after the object;
// a syntax error is reported with its byte offset in raw, white space
// around it aside.
func Decode(raw json.RawMessage, into any) error {
	return decode(raw, "", into)
}

// DecodeObject is Decode for the object under key inside the block, such
// as a "tls" section: its messages name the object by key and its keys as
// key.name (`unknown key "tls.x"`).
func DecodeObject(raw json.RawMessage, key string, into any) error {
	return decode(raw, key, into)
}

func decode(raw json.RawMessage, key string, into any) error {
	if !Set(raw) {
		return nil
	}
	dec := json.NewDecoder(bytes.NewReader(bytes.TrimSpace(raw)))
	dec.DisallowUnknownFields()
	if err := dec.Decode(into); err != nil {
		return describe(err, key)
	}
	if _, err := dec.Token(); err != io.EOF {
		if key != "" {
			return fmt.Errorf("%s: unexpected data after the object", key)
		}
		return errors.New("unexpected data after the configuration object")
	}
	return nil
}

// unknownField starts encoding/json's message for a key the struct has no
// field for; the package has no typed error for that case.
const unknownField = "json: unknown field "

// describe turns encoding/json's errors into messages an operator can act
// on; key names the object decoded, "" for the whole block.
func describe(err error, key string) error {
	var typeErr *json.UnmarshalTypeError
	var syntaxErr *json.SyntaxError
	what := "the configuration"
	if key != "" {
		what = key
	}
	switch {
	case errors.As(err, &typeErr):
		return fmt.Errorf("%s must be a JSON object, not %s", what, typeErr.Value)
	case errors.As(err, &syntaxErr):
		return fmt.Errorf("invalid JSON at byte %d: %v", syntaxErr.Offset, err)
	case strings.HasPrefix(err.Error(), unknownField):
		// The name comes quoted; unquote it so that the key path is
		// quoted once, as a whole.
		name := strings.TrimPrefix(err.Error(), unknownField)
		if s, err := strconv.Unquote(name); err == nil {
			name = s
		}
		if key != "" {
			name = key + "." + name
		}
		return fmt.Errorf("unknown key %q", name)
	}
	return err
}

// String decodes the string under key into *into if raw is Set, and
// otherwise leaves *into as it is. Anything but a string is an error
// naming key.
func String(raw json.RawMessage, key string, into *string) error {
	if !Set(raw) {
		return nil
	}
	if err := json.Unmarshal(raw, into); err != nil {
		return fmt.Errorf("%s: must be a string", key)
	}
	return nil
}

// Required decodes the string under key, which has no default: a key that
// is absent, null or "" is an error naming key and showing example.
func Required(raw json.RawMessage, key, example string) (string, error) {
	var s string
	if err := String(raw, key, &s); err != nil {
		return "", err
	}
	if s == "" {
		return "", fmt.Errorf("%s: required (for example %q)", key, example)
	}
	return s, nil
}

// Bool decodes the boolean under key into *into if raw is Set, and
// otherwise leaves *into as it is. Anything but true or false is an error
// naming key.
func Bool(raw json.RawMessage, key string, into *bool) error {
	if !Set(raw) {
		return nil
	}
	if err := json.Unmarshal(raw, into); err != nil {
		return fmt.Errorf("%s: must be true or false", key)
	}
	return nil
}

// Duration decodes the duration under key, a string time.ParseDuration
// accepts such as "10s", into *into if raw is Set, and otherwise leaves
// *into as it is. A value that is not a string (the message offers
// example, such as "10s"), does not parse or is not positive is an error
// naming key.
func Duration(raw json.RawMessage, key, example string, into *time.Duration) error {
	if !Set(raw) {
		return nil
	}
	var s string
	if err := json.Unmarshal(raw, &s); err != nil {
		return fmt.Errorf("%s: must be a duration string such as %q", key, example)
	}
	d, err := time.ParseDuration(s)
	if err != nil {
		return fmt.Errorf("%s: %w", key, err)
	}
	if d <= 0 {
		return fmt.Errorf("%s: must be positive", key)
	}
	*into = d
	return nil
}
