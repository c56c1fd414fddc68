package postgres

import (
	"encoding/hex"
	"math"
	"slices"
	"strconv"
	"strings"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgtype"

	"github.com/chihaya/chihaya/bittorrent"
	"github.com/chihaya/chihaya/storage"
)

// cell receives one result column. The scan target is picked by the
// column's type, so a custom query may return an int4 or an int8, a
// boolean or a 0/1 integer, without a cast, and nothing is boxed per row.
type cell struct {
	kind cellKind
	i    pgtype.Int8
	f    pgtype.Float8
	b    pgtype.Bool
	t    pgtype.Text
	// raw is bytea, valid until the next row: it is copied out at once.
	raw pgtype.DriverBytes
}

type cellKind uint8

const (
	kindText cellKind = iota
	kindInt
	kindFloat
	kindBool
	kindBytes
)

func kindOf(oid uint32) cellKind {
	switch {
	case slices.Contains(intOIDs, oid):
		return kindInt
	case slices.Contains(floatOIDs, oid):
		return kindFloat
	case oid == pgtype.BoolOID:
		return kindBool
	case oid == pgtype.ByteaOID:
		return kindBytes
	}
	return kindText
}

func (c *cell) target() any {
	switch c.kind {
	case kindInt:
		return &c.i
	case kindFloat:
		return &c.f
	case kindBool:
		return &c.b
	case kindBytes:
		return &c.raw
	}
	return &c.t
}

func (c *cell) isNull() bool {
	switch c.kind {
	case kindInt:
		return !c.i.Valid
	case kindFloat:
		return !c.f.Valid
	case kindBool:
		return !c.b.Valid
	case kindBytes:
		return c.raw == nil
	}
	return !c.t.Valid
}

// reader reads a query's rows into cells, by column name.
type reader struct {
	cells []cell
	dest  []any
	pos   []int
}

// newReader checks the result columns of rows against want.
func newReader(key string, want []column, rows pgx.Rows) (*reader, error) {
	fds := rows.FieldDescriptions()
	fields := make([]fieldInfo, len(fds))
	for i, f := range fds {
		fields[i] = fieldInfo{name: f.Name, oid: f.DataTypeOID}
	}
	pos, err := newLayout(key, want, fields, typeNamer(rows.Conn()))
	if err != nil {
		return nil, err
	}
	r := &reader{cells: make([]cell, len(fds)), dest: make([]any, len(fds)), pos: pos}
	for i := range r.cells {
		r.cells[i].kind = kindOf(fds[i].DataTypeOID)
		r.dest[i] = r.cells[i].target()
	}
	return r, nil
}

// typeNamer names type OIDs for messages.
func typeNamer(conn *pgx.Conn) func(uint32) string {
	return func(oid uint32) string {
		if conn != nil {
			if t, ok := conn.TypeMap().TypeForOID(oid); ok {
				return t.Name
			}
		}
		return "type " + strconv.FormatUint(uint64(oid), 10)
	}
}

// col returns the cell of the j-th wanted column, nil if the query does
// not return it or returned NULL.
func (r *reader) col(j int) *cell {
	if p := r.pos[j]; p >= 0 && !r.cells[p].isNull() {
		return &r.cells[p]
	}
	return nil
}

func (c *cell) int() int64 {
	switch c.kind {
	case kindInt:
		return c.i.Int64
	case kindFloat:
		return int64(c.f.Float64)
	}
	return 0
}

func (c *cell) text() string {
	if c.kind == kindBytes {
		return string(c.raw)
	}
	return c.t.String
}

func (c *cell) flag() bool {
	switch c.kind {
	case kindBool:
		return c.b.Bool
	case kindInt:
		return c.i.Int64 != 0
	}
	return false
}

func (c *cell) float() float64 {
	switch c.kind {
	case kindFloat:
		return c.f.Float64
	case kindInt:
		return float64(c.i.Int64)
	}
	return 0
}

// hash reads an info hash: raw bytes, or hexadecimal text. A 32-byte v2
// hash is truncated to the 20 bytes v2 clients announce (BEP 52).
func (c *cell) hash() (bittorrent.InfoHash, bool) {
	var h bittorrent.InfoHash
	b := []byte(c.raw)
	if c.kind != kindBytes {
		var err error
		if b, err = hex.DecodeString(strings.TrimSpace(c.t.String)); err != nil {
			return h, false
		}
	}
	if len(b) != 20 && len(b) != 32 {
		return h, false
	}
	copy(h[:], b)
	return h, h != bittorrent.InfoHash{}
}

// leech reads a leech state: normal, free (or freeleech), neutral, or 0,
// 1, 2. Anything else is normal, as in Gazelle.
func (c *cell) leech() storage.Leech {
	if c.kind == kindInt {
		switch c.i.Int64 {
		case 1:
			return storage.Free
		case 2:
			return storage.Neutral
		}
		return storage.Normal
	}
	switch strings.ToLower(strings.TrimSpace(c.t.String)) {
	case "free", "freeleech", "1":
		return storage.Free
	case "neutral", "2":
		return storage.Neutral
	}
	return storage.Normal
}

// id reads a user or torrent id: 1 to 2³²−1.
func id(c *cell) (uint32, bool) {
	if c == nil {
		return 0, false
	}
	v := c.int()
	if v < 1 || v > math.MaxUint32 {
		return 0, false
	}
	return uint32(v), true
}

// Result column indexes, in the order of userColumns, torrentColumns,
// tokenColumns and whitelistColumns.
const (
	ucID, ucPasskey, ucCanLeech, ucProtected                  = 0, 1, 2, 3
	tcID, tcHash, tcHashV2, tcLeech, tcUp, tcDown, tcSnatches = 0, 1, 2, 3, 4, 5, 6
	kcUser, kcTorrent                                         = 0, 1
	wcPrefix                                                  = 0
)

// user reads a users row; false if it cannot announce (no passkey, id
// out of range).
func (r *reader) user() (storage.User, bool) {
	uid, ok := id(r.col(ucID))
	pk := r.col(ucPasskey)
	if !ok || pk == nil || pk.text() == "" {
		return storage.User{}, false
	}
	u := storage.User{ID: uid, Passkey: pk.text(), CanLeech: true}
	if c := r.col(ucCanLeech); c != nil {
		u.CanLeech = c.flag()
	}
	if c := r.col(ucProtected); c != nil {
		u.Protected = c.flag()
	}
	return u, true
}

// torrent reads a torrents row; false without a valid id and info hash.
func (r *reader) torrent() (storage.Torrent, bool) {
	tid, ok := id(r.col(tcID))
	hc := r.col(tcHash)
	if !ok || hc == nil {
		return storage.Torrent{}, false
	}
	h, ok := hc.hash()
	if !ok {
		return storage.Torrent{}, false
	}
	t := storage.Torrent{ID: tid, InfoHash: h, UpMultiplier: 1, DownMultiplier: 1}
	if c := r.col(tcHashV2); c != nil {
		t.InfoHashV2, _ = c.hash()
	}
	if c := r.col(tcLeech); c != nil {
		t.Leech = c.leech()
	}
	if c := r.col(tcUp); c != nil {
		t.UpMultiplier = max(c.float(), 0)
	}
	if c := r.col(tcDown); c != nil {
		t.DownMultiplier = max(c.float(), 0)
	}
	if c := r.col(tcSnatches); c != nil {
		t.Snatches = uint32(min(max(c.int(), 0), math.MaxUint32))
	}
	return t, true
}

func (r *reader) token() (storage.Token, bool) {
	u, ok1 := id(r.col(kcUser))
	t, ok2 := id(r.col(kcTorrent))
	return storage.Token{UserID: u, TorrentID: t}, ok1 && ok2
}

func (r *reader) prefix() (string, bool) {
	c := r.col(wcPrefix)
	if c == nil || c.text() == "" {
		return "", false
	}
	return c.text(), true
}
