// Package redis is the shared cache driver, registered as "redis": swarms
// live in Redis (a single server or a Redis Cluster), so several tracker
// processes serve the same swarms and see the same counts and totals.
//
// Each announce is one round trip: a Lua script, called by its SHA-1 and
// sent in full only when a server does not have it yet, updates or removes
// the peer, moves it between downloaders and seeders, counts its snatch,
// picks peers at random and answers with the counts and the peer's
// previous totals. All keys of a swarm carry the swarm's info hash as a
// hash tag, so the script touches one cluster slot. The time the script
// works with is the tracker's (cache.Options.Now), never Redis's.
//
// Expiry is exact whatever the reaper's timing: every script that reads a
// swarm first drops its endpoints not seen for a peer lifetime, and a swarm
// empty for a lifetime since its last announce. The reaper, every
// reap_interval, runs the same sweep over the swarms nobody asks about; as
// a backstop every key expires between one and a half and two peer
// lifetimes after the swarm's last announce. The scripts and the key
// layout are described in swarm.lua and README.md.
package redis

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	_ "embed"
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"math/bits"
	"math/rand/v2"
	"os"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/redis/rueidis"

	"github.com/chihaya/chihaya/bittorrent"
	"github.com/chihaya/chihaya/cache"
)

func init() {
	cache.Register("redis", driver{})
}

// driver opens Redis stores.
type driver struct{}

// Open implements cache.Driver.
func (driver) Open(raw json.RawMessage, opts cache.Options) (cache.Store, error) {
	c, err := parseConfig(raw)
	if err != nil {
		return nil, err
	}
	return open(c, opts)
}

var (
	//go:embed swarm.lua
	swarmLua string
	//go:embed announce.lua
	announceLua string
	//go:embed scrape.lua
	scrapeLua string
)

// The scripts, each with the shared part in front. A script's SHA-1 is
// its identity on every server, so instances of any version of this code
// running the same script share one cached copy.
var (
	announceScript = newScript(swarmLua + announceLua)
	scrapeScript   = newScript(swarmLua + scrapeLua)
)

// Key suffixes of a swarm, in the order the scripts take their KEYS: the
// peer hash, then the endpoint sets (IPv4 downloaders, IPv4 others, IPv6
// downloaders, IPv6 others).
var suffixes = [nkeys]string{":p", ":d4", ":s4", ":d6", ":s6"}

const nkeys = 5

// Sizes of the binary values the scripts exchange.
const (
	keyLen    = 4 + 20          // user id, peer id: who a peer is
	ep4Len    = keyLen + 4 + 2  // peer key, IPv4 address, port
	ep6Len    = keyLen + 16 + 2 // peer key, IPv6 address, port
	headerLen = 1 + 4 + 4 + 4 + 2
	totalsLen = 16
)

// store is an open Redis store.
type store struct {
	client rueidis.Client
	now    func() time.Time
	prefix string
	// life and ttl are the peer lifetime and the keys' TTL in
	// milliseconds, as the decimal strings the scripts take.
	life, ttl string
	// callTimeout bounds a call whose context allows longer: Redis
	// gone silent must not hold announces for ever.
	callTimeout time.Duration

	bufs sync.Pool // *request

	closeOnce sync.Once
	stop      chan struct{}
	done      chan struct{}
}

// request holds one call's arguments. Every key and argument is a slice
// of buf, turned into a string without a copy, so a call costs no
// allocation for its arguments; the client copies the string headers when
// it builds the command, and the bytes are read when the command is
// written.
type request struct {
	buf  []byte
	keys []string
	args []string
	// at and cmds serve scrapes: where each swarm's keys start in buf,
	// and the commands.
	at   []int
	cmds rueidis.Commands
}

func open(c config, opts cache.Options) (*store, error) {
	if opts.PeerLifetime <= 0 {
		return nil, errors.New("peer lifetime must be positive")
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
	opt, err := clientOption(c)
	if err != nil {
		return nil, err
	}
	where := strings.Join(c.addrs, ", ")
	client, err := rueidis.NewClient(opt)
	if err != nil {
		return nil, fmt.Errorf("redis at %s: %w", where, err)
	}
	// Loading the scripts everywhere now is not needed for correctness
	// (a server without them gets them on first use), but it checks that
	// every node answers and accepts scripts before the tracker starts
	// serving.
	ctx, cancel := context.WithTimeout(context.Background(), c.dialTimeout+c.readTimeout+c.writeTimeout)
	defer cancel()
	for addr, node := range client.Nodes() {
		for _, s := range []*script{announceScript, scrapeScript} {
			if err := node.Do(ctx, node.B().ScriptLoad().Script(s.src).Build()).Error(); err != nil {
				client.Close()
				return nil, fmt.Errorf("redis at %s: loading the scripts: %w", addr, err)
			}
		}
	}

	lifeMs := max(opts.PeerLifetime.Milliseconds(), 1)
	st := &store{
		client: client,
		now:    opts.Now,
		prefix: c.keyPrefix,
		life:   strconv.FormatInt(lifeMs, 10),
		ttl:    strconv.FormatInt(2*lifeMs, 10),
		// A call writes, waits for Redis and reads.
		callTimeout: c.writeTimeout + c.readTimeout,
		stop:        make(chan struct{}),
		done:        make(chan struct{}),
	}
	st.bufs.New = func() any {
		return &request{buf: make([]byte, 0, 512), keys: make([]string, 0, nkeys), args: make([]string, 0, 11)}
	}
	go st.run(c.reapInterval)
	return st, nil
}

// clientOption turns the configuration into the client's options.
func clientOption(c config) (rueidis.ClientOption, error) {
	// The client opens 2^multiplex pipelined connections per node, and
	// reads 0 as "its default"; a negative value means one.
	multiplex := bits.Len(uint(c.poolSize)) - 1
	if multiplex == 0 {
		multiplex = -1
	}
	opt := rueidis.ClientOption{
		InitAddress: c.addrs,
		Username:    c.username,
		Password:    c.password,
		SelectDB:    c.db,
		// Concurrent announces share these connections: the client
		// pipelines whatever is waiting onto them.
		PipelineMultiplex: multiplex,
		BlockingPoolSize:  c.poolSize,
		// The driver asks the same question of Redis at most once per
		// announce; there is nothing to cache client-side.
		DisableCache: true,
		// Fail fast rather than wait on retries: a tracker's clients
		// announce again anyway, and the reaper runs again next round.
		DisableRetry: true,
		// Without a reply in time a connection is deemed dead: the
		// commands waiting on it fail and the next ones dial anew.
		ConnWriteTimeout:  max(c.readTimeout, c.writeTimeout),
		ForceSingleClient: !c.cluster,
	}
	opt.Dialer.Timeout = c.dialTimeout
	if c.cluster {
		// A redirection means slots moved; learn the new layout in the
		// background, too, so a quiet instance does not lag.
		opt.ClusterOption.ShardsRefreshInterval = time.Minute
	}
	if c.tls.enabled {
		tc := &tls.Config{
			ServerName:         c.tls.serverName,
			InsecureSkipVerify: c.tls.insecureSkipVerify,
			MinVersion:         tls.VersionTLS12,
		}
		if c.tls.caFile != "" {
			pem, err := os.ReadFile(c.tls.caFile)
			if err != nil {
				return opt, fmt.Errorf("tls.ca_file: %w", err)
			}
			tc.RootCAs = x509.NewCertPool()
			if !tc.RootCAs.AppendCertsFromPEM(pem) {
				return opt, fmt.Errorf("tls.ca_file: no PEM certificate in %s", c.tls.caFile)
			}
		}
		opt.TLSConfig = tc
	}
	return opt, nil
}

// appendKeys appends the keys of h's swarm to r.buf and returns where they
// start; keysAt turns them into strings once buf is complete.
func (st *store) appendKeys(r *request, h bittorrent.InfoHash) int {
	at := len(r.buf)
	for _, s := range suffixes {
		r.buf = append(r.buf, st.prefix...)
		r.buf = append(r.buf, '{')
		r.buf = hex.AppendEncode(r.buf, h[:])
		r.buf = append(r.buf, '}')
		r.buf = append(r.buf, s...)
	}
	return at
}

// keyLen is the length of a swarm's key with suffix s.
func (st *store) keyLen(s string) int {
	return len(st.prefix) + 2 + 2*len(bittorrent.InfoHash{}) + len(s)
}

// keysAt appends to dst the keys appendKeys wrote at offset at.
func (st *store) keysAt(dst []string, buf []byte, at int) []string {
	for _, s := range suffixes {
		n := st.keyLen(s)
		dst = append(dst, rueidis.BinaryString(buf[at:at+n]))
		at += n
	}
	return dst
}

// span is a value written into a request's buffer.
type span struct{ at, n int }

func (r *request) put(b []byte) span {
	at := len(r.buf)
	r.buf = append(r.buf, b...)
	return span{at, len(b)}
}

func (r *request) putInt(v int64) span {
	at := len(r.buf)
	r.buf = strconv.AppendInt(r.buf, v, 10)
	return span{at, len(r.buf) - at}
}

func (r *request) str(s span) string {
	if s.n == 0 {
		return ""
	}
	return rueidis.BinaryString(r.buf[s.at : s.at+s.n])
}

// release returns r to the pool. It must only be called once the client
// is done with r's strings: after a call that did not fail on the
// client's side, since a failed command may still sit in a pipeline,
// where it is written later.
func (st *store) release(r *request) {
	if cap(r.buf) > 64<<10 {
		// Do not keep the buffer of one huge scrape for ever.
		return
	}
	r.buf, r.keys, r.args, r.at = r.buf[:0], r.keys[:0], r.args[:0], r.at[:0]
	clear(r.cmds)
	r.cmds = r.cmds[:0]
	st.bufs.Put(r)
}

// millis is t in milliseconds since the Unix epoch, the scripts' clock.
func millis(t time.Time) int64 { return t.UnixMilli() }

// eventCode is how the announce script spells an event: only the events
// that change what it stores matter.
func eventCode(e bittorrent.Event) string {
	switch e {
	case bittorrent.Stopped:
		return "s"
	case bittorrent.Completed:
		return "c"
	case bittorrent.Paused:
		return "p"
	}
	return ""
}

// bound returns ctx limited to the store's call timeout, and its cancel
// function (nil when ctx was bounded already).
func (st *store) bound(ctx context.Context) (context.Context, context.CancelFunc) {
	if d, ok := ctx.Deadline(); ok && time.Until(d) <= st.callTimeout {
		return ctx, nil
	}
	return context.WithTimeout(ctx, st.callTimeout)
}

// Announce implements cache.Store.
func (st *store) Announce(ctx context.Context, a *cache.Announce, res *cache.Result) error {
	*res = cache.Result{Peers4: res.Peers4, Peers6: res.Peers6}
	ctx, cancel := st.bound(ctx)
	if cancel != nil {
		defer cancel()
	}
	r := st.bufs.Get().(*request)
	at := st.appendKeys(r, a.InfoHash)
	now := r.putInt(millis(st.now()))
	id := len(r.buf)
	r.buf = binary.BigEndian.AppendUint32(r.buf, a.UserID)
	r.buf = append(r.buf, a.PeerID[:]...)
	var totals [totalsLen]byte
	binary.BigEndian.PutUint64(totals[:8], a.Uploaded)
	binary.BigEndian.PutUint64(totals[8:], a.Downloaded)
	tot := r.put(totals[:])
	var e4, e6 span
	if v4 := a.IPv4.Unmap(); v4.Is4() {
		b := v4.As4()
		e4 = r.put(b[:])
		r.buf = binary.BigEndian.AppendUint16(r.buf, a.Port)
		e4.n += 2
	}
	if a.IPv6.Is6() && !a.IPv6.Is4In6() {
		b := a.IPv6.As16()
		e6 = r.put(b[:])
		r.buf = binary.BigEndian.AppendUint16(r.buf, a.Port)
		e6.n += 2
	}
	// The answer counts IPv4 peers in 16 bits; no tracker hands out more.
	want := r.putInt(int64(min(max(a.NumWant, 0), 0xffff)))
	seed := r.putInt(int64(rand.Uint32()))

	seeder := ""
	if a.Seeder {
		seeder = "1"
	}
	r.keys = st.keysAt(r.keys, r.buf, at)
	r.args = append(r.args, r.str(now), st.life, st.ttl, r.str(span{id, keyLen}), eventCode(a.Event), seeder,
		r.str(tot), r.str(e4), r.str(e6), r.str(want), r.str(seed))

	resp := announceScript.exec(ctx, st.client, r.keys, r.args)
	if resp.NonRedisError() == nil {
		defer st.release(r)
	}
	reply, err := resp.ToString()
	if err != nil {
		return fmt.Errorf("redis: announce: %w", err)
	}
	return parseAnnounce(reply, a.PeerIDs, res)
}

// parseAnnounce reads the announce script's answer (see announce.lua) into
// res, appending the peers without allocating.
func parseAnnounce(s string, ids bool, res *cache.Result) error {
	if len(s) < headerLen {
		return fmt.Errorf("redis: announce: short reply of %d bytes", len(s))
	}
	known := s[0]&1 != 0
	res.Snatched = s[0]&2 != 0
	res.Complete = be32(s[1:])
	res.Incomplete = be32(s[5:])
	res.Snatches = be32(s[9:])
	n4 := int(s[13])<<8 | int(s[14])
	s = s[headerLen:]
	if known {
		if len(s) < totalsLen {
			return errors.New("redis: announce: reply lacks the previous totals")
		}
		res.Known = true
		res.PrevUploaded = be64(s)
		res.PrevDownloaded = be64(s[8:])
		s = s[totalsLen:]
	}
	if len(s) < n4*ep4Len || (len(s)-n4*ep4Len)%ep6Len != 0 {
		return fmt.Errorf("redis: announce: malformed peer lists (%d bytes for %d IPv4 peers)", len(s), n4)
	}
	// An endpoint is the peer key, then the address and port in the
	// compact form the answer carries.
	for range n4 {
		res.Peers4.Compact = append(res.Peers4.Compact, s[keyLen:ep4Len]...)
		if ids {
			res.Peers4.IDs = append(res.Peers4.IDs, bittorrent.PeerID([]byte(s[4:keyLen])))
		}
		s = s[ep4Len:]
	}
	for len(s) > 0 {
		res.Peers6.Compact = append(res.Peers6.Compact, s[keyLen:ep6Len]...)
		if ids {
			res.Peers6.IDs = append(res.Peers6.IDs, bittorrent.PeerID([]byte(s[4:keyLen])))
		}
		s = s[ep6Len:]
	}
	return nil
}

func be32(s string) uint32 {
	return uint32(s[0])<<24 | uint32(s[1])<<16 | uint32(s[2])<<8 | uint32(s[3])
}

func be64(s string) uint64 {
	return uint64(be32(s))<<32 | uint64(be32(s[4:]))
}

// Scrape implements cache.Store. All hashes go in one pipeline; a cluster
// client splits it by node and sends the parts side by side.
func (st *store) Scrape(ctx context.Context, hashes []bittorrent.InfoHash, dst []bittorrent.Scrape) ([]bittorrent.Scrape, error) {
	if len(hashes) == 0 {
		return dst, nil
	}
	ctx, cancel := st.bound(ctx)
	if cancel != nil {
		defer cancel()
	}
	r := st.bufs.Get().(*request)
	now := r.putInt(millis(st.now()))
	for _, h := range hashes {
		r.at = append(r.at, st.appendKeys(r, h))
	}
	for _, at := range r.at {
		r.keys = st.keysAt(r.keys[:0], r.buf, at)
		r.cmds = append(r.cmds, scrapeScript.cmd(st.client, r.keys, r.str(now), st.life))
	}
	resps := scrapeScript.execMulti(ctx, st.client, r.cmds, func(i int) rueidis.Completed {
		r.keys = st.keysAt(r.keys[:0], r.buf, r.at[i])
		return scrapeScript.evalCmd(st.client, r.keys, r.str(now), st.life)
	})
	dst, clean, err := appendScrapes(dst, hashes, resps)
	if clean {
		st.release(r)
	}
	return dst, err
}

// appendScrapes reads the scrape script's answers (see scrape.lua) into
// dst. clean reports whether no command failed on the client's side, which
// is when the request's buffer may be reused.
func appendScrapes(dst []bittorrent.Scrape, hashes []bittorrent.InfoHash, resps []rueidis.RedisResult) (_ []bittorrent.Scrape, clean bool, err error) {
	clean = true
	for _, resp := range resps {
		if resp.NonRedisError() != nil {
			clean = false
		}
	}
	for i, resp := range resps {
		reply, err := resp.ToString()
		if err != nil {
			return dst, clean, fmt.Errorf("redis: scrape: %w", err)
		}
		if reply == "" {
			continue
		}
		if len(reply) != 12 {
			return dst, clean, fmt.Errorf("redis: scrape: reply of %d bytes", len(reply))
		}
		dst = append(dst, bittorrent.Scrape{
			InfoHash:   hashes[i],
			Complete:   be32(reply),
			Incomplete: be32(reply[4:]),
			Snatches:   be32(reply[8:]),
		})
	}
	return dst, clean, nil
}

// Close stops the reaper and closes the connections.
func (st *store) Close() error {
	st.closeOnce.Do(func() { close(st.stop) })
	<-st.done
	st.client.Close()
	return nil
}

// Ping implements cache.Pinger: Redis answers PING (in a cluster, the node
// the client picks).
func (st *store) Ping(ctx context.Context) error {
	ctx, cancel := st.bound(ctx)
	defer cancel()
	for _, res := range st.client.DoMulti(ctx, st.client.B().Ping().Build()) {
		if err := res.Error(); err != nil {
			return err
		}
	}
	return nil
}
