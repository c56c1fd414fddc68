package gazelle

import (
	"math"
	"strings"

	"github.com/chihaya/chihaya/bittorrent"
)

// parseQuery splits a raw query string the way Ocelot does, not the way
// url.ParseQuery does: Gazelle concatenates parameter values into the URL
// without escaping them, so a value is taken verbatim ('+' and '%' stay as
// they are) and only the info hash parameters are percent-decoded, by
// their users. Pairs are split on '&' and at the first '='; a repeated key
// keeps its last value.
func parseQuery(raw string) map[string]string {
	q := make(map[string]string, 4)
	for raw != "" {
		var pair string
		pair, raw, _ = strings.Cut(raw, "&")
		if pair == "" {
			continue
		}
		k, v, _ := strings.Cut(pair, "=")
		q[k] = v
	}
	return q
}

// percentDecode decodes %XX escapes and nothing else: '+' is a plus, as in
// PHP's rawurlencode that Gazelle uses for info hashes. A '%' not followed
// by two hex digits is kept as it is.
func percentDecode(s string) []byte {
	out := make([]byte, 0, len(s))
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c == '%' && i+2 < len(s) && isHex(s[i+1]) && isHex(s[i+2]) {
			out = append(out, unhex(s[i+1])<<4|unhex(s[i+2]))
			i += 2
			continue
		}
		out = append(out, c)
	}
	return out
}

// parseInfoHash decodes one info hash parameter; false unless it is 20
// bytes.
func parseInfoHash(s string) (bittorrent.InfoHash, bool) {
	var h bittorrent.InfoHash
	b := percentDecode(s)
	if len(b) != len(h) {
		return h, false
	}
	copy(h[:], b)
	return h, true
}

// parseInfoHashes decodes update_torrents' info_hashes, the concatenation of
// encoded hashes, cut into 20-byte pieces; an incomplete last piece is
// dropped.
func parseInfoHashes(s string) []bittorrent.InfoHash {
	b := percentDecode(s)
	hashes := make([]bittorrent.InfoHash, 0, len(b)/20)
	for len(b) >= 20 {
		var h bittorrent.InfoHash
		copy(h[:], b[:20])
		hashes = append(hashes, h)
		b = b[20:]
	}
	return hashes
}

// leadingInt reads an optional sign and the digits that follow, ignoring
// anything after them, as Ocelot's atoi-style parsing does ("12abc" is 12).
// ok is false when there are no digits; overflow saturates.
func leadingInt(s string) (n int64, ok bool) {
	neg := false
	if s != "" && (s[0] == '-' || s[0] == '+') {
		neg = s[0] == '-'
		s = s[1:]
	}
	for i := 0; i < len(s) && s[i] >= '0' && s[i] <= '9'; i++ {
		ok = true
		d := int64(s[i] - '0')
		if n > (math.MaxInt64-d)/10 {
			n = math.MaxInt64
			continue
		}
		n = n*10 + d
	}
	if neg {
		n = -n
	}
	return n, ok
}

// parseID reads a user or torrent id: 1 to 2³²−1.
func parseID(s string) (uint32, bool) {
	n, ok := leadingInt(s)
	if !ok || n < 1 || n > math.MaxUint32 {
		return 0, false
	}
	return uint32(n), true
}

func isHex(c byte) bool {
	return '0' <= c && c <= '9' || 'a' <= c && c <= 'f' || 'A' <= c && c <= 'F'
}

func unhex(c byte) byte {
	switch {
	case c >= 'a':
		return c - 'a' + 10
	case c >= 'A':
		return c - 'A' + 10
	}
	return c - '0'
}

// unreserved reports whether c is one of RFC 3986's unreserved characters,
// those PHP's rawurlencode leaves alone.
func unreserved(c byte) bool {
	return 'a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' || c == '-' || c == '_' || c == '.' || c == '~'
}
