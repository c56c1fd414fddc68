package postgres

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"sync"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgtype"
)

// Every statement the driver runs has a key, under which the operator's
// own SQL may replace it ("queries" in the configuration). Statements take
// named parameters (@user_id); reads return named columns, in any order.
// This file lists them, with the parameters each may use and the columns
// each must return, and turns the SQL into what pgx runs.

// paramClass is what a parameter carries. The driver converts the value
// to the type PostgreSQL infers for the parameter, within the class.
type paramClass uint8

const (
	paramInt   paramClass = iota // integer types, numeric, float
	paramBool                    // boolean, or an integer 0/1
	paramBytes                   // bytea, or text (hexadecimal)
	paramInet                    // inet, or text; NULL when there is no address
	paramTime                    // timestamptz, timestamp, or an integer (Unix seconds); may be NULL
	paramText                    // text, varchar
)

// columnClass is what a result column carries, and so which types it may
// have.
type columnClass uint8

const (
	colInt   columnClass = iota // integer types
	colText                     // text, varchar, char
	colFlag                     // boolean, or an integer (0 is false)
	colHash                     // bytea (raw bytes) or text (hexadecimal)
	colLeech                    // text (normal, free, freeleech, neutral) or an integer (0, 1, 2)
	colFloat                    // double precision, real, numeric, integer types
	colBytes                    // text or bytea
)

type param struct {
	name  string
	class paramClass
}

type column struct {
	name     string
	class    columnClass
	required bool
}

// def describes one statement key.
type def struct {
	key string
	// params are the parameters the SQL may use; required those it must.
	params   []param
	required []string
	// columns are a read's result columns, nil for writes.
	columns []column
	// optional allows "" to turn the statement off (README.md says what
	// that means for each).
	optional bool
	// sql is the default; empty for writes, whose default is the
	// built-in bulk path (write.go).
	sql string
}

// Result columns shared by the bulk and the by-id reads.
var (
	userColumns = []column{
		{"id", colInt, true}, {"passkey", colText, true},
		{"can_leech", colFlag, false}, {"protected", colFlag, false},
	}
	torrentColumns = []column{
		{"id", colInt, true}, {"info_hash", colHash, true}, {"info_hash_v2", colHash, false},
		{"leech", colLeech, false}, {"up_multiplier", colFloat, false}, {"down_multiplier", colFloat, false},
		{"snatches", colInt, false},
	}
	tokenColumns     = []column{{"user_id", colInt, true}, {"torrent_id", colInt, true}}
	whitelistColumns = []column{{"prefix", colBytes, true}}
)

// Parameters of the per-row writes.
var (
	userParams = []param{{"user_id", paramInt}, {"uploaded", paramInt}, {"downloaded", paramInt}}
	// last_seeded is NULL when the swarm had no seeder since the last
	// write.
	torrentParams = []param{
		{"torrent_id", paramInt}, {"seeders", paramInt}, {"leechers", paramInt}, {"snatches", paramInt},
		{"balance", paramInt}, {"last_seeded", paramTime},
	}
	peerParams = []param{
		{"torrent_id", paramInt}, {"user_id", paramInt}, {"peer_id", paramBytes}, {"ip", paramInet},
		{"port", paramInt}, {"uploaded", paramInt}, {"downloaded", paramInt}, {"remaining", paramInt},
		{"corrupt", paramInt}, {"up_speed", paramInt}, {"down_speed", paramInt}, {"time_spent", paramInt},
		{"announces", paramInt}, {"active", paramBool}, {"user_agent", paramText}, {"updated_at", paramTime},
	}
	snatchParams = []param{{"user_id", paramInt}, {"torrent_id", paramInt}, {"at", paramTime}, {"ip", paramInet}}
	tokenParams  = []param{{"user_id", paramInt}, {"torrent_id", paramInt}, {"downloaded", paramInt}}
	expireParams = []param{{"user_id", paramInt}, {"torrent_id", paramInt}}
	// idParams are the by-id reads' (load_token takes expireParams).
	idParams = []param{{"id", paramInt}}
)

// Statement keys.
const (
	keyStart           = "start"
	keyLoadUsers       = "load_users"
	keyLoadTorrents    = "load_torrents"
	keyLoadTokens      = "load_tokens"
	keyLoadWhitelist   = "load_whitelist"
	keyLoadUser        = "load_user"
	keyLoadTorrent     = "load_torrent"
	keyLoadToken       = "load_token"
	keyWriteUsers      = "write_users"
	keyWriteTorrents   = "write_torrents"
	keyWritePeers      = "write_peers"
	keyWritePeersLight = "write_peers_light"
	keyWriteSnatches   = "write_snatches"
	keyWriteTokens     = "write_tokens"
	keyExpireTokens    = "expire_tokens"
)

const (
	defaultLoadUsers    = "SELECT id, passkey, can_leech, protected FROM users WHERE enabled"
	defaultLoadTorrents = "SELECT t.id, t.info_hash, t.info_hash_v2, t.leech, t.up_multiplier, t.down_multiplier," +
		" coalesce(s.snatches, 0) AS snatches FROM torrents t LEFT JOIN torrent_stats s ON s.torrent_id = t.id"
)

// defList is every statement, in the order the README documents them.
var defList = []*def{
	{key: keyStart, optional: true,
		// The tracker rebuilds peers and live counters from announces;
		// what a previous run left is stale.
		sql: "TRUNCATE peers; UPDATE torrent_stats SET seeders = 0, leechers = 0 WHERE seeders <> 0 OR leechers <> 0"},
	{key: keyLoadUsers, columns: userColumns, sql: defaultLoadUsers},
	{key: keyLoadTorrents, columns: torrentColumns, sql: defaultLoadTorrents},
	{key: keyLoadTokens, columns: tokenColumns, optional: true,
		sql: "SELECT user_id, torrent_id FROM tokens WHERE NOT expired"},
	{key: keyLoadWhitelist, columns: whitelistColumns, optional: true,
		sql: "SELECT prefix FROM client_whitelist"},
	{key: keyLoadUser, columns: userColumns, params: idParams, required: []string{"id"}, optional: true,
		sql: defaultLoadUsers + " AND id = @id"},
	{key: keyLoadTorrent, columns: torrentColumns, params: idParams, required: []string{"id"}, optional: true,
		sql: defaultLoadTorrents + " WHERE t.id = @id"},
	{key: keyLoadToken, columns: tokenColumns, params: expireParams, required: []string{"user_id", "torrent_id"}, optional: true,
		sql: "SELECT user_id, torrent_id FROM tokens WHERE user_id = @user_id AND torrent_id = @torrent_id AND NOT expired"},
	{key: keyWriteUsers, params: userParams, required: []string{"user_id"}, optional: true},
	{key: keyWriteTorrents, params: torrentParams, required: []string{"torrent_id"}, optional: true},
	{key: keyWritePeers, params: peerParams, required: []string{"torrent_id", "user_id", "peer_id"}, optional: true},
	{key: keyWritePeersLight, params: peerParams, required: []string{"torrent_id", "user_id", "peer_id"}, optional: true},
	{key: keyWriteSnatches, params: snatchParams, required: []string{"user_id", "torrent_id"}, optional: true},
	{key: keyWriteTokens, params: tokenParams, required: []string{"user_id", "torrent_id"}, optional: true},
	{key: keyExpireTokens, params: expireParams, required: []string{"user_id", "torrent_id"}, optional: true},
}

var defs = func() map[string]*def {
	m := make(map[string]*def, len(defList))
	for _, d := range defList {
		m[d.key] = d
	}
	return m
}()

func defKeys() []string {
	keys := make([]string, len(defList))
	for i, d := range defList {
		keys[i] = d.key
	}
	return keys
}

// statement is one key's SQL, ready to run.
type statement struct {
	def *def
	// text is the SQL as configured; sql the same with $1, $2, …;
	// params[i] is the index in def.params of $i+1.
	text   string
	sql    string
	params []int
	// custom is set for the operator's SQL; bulk for a write that uses
	// the built-in bulk path; disabled for "".
	custom   bool
	bulk     bool
	disabled bool

	// oids are the parameter types PostgreSQL inferred, learnt once
	// (describe), so values can be converted to them.
	mu   sync.Mutex
	oids []uint32
}

func (st *statement) key() string { return st.def.key }

// queries is every statement by key.
type queries map[string]*statement

// customTrigger are the keys whose override means the site has its own
// schema: the defaults of every other statement read and write the
// default tables, so they must all be given.
var customTrigger = []string{keyLoadUsers, keyLoadTorrents}

// pairs are bulk reads and their by-id counterpart, which must read the
// same tables.
var pairs = [][2]string{{keyLoadUsers, keyLoadUser}, {keyLoadTorrents, keyLoadTorrent}, {keyLoadTokens, keyLoadToken}}

// buildQueries compiles the given overrides over the defaults.
func buildQueries(given map[string]string) (queries, error) {
	if slices.ContainsFunc(customTrigger, func(k string) bool { _, ok := given[k]; return ok }) {
		var missing []string
		for _, d := range defList {
			if _, ok := given[d.key]; !ok {
				missing = append(missing, d.key)
			}
		}
		if len(missing) > 0 {
			return nil, fmt.Errorf("queries: load_users or load_torrents is set, so the site has its own schema and every statement must be given (\"\" where it may be turned off); missing: %s",
				strings.Join(missing, ", "))
		}
	}
	for _, p := range pairs {
		_, a := given[p[0]]
		_, b := given[p[1]]
		if a != b {
			set, unset := p[0], p[1]
			if b {
				set, unset = unset, set
			}
			return nil, fmt.Errorf("queries.%s: must be given too when queries.%s is, so both read the same tables", unset, set)
		}
	}
	q := make(queries, len(defList))
	for _, d := range defList {
		text, custom := given[d.key]
		if !custom {
			text = d.sql
		}
		st, err := compile(d, text, custom)
		if err != nil {
			return nil, err
		}
		q[d.key] = st
	}
	return q, nil
}

// compile turns a statement's SQL with named parameters into positional
// SQL, checking that it uses only the parameters its key offers and every
// one it requires.
func compile(d *def, text string, custom bool) (*statement, error) {
	st := &statement{def: d, text: text, custom: custom}
	if strings.TrimSpace(text) == "" {
		switch {
		case custom && !d.optional:
			return nil, fmt.Errorf("queries.%s: must not be empty", d.key)
		case custom:
			st.disabled = true
		default:
			// No default SQL: the built-in bulk write.
			st.bulk = true
		}
		return st, nil
	}
	names := make(pgx.NamedArgs, len(d.params))
	for i, p := range d.params {
		names[p.name] = i
	}
	sql, args, err := names.RewriteQuery(context.Background(), nil, text, nil)
	if err != nil {
		return nil, fmt.Errorf("queries.%s: %w", d.key, err)
	}
	st.sql = sql
	st.params = make([]int, len(args))
	for i, a := range args {
		idx, ok := a.(int)
		if !ok {
			return nil, fmt.Errorf("queries.%s: unknown parameter %s; this statement takes %s",
				d.key, unknownParam(text, names), paramList(d.params))
		}
		st.params[i] = idx
	}
	for _, name := range d.required {
		if !slices.ContainsFunc(st.params, func(i int) bool { return d.params[i].name == name }) {
			return nil, fmt.Errorf("queries.%s: must use @%s", d.key, name)
		}
	}
	return st, nil
}

// unknownParam names a parameter of text that names does not have. pgx's
// strict rewrite is the only way to learn a name its lexer found, and it
// reports the first unknown one in its message.
func unknownParam(text string, names pgx.NamedArgs) string {
	_, _, err := pgx.StrictNamedArgs(names).RewriteQuery(context.Background(), nil, text, nil)
	var name string
	if err != nil {
		if _, scanErr := fmt.Sscanf(err.Error(), "argument %s found in sql query", &name); scanErr == nil {
			return "@" + name
		}
	}
	return "(a name not in the list)"
}

func paramList(ps []param) string {
	if len(ps) == 0 {
		return "no parameters"
	}
	out := make([]string, len(ps))
	for i, p := range ps {
		out[i] = "@" + p.name
	}
	return strings.Join(out, ", ")
}

// Type OIDs accepted for each class.
var (
	intOIDs   = []uint32{pgtype.Int2OID, pgtype.Int4OID, pgtype.Int8OID}
	textOIDs  = []uint32{pgtype.TextOID, pgtype.VarcharOID, pgtype.BPCharOID, pgtype.NameOID}
	floatOIDs = []uint32{pgtype.Float4OID, pgtype.Float8OID, pgtype.NumericOID}
)

// paramOIDs are the parameter types each class converts its values to.
func paramOIDs(c paramClass) []uint32 {
	switch c {
	case paramInt:
		return append(slices.Clone(intOIDs), floatOIDs...)
	case paramBool:
		return append([]uint32{pgtype.BoolOID}, intOIDs...)
	case paramBytes:
		return append([]uint32{pgtype.ByteaOID}, textOIDs...)
	case paramInet:
		return append([]uint32{pgtype.InetOID}, textOIDs...)
	case paramTime:
		return append([]uint32{pgtype.TimestamptzOID, pgtype.TimestampOID}, intOIDs...)
	}
	return textOIDs
}

// columnOIDs are the column types each class reads.
func columnOIDs(c columnClass) []uint32 {
	switch c {
	case colInt:
		// numeric too: what sum() returns.
		return append(slices.Clone(intOIDs), pgtype.NumericOID)
	case colText:
		return textOIDs
	case colFlag:
		return append([]uint32{pgtype.BoolOID}, intOIDs...)
	case colHash, colBytes:
		return append([]uint32{pgtype.ByteaOID}, textOIDs...)
	case colLeech:
		return append(slices.Clone(textOIDs), intOIDs...)
	}
	return append(slices.Clone(floatOIDs), intOIDs...)
}

var classNames = map[any]string{
	paramInt: "an integer", paramBool: "boolean or an integer", paramBytes: "bytea or text",
	paramInet: "inet or text", paramTime: "timestamptz, timestamp or an integer", paramText: "text",
	colInt: "an integer", colText: "text", colFlag: "boolean or an integer", colHash: "bytea or text",
	colLeech: "text or an integer", colFloat: "a number", colBytes: "text or bytea",
}

// checkParams checks the parameter types PostgreSQL inferred.
func (st *statement) checkParams(oids []uint32, typeName func(uint32) string) error {
	for i, oid := range oids {
		p := st.def.params[st.params[i]]
		if !slices.Contains(paramOIDs(p.class), oid) {
			return fmt.Errorf("queries.%s: @%s is %s, want %s (add a cast such as @%s::%s)",
				st.key(), p.name, typeName(oid), classNames[p.class], p.name, castFor(p.class))
		}
	}
	return nil
}

func castFor(c paramClass) string {
	switch c {
	case paramInt:
		return "bigint"
	case paramBool:
		return "boolean"
	case paramBytes:
		return "bytea"
	case paramInet:
		return "inet"
	case paramTime:
		return "timestamptz"
	}
	return "text"
}

// newLayout checks a read's result columns — every one must be known,
// with a type of its class, and every required one present — and returns
// for each wanted column the index of the result column holding it, or -1.
func newLayout(key string, want []column, fields []fieldInfo, typeName func(uint32) string) ([]int, error) {
	pos := make([]int, len(want))
	for i := range pos {
		pos[i] = -1
	}
	for i, f := range fields {
		j := slices.IndexFunc(want, func(c column) bool { return c.name == f.name })
		if j < 0 {
			return nil, fmt.Errorf("queries.%s: result column %q is not one the driver reads (%s); rename it with AS", key, f.name, columnList(want))
		}
		if pos[j] >= 0 {
			return nil, fmt.Errorf("queries.%s: result column %q appears twice", key, f.name)
		}
		if !slices.Contains(columnOIDs(want[j].class), f.oid) {
			return nil, fmt.Errorf("queries.%s: result column %q is %s, want %s", key, f.name, typeName(f.oid), classNames[want[j].class])
		}
		pos[j] = i
	}
	for j, c := range want {
		if c.required && pos[j] < 0 {
			return nil, fmt.Errorf("queries.%s: result column %q is missing (%s)", key, c.name, columnList(want))
		}
	}
	return pos, nil
}

type fieldInfo struct {
	name string
	oid  uint32
}

func columnList(cs []column) string {
	out := make([]string, len(cs))
	for i, c := range cs {
		out[i] = c.name
		if !c.required {
			out[i] += " (optional)"
		}
	}
	return "columns: " + strings.Join(out, ", ")
}
