package http

import (
	"net/netip"
	"strconv"

	"github.com/chihaya/chihaya/bittorrent"
)

// The query parser works on the raw query string and decodes values in place
// into fixed-size arrays, because info_hash and peer_id are binary: '+' in
// them is a plus sign, not a space, and any byte may be percent-encoded. It
// allocates only to build an error.

// queryParams walks the key=value pairs of a raw query string.
type queryParams struct {
	rest string
}

// next returns the next pair; key and value are still percent-encoded.
func (q *queryParams) next() (key, value string, ok bool) {
	for q.rest != "" {
		var pair string
		if i := indexByte(q.rest, '&'); i >= 0 {
			pair, q.rest = q.rest[:i], q.rest[i+1:]
		} else {
			pair, q.rest = q.rest, ""
		}
		if pair == "" {
			continue
		}
		if i := indexByte(pair, '='); i >= 0 {
			return pair[:i], pair[i+1:], true
		}
		return pair, "", true
	}
	return "", "", false
}

func indexByte(s string, c byte) int {
	for i := 0; i < len(s); i++ {
		if s[i] == c {
			return i
		}
	}
	return -1
}

func unhex(c byte) (byte, bool) {
	switch {
	case '0' <= c && c <= '9':
		return c - '0', true
	case 'a' <= c && c <= 'f':
		return c - 'a' + 10, true
	case 'A' <= c && c <= 'F':
		return c - 'A' + 10, true
	}
	return 0, false
}

// decode20 percent-decodes s into dst and reports how many bytes s decodes
// to (counting past 20, so the error can say how long it was), or -1 when s
// is not valid percent-encoding.
func decode20(dst *[20]byte, s string) int {
	n := 0
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c == '%' {
			if i+2 >= len(s) {
				return -1
			}
			hi, ok1 := unhex(s[i+1])
			lo, ok2 := unhex(s[i+2])
			if !ok1 || !ok2 {
				return -1
			}
			c = hi<<4 | lo
			i += 2
		}
		if n < len(dst) {
			dst[n] = c
		}
		n++
	}
	return n
}

// unescape percent-decodes a value that is text (addresses); it allocates
// only when the value holds an escape.
func unescape(s string) (string, bool) {
	if indexByte(s, '%') < 0 && indexByte(s, '+') < 0 {
		return s, true
	}
	b := make([]byte, 0, len(s))
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch c {
		case '%':
			if i+2 >= len(s) {
				return "", false
			}
			hi, ok1 := unhex(s[i+1])
			lo, ok2 := unhex(s[i+2])
			if !ok1 || !ok2 {
				return "", false
			}
			c = hi<<4 | lo
			i += 2
		case '+':
			c = ' '
		}
		b = append(b, c)
	}
	return string(b), true
}

func parse20(dst *[20]byte, name, value string) error {
	switch n := decode20(dst, value); {
	case n < 0:
		return bittorrent.ClientError("invalid " + name + ": malformed percent-encoding")
	case n != 20:
		return bittorrent.ClientError("invalid " + name + ": need 20 bytes, got " + strconv.Itoa(n))
	}
	return nil
}

func parseUint(name, value string, bits int) (uint64, error) {
	v, err := strconv.ParseUint(value, 10, bits)
	if err != nil {
		if len(value) > 0 && value[0] == '-' {
			return 0, bittorrent.ClientError("invalid " + name + ": must not be negative")
		}
		if ne, ok := err.(*strconv.NumError); ok && ne.Err == strconv.ErrRange {
			return 0, bittorrent.ClientError("invalid " + name + ": too large")
		}
		return 0, bittorrent.ClientError("invalid " + name + ": not a whole number")
	}
	return v, nil
}

// announceParams says which client-supplied addresses the frontend trusts.
type announceParams struct {
	allowIPParam bool
}

// parseAnnounce fills req from a raw announce query. req must be zeroed
// beforehand; the client's own address is set by the caller.
func (p announceParams) parseAnnounce(query string, req *bittorrent.AnnounceRequest) error {
	var haveHash, havePeer, havePort, haveLeft, haveCompact bool
	req.NumWant = -1
	q := queryParams{rest: query}
	for {
		key, value, ok := q.next()
		if !ok {
			break
		}
		var err error
		switch key {
		case "info_hash":
			err, haveHash = parse20((*[20]byte)(&req.InfoHash), "info_hash", value), true
		case "peer_id":
			err, havePeer = parse20((*[20]byte)(&req.PeerID), "peer_id", value), true
		case "port":
			var v uint64
			v, err = parseUint("port", value, 16)
			req.Port, havePort = uint16(v), true
		case "uploaded":
			req.Uploaded, err = parseUint("uploaded", value, 64)
		case "downloaded":
			req.Downloaded, err = parseUint("downloaded", value, 64)
		case "left":
			req.Left, err = parseUint("left", value, 64)
			haveLeft = true
		case "corrupt":
			req.Corrupt, err = parseUint("corrupt", value, 64)
		case "event":
			var ok bool
			if req.Event, ok = bittorrent.ParseEvent(value); !ok {
				err = bittorrent.ClientError("invalid event: want started, stopped, completed, paused or none")
			}
		case "numwant":
			// Clients send -1 and other negative values to mean
			// "the tracker's default"; values past the cap are
			// capped by the tracker, so only the form is checked.
			v, perr := strconv.ParseInt(value, 10, 32)
			switch {
			case perr != nil && perr.(*strconv.NumError).Err == strconv.ErrRange && value[0] != '-':
				req.NumWant = 1<<31 - 1
			case perr != nil:
				err = bittorrent.ClientError("invalid numwant: not a whole number")
			case v >= 0:
				req.NumWant = int32(v)
			}
		case "compact":
			req.Compact, haveCompact = value != "0", true
		case "no_peer_id":
			req.NoPeerID = value != "0"
		case "key":
			req.Key = fnv32(value)
		case "ip", "ipv4", "ipv6":
			if p.allowIPParam {
				err = setAddr(req, key, value)
			}
		}
		if err != nil {
			return err
		}
	}
	switch {
	case !haveHash:
		return bittorrent.ClientError("missing info_hash")
	case !havePeer:
		return bittorrent.ClientError("missing peer_id")
	case !havePort:
		return bittorrent.ClientError("missing port")
	case !haveLeft:
		return bittorrent.ClientError("missing left")
	}
	// BEP 23: compact is the default; only an explicit compact=0 asks
	// for the dictionary model.
	if !haveCompact {
		req.Compact = true
	}
	return nil
}

// setAddr applies an ip, ipv4 or ipv6 parameter. BEP 7 allows an address
// alone or with a port ("1.2.3.4:6881", "[::1]:6881"); the port is ignored,
// since a peer has one port for both families here.
func setAddr(req *bittorrent.AnnounceRequest, key, value string) error {
	text, ok := unescape(value)
	if !ok {
		return bittorrent.ClientError("invalid " + key + ": malformed percent-encoding")
	}
	addr, err := netip.ParseAddr(text)
	if err != nil {
		ap, err2 := netip.ParseAddrPort(text)
		if err2 != nil {
			return bittorrent.ClientError("invalid " + key + ": not an IP address")
		}
		addr = ap.Addr()
	}
	addr = addr.Unmap().WithZone("")
	switch {
	case addr.Is4() && key != "ipv6":
		req.IPv4 = addr
	case addr.Is6() && key != "ipv4":
		req.IPv6 = addr
	default:
		return bittorrent.ClientError("invalid " + key + ": wrong address family")
	}
	return nil
}

// fnv32 hashes the client's key parameter, which is opaque text of any
// length, into a fixed-size value.
func fnv32(s string) uint32 {
	h := uint32(2166136261)
	for i := 0; i < len(s); i++ {
		h ^= uint32(s[i])
		h *= 16777619
	}
	return h
}

// parseScrape appends the info hashes of a raw scrape query to dst.
func parseScrape(query string, dst []bittorrent.InfoHash) ([]bittorrent.InfoHash, error) {
	q := queryParams{rest: query}
	for {
		key, value, ok := q.next()
		if !ok {
			return dst, nil
		}
		if key != "info_hash" {
			continue
		}
		var h bittorrent.InfoHash
		if err := parse20((*[20]byte)(&h), "info_hash", value); err != nil {
			return dst, err
		}
		dst = append(dst, h)
	}
}
