package http

import (
	"bytes"
	"unsafe"
)

// The request head parser reads a request line and its header fields where
// they lie in the connection's read buffer: the parsed head holds slices of
// that buffer, valid until the buffer is reused, and nothing is copied or
// allocated. Only the fields the tracker acts on are kept.

// headError is a request head the server refuses; status is the answer,
// and the connection is closed after it, since what follows the bad head
// cannot be framed.
type headError struct {
	status int
	reason string
}

func (e *headError) Error() string { return e.reason }

var (
	errBadRequestLine = &headError{400, "malformed request line"}
	errBadHeader      = &headError{400, "malformed header field"}
	errBadLength      = &headError{400, "malformed Content-Length"}
	errVersion        = &headError{505, "HTTP version not supported: use HTTP/1.0 or HTTP/1.1"}
)

// head is one parsed request head.
type head struct {
	method []byte
	// target is the request-target as sent, path and query its parts
	// (the query without its '?').
	target, path, query []byte
	// minor is the y of HTTP/1.y: 0 or 1 (later 1.y count as 1.1).
	minor int
	// close and keepAlive are the Connection header's tokens.
	close, keepAlive bool
	// contentLength is -1 when the request carries no Content-Length.
	contentLength int64
	// transferEncoding is set when any Transfer-Encoding was sent.
	transferEncoding bool
	// expectContinue: the client waits for "100 Continue" before it
	// sends the body.
	expectContinue bool
	userAgent      []byte
	// realIP holds every value of the configured client address
	// header, in order; it keeps its backing array from request to
	// request.
	realIP [][]byte
}

// persistent reports whether the connection may carry another request
// after this one: HTTP/1.1 unless the client asks to close, HTTP/1.0 only
// when it asks to keep alive.
func (h *head) persistent() bool {
	if h.close {
		return false
	}
	return h.minor >= 1 || h.keepAlive
}

func (h *head) isHead() bool { return string(h.method) == "HEAD" }

// Len and At let the address logic read the client address header.
func (h *head) Len() int        { return len(h.realIP) }
func (h *head) At(i int) string { return bstr(h.realIP[i]) }
func (h *head) reset()          { *h = head{contentLength: -1, realIP: h.realIP[:0]} }

// bstr views b as a string without copying. The string must not outlive
// the bytes' next reuse; it is only handed to code that reads it on the
// spot (the query parser, address parsing, map lookups).
func bstr(b []byte) string {
	if len(b) == 0 {
		return ""
	}
	return unsafe.String(&b[0], len(b))
}

// parseHead parses the request head at the start of b. It returns the
// head's length in bytes (request line, fields and the empty line), or 0
// when b does not yet hold all of it; realIPHeader names the header whose
// values are collected (empty: none; else lower case). Empty lines before the request line
// are skipped and counted, as RFC 9112 asks of a server.
func parseHead(b []byte, h *head, realIPHeader string) (int, error) {
	h.reset()
	start := 0
	for start < len(b) && (b[start] == '\r' || b[start] == '\n') {
		if b[start] == '\r' && (start+1 >= len(b) || b[start+1] != '\n') {
			if start+1 >= len(b) {
				return 0, nil
			}
			return 0, errBadRequestLine
		}
		start++
	}
	line, next, ok := cutLine(b, start)
	if !ok {
		if !plausibleRequestLine(b[start:]) {
			return 0, errBadRequestLine
		}
		return 0, nil
	}
	if err := parseRequestLine(line, h); err != nil {
		return 0, err
	}
	for {
		line, after, ok := cutLine(b, next)
		if !ok {
			return 0, nil
		}
		next = after
		if len(line) == 0 {
			return next, nil
		}
		if err := parseField(line, h, realIPHeader); err != nil {
			return 0, err
		}
	}
}

// cutLine returns the line that starts at b[i], without its CRLF or bare
// LF, and the index after its end; ok is false when the line is not
// complete yet.
func cutLine(b []byte, i int) (line []byte, next int, ok bool) {
	n := bytes.IndexByte(b[i:], '\n')
	if n < 0 {
		return nil, 0, false
	}
	line = b[i : i+n]
	if len(line) > 0 && line[len(line)-1] == '\r' {
		line = line[:len(line)-1]
	}
	return line, i + n + 1, true
}

// plausibleRequestLine tells whether an unfinished request line may still
// turn into a valid one, so that garbage (a TLS handshake on the plain
// port, say) is refused at once instead of after the read timeout.
func plausibleRequestLine(b []byte) bool {
	for i, c := range b {
		if c == ' ' {
			return i > 0
		}
		if !isTokenChar(c) {
			return false
		}
	}
	return true
}

func parseRequestLine(line []byte, h *head) error {
	sp := bytes.IndexByte(line, ' ')
	if sp <= 0 {
		return errBadRequestLine
	}
	h.method = line[:sp]
	for _, c := range h.method {
		if !isTokenChar(c) {
			return errBadRequestLine
		}
	}
	rest := line[sp+1:]
	sp = bytes.IndexByte(rest, ' ')
	if sp <= 0 {
		return errBadRequestLine
	}
	h.target, rest = rest[:sp], rest[sp+1:]
	for _, c := range h.target {
		if c <= ' ' || c == 0x7f {
			return errBadRequestLine
		}
	}
	if len(rest) != len("HTTP/1.1") || string(rest[:5]) != "HTTP/" || rest[6] != '.' ||
		!isDigit(rest[5]) || !isDigit(rest[7]) {
		return errBadRequestLine
	}
	if rest[5] != '1' {
		return errVersion
	}
	h.minor = min(int(rest[7]-'0'), 1)
	h.path = h.target
	if i := bytes.IndexByte(h.target, '?'); i >= 0 {
		h.path, h.query = h.target[:i], h.target[i+1:]
	}
	h.path = originForm(h.path)
	return nil
}

// originForm returns the path of an absolute-form request-target
// ("http://host/announce"), which a server must accept (RFC 9112), and any
// other target as it is.
func originForm(path []byte) []byte {
	if len(path) == 0 || path[0] == '/' {
		return path
	}
	i := bytes.Index(path, []byte("://"))
	if i <= 0 || !equalFold(path[:i], "http") && !equalFold(path[:i], "https") {
		return path
	}
	rest := path[i+3:]
	if j := bytes.IndexByte(rest, '/'); j >= 0 {
		return rest[j:]
	}
	return rest[len(rest):]
}

// parseField reads one "name: value" line. Obsolete line folding (a line
// that starts with white space) is refused, as RFC 9112 allows.
func parseField(line []byte, h *head, realIPHeader string) error {
	colon := bytes.IndexByte(line, ':')
	if colon <= 0 {
		return errBadHeader
	}
	name := line[:colon]
	for _, c := range name {
		if !isTokenChar(c) {
			return errBadHeader
		}
	}
	value := line[colon+1:]
	for _, c := range value {
		if c < ' ' && c != '\t' || c == 0x7f {
			return errBadHeader
		}
	}
	value = trimOWS(value)
	switch {
	case equalFold(name, "connection"):
		forEachToken(value, func(tok []byte) {
			switch {
			case equalFold(tok, "close"):
				h.close = true
			case equalFold(tok, "keep-alive"):
				h.keepAlive = true
			}
		})
	case equalFold(name, "content-length"):
		n, ok := parseLength(value)
		if !ok || h.contentLength >= 0 && h.contentLength != n {
			return errBadLength
		}
		h.contentLength = n
	case equalFold(name, "transfer-encoding"):
		h.transferEncoding = true
	case equalFold(name, "expect"):
		h.expectContinue = equalFold(value, "100-continue")
	case equalFold(name, "user-agent"):
		h.userAgent = value
	}
	if realIPHeader != "" && equalFold(name, realIPHeader) {
		h.realIP = append(h.realIP, value)
	}
	return nil
}

// parseLength reads a Content-Length: digits only, at most 18 of them so
// the value cannot overflow.
func parseLength(b []byte) (int64, bool) {
	if len(b) == 0 || len(b) > 18 {
		return 0, false
	}
	var n int64
	for _, c := range b {
		if !isDigit(c) {
			return 0, false
		}
		n = n*10 + int64(c-'0')
	}
	return n, true
}

// forEachToken calls fn with each element of a comma-separated list, white
// space trimmed, empty elements skipped.
func forEachToken(b []byte, fn func([]byte)) {
	for len(b) > 0 {
		var tok []byte
		if i := bytes.IndexByte(b, ','); i >= 0 {
			tok, b = b[:i], b[i+1:]
		} else {
			tok, b = b, nil
		}
		if tok = trimOWS(tok); len(tok) > 0 {
			fn(tok)
		}
	}
}

func trimOWS(b []byte) []byte {
	for len(b) > 0 && (b[0] == ' ' || b[0] == '\t') {
		b = b[1:]
	}
	for len(b) > 0 && (b[len(b)-1] == ' ' || b[len(b)-1] == '\t') {
		b = b[:len(b)-1]
	}
	return b
}

// equalFold compares b with lower, which must be lower case, ignoring the
// case of ASCII letters in b.
func equalFold(b []byte, lower string) bool {
	if len(b) != len(lower) {
		return false
	}
	for i := 0; i < len(b); i++ {
		c := b[i]
		if 'A' <= c && c <= 'Z' {
			c += 'a' - 'A'
		}
		if c != lower[i] {
			return false
		}
	}
	return true
}

func isDigit(c byte) bool { return '0' <= c && c <= '9' }

// isTokenChar reports whether c may appear in an RFC 9110 token (methods
// and field names).
func isTokenChar(c byte) bool { return c < 128 && tokenChars[c] }

var tokenChars = func() (t [128]bool) {
	for c := '0'; c <= '9'; c++ {
		t[c] = true
	}
	for c := 'a'; c <= 'z'; c++ {
		t[c], t[c-'a'+'A'] = true, true
	}
	for _, c := range "!#$%&'*+-.^_`|~" {
		t[c] = true
	}
	return t
}()
