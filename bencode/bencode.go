// Package bencode writes the bencoding of BEP 3. It appends to caller-owned
// byte slices so that a response can be built without allocating; decoding
// is left to tests, which use an independent library to check our output.
//
// The caller is responsible for writing dictionary keys in sorted order, as
// BEP 3 requires; the tracker's responses have fixed keys, so that order is
// fixed in code rather than sorted at run time.
package bencode

import "strconv"

// AppendInt appends i as a bencoded integer.
func AppendInt(dst []byte, i int64) []byte {
	dst = append(dst, 'i')
	dst = strconv.AppendInt(dst, i, 10)
	return append(dst, 'e')
}

// AppendUint appends u as a bencoded integer.
func AppendUint(dst []byte, u uint64) []byte {
	dst = append(dst, 'i')
	dst = strconv.AppendUint(dst, u, 10)
	return append(dst, 'e')
}

// AppendString appends s as a bencoded byte string.
func AppendString(dst []byte, s string) []byte {
	dst = strconv.AppendInt(dst, int64(len(s)), 10)
	dst = append(dst, ':')
	return append(dst, s...)
}

// AppendBytes appends b as a bencoded byte string.
func AppendBytes(dst []byte, b []byte) []byte {
	dst = strconv.AppendInt(dst, int64(len(b)), 10)
	dst = append(dst, ':')
	return append(dst, b...)
}

// AppendStringHeader appends the length prefix of a byte string of n bytes,
// for callers that write the string's content themselves (compact peer
// lists are built in place this way).
func AppendStringHeader(dst []byte, n int) []byte {
	dst = strconv.AppendInt(dst, int64(n), 10)
	return append(dst, ':')
}

// AppendKey appends a dictionary key; it is AppendString under the name
// that says what the bytes are for.
func AppendKey(dst []byte, key string) []byte { return AppendString(dst, key) }

// Dictionaries and lists are opened with these bytes and closed with End.
const (
	Dict = 'd'
	List = 'l'
	End  = 'e'
)
