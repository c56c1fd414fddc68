//go:build linux

package e2e

import (
	"bytes"
	"crypto/rand"
	"crypto/sha1"
	"crypto/sha256"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"testing"
)

// The e2e package deliberately carries its own tiny bencode codec instead of
// importing the tracker's: a bug in the tracker's codec must not be able to
// hide itself by also being used to build and check the test's inputs.

// bencode encodes v, which may be an int, int64, string, []byte, []any or
// map[string]any (nested arbitrarily). Dictionary keys are written in sorted
// order, as BEP 3 requires and as the info hash depends on.
func bencode(v any) []byte {
	var b bytes.Buffer
	bencodeTo(&b, v)
	return b.Bytes()
}

func bencodeTo(b *bytes.Buffer, v any) {
	switch v := v.(type) {
	case int:
		fmt.Fprintf(b, "i%de", v)
	case int64:
		fmt.Fprintf(b, "i%de", v)
	case string:
		fmt.Fprintf(b, "%d:%s", len(v), v)
	case []byte:
		fmt.Fprintf(b, "%d:", len(v))
		b.Write(v)
	case []any:
		b.WriteByte('l')
		for _, e := range v {
			bencodeTo(b, e)
		}
		b.WriteByte('e')
	case map[string]any:
		keys := make([]string, 0, len(v))
		for k := range v {
			keys = append(keys, k)
		}
		slices.Sort(keys)
		b.WriteByte('d')
		for _, k := range keys {
			bencodeTo(b, k)
			bencodeTo(b, v[k])
		}
		b.WriteByte('e')
	default:
		panic(fmt.Sprintf("bencode: unsupported type %T", v))
	}
}

// bdecode decodes one complete bencoded value into int64, string, []any or
// map[string]any. It is only meant for the tracker's small responses.
func bdecode(data []byte) (any, error) {
	v, rest, err := bdecodeValue(data)
	if err != nil {
		return nil, err
	}
	if len(rest) != 0 {
		return nil, fmt.Errorf("bencode: %d trailing bytes", len(rest))
	}
	return v, nil
}

func bdecodeValue(b []byte) (any, []byte, error) {
	if len(b) == 0 {
		return nil, nil, errors.New("bencode: unexpected end of input")
	}
	switch c := b[0]; {
	case c == 'i':
		end := bytes.IndexByte(b, 'e')
		if end < 0 {
			return nil, nil, errors.New("bencode: unterminated integer")
		}
		n, err := strconv.ParseInt(string(b[1:end]), 10, 64)
		if err != nil {
			return nil, nil, fmt.Errorf("bencode: bad integer: %w", err)
		}
		return n, b[end+1:], nil
	case c >= '0' && c <= '9':
		colon := bytes.IndexByte(b, ':')
		if colon < 0 {
			return nil, nil, errors.New("bencode: unterminated string length")
		}
		n, err := strconv.Atoi(string(b[:colon]))
		if err != nil || n < 0 || n > len(b)-colon-1 {
			return nil, nil, fmt.Errorf("bencode: bad string length %q", b[:colon])
		}
		return string(b[colon+1 : colon+1+n]), b[colon+1+n:], nil
	case c == 'l':
		list := []any{}
		b = b[1:]
		for len(b) > 0 && b[0] != 'e' {
			v, rest, err := bdecodeValue(b)
			if err != nil {
				return nil, nil, err
			}
			list, b = append(list, v), rest
		}
		if len(b) == 0 {
			return nil, nil, errors.New("bencode: unterminated list")
		}
		return list, b[1:], nil
	case c == 'd':
		dict := map[string]any{}
		b = b[1:]
		for len(b) > 0 && b[0] != 'e' {
			k, rest, err := bdecodeValue(b)
			if err != nil {
				return nil, nil, err
			}
			key, ok := k.(string)
			if !ok {
				return nil, nil, errors.New("bencode: dictionary key is not a string")
			}
			v, rest, err := bdecodeValue(rest)
			if err != nil {
				return nil, nil, err
			}
			dict[key], b = v, rest
		}
		if len(b) == 0 {
			return nil, nil, errors.New("bencode: unterminated dictionary")
		}
		return dict, b[1:], nil
	default:
		return nil, nil, fmt.Errorf("bencode: unexpected byte %q", c)
	}
}

// pieceLength is the torrent's piece size. 256 KiB is a common real-world
// value and gives a dozen pieces for the payload, so the transfer exercises
// many requests rather than a single block.
const pieceLength = 256 << 10

// payloadSize is a few MiB plus an odd tail, so that the last piece is short
// and the clients' handling of it is exercised too.
const payloadSize = 3<<20 + 12345

// testTorrent describes a generated payload and its .torrent file.
type testTorrent struct {
	path     string   // the .torrent file
	name     string   // file name inside the save directory
	size     int64    // payload length in bytes
	infoHash [20]byte // SHA-1 of the bencoded info dictionary
	sha256   [32]byte // SHA-256 of the payload, checked after the transfer
	info     []byte   // the bencoded info dictionary
}

// makeTorrent writes a random payload called name into seedDir and a private
// single-file torrent announcing to announceURL into torrentDir.
func makeTorrent(t *testing.T, seedDir, torrentDir, name, announceURL string) *testTorrent {
	t.Helper()
	payload := make([]byte, payloadSize)
	// Random data: a transfer that delivers the wrong bytes cannot pass by
	// accident, and every run uses a fresh info hash.
	rand.Read(payload)
	if err := os.WriteFile(filepath.Join(seedDir, name), payload, 0o644); err != nil {
		t.Fatal(err)
	}

	var pieces []byte
	for off := 0; off < len(payload); off += pieceLength {
		h := sha1.Sum(payload[off:min(off+pieceLength, len(payload))])
		pieces = append(pieces, h[:]...)
	}
	info := bencode(map[string]any{
		"length":       len(payload),
		"name":         name,
		"piece length": pieceLength,
		"pieces":       pieces,
		// BEP 27: clients must not use DHT, PEX or LPD for this torrent,
		// so the tracker is the only source of peers.
		"private": 1,
	})
	tt := &testTorrent{
		name:     name,
		size:     int64(len(payload)),
		infoHash: sha1.Sum(info),
		sha256:   sha256.Sum256(payload),
		info:     info,
	}
	return tt.withAnnounce(t, torrentDir, announceURL)
}

// withAnnounce returns the same torrent (same info hash, same swarm) with
// its .torrent file written into dir announcing to announceURL, so that two
// clients of one swarm can use different tracker URLs.
func (tt *testTorrent) withAnnounce(t *testing.T, dir, announceURL string) *testTorrent {
	t.Helper()
	// The info dictionary is spliced in already encoded so that the info
	// hash is computed over exactly the bytes the clients will hash.
	var meta bytes.Buffer
	meta.WriteString("d")
	meta.Write(bencode("announce"))
	meta.Write(bencode(announceURL))
	meta.Write(bencode("created by"))
	meta.Write(bencode("chihaya e2e test"))
	meta.Write(bencode("info"))
	meta.Write(tt.info)
	meta.WriteString("e")

	c := *tt
	c.path = filepath.Join(dir, tt.name+".torrent")
	if err := os.WriteFile(c.path, meta.Bytes(), 0o644); err != nil {
		t.Fatal(err)
	}
	return &c
}

// TestBencodeRoundTrip guards the harness's own codec, on which the info
// hash of every generated torrent depends.
func TestBencodeRoundTrip(t *testing.T) {
	in := map[string]any{
		"b":            "x",
		"a":            []any{int64(-3), "", map[string]any{}},
		"piece length": int64(pieceLength),
		"pieces":       "\x00\xff:e",
	}
	enc := bencode(in)
	const want = "d1:ali-3e0:dee1:b1:x12:piece lengthi262144e6:pieces4:\x00\xff:ee"
	if string(enc) != want {
		t.Fatalf("bencode = %q, want %q", enc, want)
	}
	out, err := bdecode(enc)
	if err != nil {
		t.Fatal(err)
	}
	if again := bencode(out); !bytes.Equal(again, enc) {
		t.Fatalf("decode/encode = %q, want %q", again, enc)
	}
	for _, bad := range []string{"", "i1", "3:ab", "l", "d1:a", "di1ei2ee", "x", "1:a1:b"} {
		if _, err := bdecode([]byte(bad)); err == nil {
			t.Errorf("bdecode(%q) succeeded, want an error", bad)
		}
	}
}
