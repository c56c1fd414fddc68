package gazelle

import (
	"encoding/json"
	"fmt"
	"net/http"
	"runtime"
	"runtime/debug"
	"runtime/metrics"
	"strconv"
	"time"
)

// report answers one report call. The format of stats and user is
// report_format, which defaults by dialect (OPS Gazelle decodes JSON, What.CD
// Gazelle parses text lines) and which a format=json or format=text
// parameter overrides. The torrent report exists only in OPS and is always
// JSON.
func (h *siteHandler) report(w http.ResponseWriter, q map[string]string) {
	format := h.format
	if f := q["format"]; f == formatJSON || f == formatText {
		format = f
	}
	switch q["get"] {
	case "stats":
		reply(w, h.stats(format))
	case "user":
		h.userReport(w, q, format)
	case "torrent":
		h.torrentReport(w, q)
	case "prom_stats":
		reply(w, h.promStats())
	case "jemalloc":
		reply(w, memoryText())
	default:
		if format == formatText {
			reply(w, []byte("Invalid action\nsuccess"))
			return
		}
		fail(w, "unrecognized report query")
	}
}

// stat is one line of the stats report. typ is the type OPS Gazelle renders
// it by: number, byte, elapsed (seconds) or string.
type stat struct {
	label, typ string
	n          int64
	s          string
}

// statList gathers the stats report. Labels are Ocelot's where the tracker
// has the same figure; connection and byte counters belong to the frontend
// and are left out rather than reported as zero.
func (h *siteHandler) statList() []stat {
	c := h.p.Counters()
	uptime := time.Duration(0)
	if !c.Started.IsZero() {
		uptime = time.Since(c.Started)
	}
	handled := int64(c.Announces + c.FailedAnnounces + c.Scrapes + h.handled.Load())
	perSecond := int64(0)
	if secs := int64(uptime / time.Second); secs > 0 {
		perSecond = handled / secs
	}
	samples := []metrics.Sample{
		{Name: "/memory/classes/heap/objects:bytes"},
		{Name: "/sched/goroutines:goroutines"},
	}
	metrics.Read(samples)
	sampleInt := func(i int) int64 {
		if samples[i].Value.Kind() != metrics.KindUint64 {
			return 0
		}
		return int64(samples[i].Value.Uint64())
	}
	return []stat{
		{label: "version", typ: "string", s: version()},
		{label: "requests handled", typ: "number", n: handled},
		{label: "requests/s", typ: "number", n: perSecond},
		{label: "successful announcements", typ: "number", n: int64(c.Announces)},
		{label: "failed announcements", typ: "number", n: int64(c.FailedAnnounces)},
		{label: "scrapes", typ: "number", n: int64(c.Scrapes)},
		{label: "leechers tracked", typ: "number", n: int64(c.Leechers)},
		{label: "seeders tracked", typ: "number", n: int64(c.Seeders)},
		{label: "items in user queue", typ: "number", n: int64(c.Pending.Users)},
		{label: "items in torrent queue", typ: "number", n: int64(c.Pending.Torrents)},
		{label: "items in peer queue", typ: "number", n: int64(c.Pending.Peers)},
		{label: "items in snatch queue", typ: "number", n: int64(c.Pending.Snatches)},
		{label: "items in token queue", typ: "number", n: int64(c.Pending.Tokens)},
		{label: "items in token expiry queue", typ: "number", n: int64(c.Pending.ExpiredTokens)},
		{label: "bad tracker secret received", typ: "number", n: int64(h.badSite.Load())},
		{label: "bad report secret received", typ: "number", n: int64(h.badReport.Load())},
		{label: "announce interval", typ: "number", n: int64(h.p.AnnounceInterval() / time.Second)},
		{label: "announce jitter", typ: "number", n: int64(h.p.AnnounceJitter() / time.Second)},
		{label: "uptime", typ: "elapsed", n: int64(uptime / time.Second)},
		{label: "heap in use", typ: "byte", n: sampleInt(0)},
		{label: "goroutines", typ: "number", n: sampleInt(1)},
	}
}

// stats renders the stats report: OPS's JSON object of
// {"type": …, "value": …} keyed by label, ending in a newline so that
// Gazelle's "up to the last newline" keeps all of it; or What's
// "Uptime: …" line, "<value> <label>" lines and a final "success".
func (h *siteHandler) stats(format string) []byte {
	list := h.statList()
	var b []byte
	if format == formatText {
		for _, s := range list {
			if s.label == "uptime" {
				d := s.n
				b = fmt.Appendf(b, "Uptime: %d days, %02d:%02d:%02d\n", d/86400, d/3600%24, d/60%60, d%60)
			}
		}
		for _, s := range list {
			if s.typ == "string" || s.label == "uptime" {
				continue
			}
			b = strconv.AppendInt(b, s.n, 10)
			b = append(b, ' ')
			b = append(b, s.label...)
			b = append(b, '\n')
		}
		return append(b, success...)
	}
	b = append(b, '{')
	for i, s := range list {
		if i > 0 {
			b = append(b, ',')
		}
		b = appendJSONString(b, s.label)
		b = append(b, `:{"type":`...)
		b = appendJSONString(b, s.typ)
		b = append(b, `,"value":`...)
		if s.typ == "string" {
			b = appendJSONString(b, s.s)
		} else {
			b = strconv.AppendInt(b, s.n, 10)
		}
		b = append(b, '}')
	}
	return append(b, "}\n"...)
}

// userReport answers get=user&key=<passkey>. JSON: the seven keys OPS
// Gazelle reads, booleans as 0/1. Text: "<n> leeching", "<n> seeding",
// "success", or "success" alone for an unknown user, as Ocelot 1.0 did.
func (h *siteHandler) userReport(w http.ResponseWriter, q map[string]string, format string) {
	passkey, given := q["key"]
	u, known := h.p.User(passkey)
	if format == formatText {
		if !known {
			reply(w, success)
			return
		}
		seeding, leeching := h.p.UserActivity(u.ID)
		reply(w, fmt.Appendf(nil, "%d leeching\n%d seeding\n%s", leeching, seeding, success))
		return
	}
	switch {
	case !given || passkey == "":
		fail(w, "Announce key missing")
		return
	case !known:
		fail(w, "Announce key not found")
		return
	}
	seeding, leeching := h.p.UserActivity(u.ID)
	b := fmt.Appendf(nil, `{"id":%d,"leeching":%d,"seeding":%d,"deleted":0,"protected":%d,"can_leech":%d,"traced":%d}`+"\n",
		u.ID, leeching, seeding, b2i(u.Protected), b2i(u.CanLeech), b2i(h.isTraced(passkey)))
	reply(w, b)
}

// torrentReport answers OPS's get=torrent&info_hash=<hash> with a JSON
// object of nine keys. last_selected_seeder is 0: the tracker's peer
// selection keeps no round-robin position.
func (h *siteHandler) torrentReport(w http.ResponseWriter, q map[string]string) {
	a, failure := h.lookupTorrent(q)
	if failure != "" {
		fail(w, failure)
		return
	}
	lastFlushed := int64(0)
	if !a.LastFlushed.IsZero() {
		lastFlushed = a.LastFlushed.Unix()
	}
	b := fmt.Appendf(nil, `{"id":%d,"free":%d,"completed":%d,"balance":%d,"last_flushed":%d,"last_selected_seeder":0`,
		a.Torrent.ID, a.Torrent.Leech, a.Torrent.Snatches, a.Balance, lastFlushed)
	b = append(b, `,"seeder_list":`...)
	b = appendIDs(b, a.Seeders)
	b = append(b, `,"leecher_list":`...)
	b = appendIDs(b, a.Leechers)
	b = append(b, `,"fltoken_list":`...)
	b = appendIDs(b, h.p.TokenHolders(a.Torrent.ID))
	reply(w, append(b, "}\n"...))
}

// promStats answers get=prom_stats in the Prometheus text format with the
// tracker's own metric names (Ocelot's ocelot_* series describe its
// internals).
func (h *siteHandler) promStats() []byte {
	c := h.p.Counters()
	var b []byte
	metric := func(name, typ, help string, v int64) {
		b = fmt.Appendf(b, "# HELP %s %s\n# TYPE %s %s\n%s %d\n", name, help, name, typ, name, v)
	}
	metric("chihaya_announces_total", "counter", "Successful announces since start.", int64(c.Announces))
	metric("chihaya_failed_announces_total", "counter", "Refused announces since start.", int64(c.FailedAnnounces))
	metric("chihaya_scrapes_total", "counter", "Scrapes since start.", int64(c.Scrapes))
	metric("chihaya_seeders", "gauge", "Live seeders of registered torrents.", int64(c.Seeders))
	metric("chihaya_leechers", "gauge", "Live leechers of registered torrents.", int64(c.Leechers))
	b = append(b, "# HELP chihaya_storage_pending_rows Rows waiting to be written, by kind.\n# TYPE chihaya_storage_pending_rows gauge\n"...)
	for _, p := range []struct {
		kind string
		n    int
	}{
		{"users", c.Pending.Users}, {"torrents", c.Pending.Torrents}, {"peers", c.Pending.Peers},
		{"snatches", c.Pending.Snatches}, {"tokens", c.Pending.Tokens}, {"expired_tokens", c.Pending.ExpiredTokens},
	} {
		b = fmt.Appendf(b, "chihaya_storage_pending_rows{kind=%q} %d\n", p.kind, p.n)
	}
	metric("chihaya_gazelle_bad_secrets_total", "counter", "Site calls with a wrong secret.", int64(h.badSite.Load()+h.badReport.Load()))
	return b
}

// memoryText answers get=jemalloc, which Gazelle shows verbatim on its
// memory page: the Go runtime's figures, since there is no jemalloc.
func memoryText() []byte {
	var m runtime.MemStats
	runtime.ReadMemStats(&m)
	return fmt.Appendf(nil, "Go runtime memory (no jemalloc in this tracker)\n"+
		"heap in use: %d\nheap allocated: %d\nheap objects: %d\nheap idle: %d\nheap released: %d\n"+
		"stacks: %d\nobtained from the OS: %d\ngarbage collections: %d\ngoroutines: %d\n",
		m.HeapInuse, m.HeapAlloc, m.HeapObjects, m.HeapIdle, m.HeapReleased,
		m.StackInuse, m.Sys, m.NumGC, runtime.NumGoroutine())
}

func appendIDs(b []byte, ids []uint32) []byte {
	b = append(b, '[')
	for i, id := range ids {
		if i > 0 {
			b = append(b, ',')
		}
		b = strconv.AppendUint(b, uint64(id), 10)
	}
	return append(b, ']')
}

func appendJSONString(b []byte, s string) []byte {
	q, _ := json.Marshal(s)
	return append(b, q...)
}

func b2i(v bool) int {
	if v {
		return 1
	}
	return 0
}

// version names the tracker in the stats report.
func version() string {
	if bi, ok := debug.ReadBuildInfo(); ok && bi.Main.Version != "" {
		return "chihaya " + bi.Main.Version
	}
	return "chihaya"
}
