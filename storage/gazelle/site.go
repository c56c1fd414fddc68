package gazelle

import (
	"crypto/subtle"
	"log/slog"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/chihaya/chihaya/bencode"
	"github.com/chihaya/chihaya/storage"
)

// SiteHandler returns the handler for the calls Gazelle makes to its
// tracker, applying them to p:
//
//	GET /<site_password>/update?action=<name>&…   changes (users, torrents, tokens, whitelist, interval)
//	GET /<report_password>/report?get=<what>&…    reports (stats, user, torrent, prom_stats, jemalloc)
//
// Replies are what Gazelle's own HTTP parsing expects: status 200, an
// explicit Content-Length, "success" for updates, JSON followed by a
// newline or text followed by a "success" line for reports (see
// report_format), and Ocelot's bencoded failure reasons. A Gazelle of the
// What.CD era sends no Host header; the tracker's HTTP server accepts
// that, net/http does not.
func (s *Store) SiteHandler(p storage.Policy) http.Handler {
	return &siteHandler{
		p:              p,
		sitePassword:   s.cfg.sitePassword,
		reportPassword: s.cfg.reportPassword,
		format:         s.cfg.reportFormat,
		log:            s.log,
		traced:         make(map[string]bool),
	}
}

type siteHandler struct {
	p                            storage.Policy
	sitePassword, reportPassword string
	format                       string
	log                          *slog.Logger

	// traced holds the passkeys Gazelle asked to trace (trace_user). The
	// Policy has no place for the flag, so the handler keeps it for the
	// user report.
	mu     sync.Mutex
	traced map[string]bool

	handled, badSite, badReport atomic.Uint64
}

// ServeHTTP serves /<secret>/update and /<secret>/report.
func (h *siteHandler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	h.handled.Add(1)
	rest, _ := strings.CutPrefix(r.URL.Path, "/")
	key, action, _ := strings.Cut(rest, "/")
	// Wrong secrets are counted for the stats report and logged at
	// debug level only: the port is public, and scanners would flood a
	// louder log.
	switch action {
	case "update":
		if !secretMatches(key, h.sitePassword) {
			h.badSite.Add(1)
			h.log.Debug("site update with a wrong secret", "remote", r.RemoteAddr)
			fail(w, "Authentication failure")
			return
		}
		h.update(w, parseQuery(r.URL.RawQuery))
	case "report":
		if !secretMatches(key, h.reportPassword) {
			h.badReport.Add(1)
			h.log.Debug("site report with a wrong secret", "remote", r.RemoteAddr)
			fail(w, "Authentication failure")
			return
		}
		h.report(w, parseQuery(r.URL.RawQuery))
	default:
		fail(w, "Invalid action")
	}
}

// secretMatches compares in constant time, so the answer's timing tells
// nothing about how much of a guess was right. An empty secret (the call
// is disabled) matches nothing.
func secretMatches(got, want string) bool {
	return want != "" && subtle.ConstantTimeCompare([]byte(got), []byte(want)) == 1
}

// fail writes Ocelot's failure reply: a bencoded failure reason with
// interval and min interval of 5400 s, status 200.
func fail(w http.ResponseWriter, reason string) {
	b := []byte{bencode.Dict}
	b = bencode.AppendKey(b, "failure reason")
	b = bencode.AppendString(b, reason)
	b = bencode.AppendKey(b, "interval")
	b = bencode.AppendInt(b, 5400)
	b = bencode.AppendKey(b, "min interval")
	b = bencode.AppendInt(b, 5400)
	b = append(b, bencode.End)
	reply(w, b)
}

// reply writes a 200 with an explicit length: Gazelle reads the raw bytes
// and does not undo chunked encoding.
func reply(w http.ResponseWriter, body []byte) {
	hd := w.Header()
	hd.Set("Content-Type", "text/plain")
	hd.Set("Content-Length", strconv.Itoa(len(body)))
	w.WriteHeader(http.StatusOK)
	_, _ = w.Write(body)
}

var success = []byte("success")

// update applies one update action. Every action answers "success", also
// an unknown one and one naming an unknown user or torrent: Ocelot does,
// and Gazelle retries anything else, which cannot help.
func (h *siteHandler) update(w http.ResponseWriter, q map[string]string) {
	action := q["action"]
	switch action {
	case "add_torrent":
		h.addTorrent(q)
	case "update_torrent":
		hash, ok := parseInfoHash(q["info_hash"])
		if !ok || !h.p.SetLeech(hash, leechParam(q)) {
			h.log.Info("update_torrent: unknown torrent", "info_hash", q["info_hash"])
		}
	case "update_torrents":
		l := leechParam(q)
		for _, hash := range parseInfoHashes(q["info_hashes"]) {
			if !h.p.SetLeech(hash, l) {
				h.log.Info("update_torrents: unknown torrent", "info_hash", hash)
			}
		}
	case "delete_torrent":
		hash, ok := parseInfoHash(q["info_hash"])
		if !ok {
			h.log.Info("delete_torrent: invalid info_hash", "info_hash", q["info_hash"])
			break
		}
		reason := NoReason
		if n, ok := leadingInt(q["reason"]); ok && n >= NoReason && n <= 1<<20 {
			reason = int(n)
		}
		h.p.DeleteTorrent(hash, reason)
	case "add_token", "remove_token":
		h.token(action, q)
	case "add_user":
		h.addUser(q)
	case "update_user":
		h.updateUser(q)
	case "remove_user":
		h.removeUser(q["passkey"])
	case "remove_users":
		keys := q["passkeys"]
		for len(keys) >= secretLen {
			h.removeUser(keys[:secretLen])
			keys = keys[secretLen:]
		}
	case "change_passkey":
		old, nw := q["oldpasskey"], q["newpasskey"]
		if nw == "" || !h.p.ChangePasskey(old, nw) {
			h.log.Info("change_passkey: unknown passkey")
			break
		}
		h.mu.Lock()
		if h.traced[old] {
			delete(h.traced, old)
			h.traced[nw] = true
		}
		h.mu.Unlock()
	case "add_whitelist":
		h.p.AddWhitelist(q["peer_id"])
	case "edit_whitelist":
		h.p.RemoveWhitelist(q["old_peer_id"])
		h.p.AddWhitelist(q["new_peer_id"])
	case "remove_whitelist":
		h.p.RemoveWhitelist(q["peer_id"])
	case "update_announce_interval":
		// Zero or less would have every client announce in a loop;
		// Ocelot takes it, we keep the interval in force.
		if n, ok := leadingInt(q["new_announce_interval"]); ok && n > 0 {
			h.p.SetAnnounceInterval(time.Duration(min(n, 1<<31)) * time.Second)
		} else {
			h.log.Info("update_announce_interval: ignored", "value", q["new_announce_interval"])
		}
	case "update_announce_jitter":
		if n, ok := leadingInt(q["new_announce_jitter"]); ok && n >= 0 {
			h.p.SetAnnounceJitter(time.Duration(min(n, 1<<31)) * time.Second)
		} else {
			h.log.Info("update_announce_jitter: ignored", "value", q["new_announce_jitter"])
		}
	case "info_torrent":
		reply(w, h.infoTorrent(q["info_hash"]))
		return
	case "trace_user":
		h.traceUser(q)
	default:
		h.log.Info("unknown update action", "action", action)
	}
	reply(w, success)
}

// leechParam maps freetorrent as Ocelot does for updates: '0' normal, '1'
// freeleech, anything else (a missing parameter too) neutral.
func leechParam(q map[string]string) storage.Leech {
	switch q["freetorrent"] {
	case "0":
		return storage.Normal
	case "1":
		return storage.Free
	}
	return storage.Neutral
}

// addTorrent registers a torrent unless its hash is known, and in both cases
// sets its freeleech state, as Ocelot does (OPS re-sends add_torrent to
// change it).
func (h *siteHandler) addTorrent(q map[string]string) {
	hash, ok := parseInfoHash(q["info_hash"])
	if !ok {
		h.log.Info("add_torrent: invalid info_hash", "info_hash", q["info_hash"])
		return
	}
	l := leechParam(q)
	if h.p.SetLeech(hash, l) {
		return
	}
	id, ok := parseID(q["id"])
	if !ok {
		h.log.Info("add_torrent: invalid id", "id", q["id"])
		return
	}
	h.p.PutTorrent(storage.Torrent{ID: id, InfoHash: hash, Leech: l, UpMultiplier: 1, DownMultiplier: 1})
}

func (h *siteHandler) token(action string, q map[string]string) {
	hash, ok := parseInfoHash(q["info_hash"])
	user, uok := parseID(q["userid"])
	if !ok || !uok {
		h.log.Info(action+": invalid parameters", "info_hash", q["info_hash"], "userid", q["userid"])
		return
	}
	t, ok := h.p.Torrent(hash)
	if !ok {
		h.log.Info(action+": unknown torrent", "info_hash", q["info_hash"])
		return
	}
	tok := storage.Token{UserID: user, TorrentID: t.ID}
	if action == "add_token" {
		h.p.AddToken(tok)
	} else {
		h.p.RemoveToken(tok)
	}
}

// addUser registers a user who may leech. A known passkey is left as it
// is, as in Ocelot (which only undeletes it).
func (h *siteHandler) addUser(q map[string]string) {
	passkey := q["passkey"]
	id, ok := parseID(q["id"])
	if passkey == "" || !ok {
		h.log.Info("add_user: invalid parameters", "id", q["id"])
		return
	}
	if _, known := h.p.User(passkey); known {
		return
	}
	h.p.PutUser(storage.User{ID: id, Passkey: passkey, CanLeech: true, Protected: q["visible"] == "0"})
}

// updateUser changes only the flags whose parameter was sent. Ocelot reads
// a missing parameter as can_leech=1 or visible=1, so What.CD's ratio
// watch, which sends can_leech alone, un-hid hidden users; Gazelle means
// "unchanged".
func (h *siteHandler) updateUser(q map[string]string) {
	passkey := q["passkey"]
	u, ok := h.p.User(passkey)
	if !ok {
		h.log.Info("update_user: unknown passkey")
		return
	}
	canLeech, protected := u.CanLeech, u.Protected
	if v, ok := q["can_leech"]; ok {
		canLeech = v != "0"
	}
	if v, ok := q["visible"]; ok {
		protected = v == "0"
	}
	h.p.UpdateUser(passkey, canLeech, protected)
}

func (h *siteHandler) removeUser(passkey string) {
	h.p.RemoveUser(passkey)
	h.mu.Lock()
	delete(h.traced, passkey)
	h.mu.Unlock()
}

// traceUser records the trace flag newer OPS Gazelle sets per user; it is
// shown in the user report (the tracker does not trace requests).
func (h *siteHandler) traceUser(q map[string]string) {
	passkey := q["passkey"]
	if _, ok := h.p.User(passkey); !ok {
		h.log.Info("trace_user: unknown passkey")
		return
	}
	h.mu.Lock()
	if q["trace"] == "1" {
		h.traced[passkey] = true
	} else {
		delete(h.traced, passkey)
	}
	h.mu.Unlock()
}

func (h *siteHandler) isTraced(passkey string) bool {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.traced[passkey]
}

// infoTorrent answers OPS Ocelot's info_torrent:
// {"hash":"<param>","id":N,"free":F} or {"hash":"<param>","fail":1}, one
// line. Ocelot writes the hash unquoted, which is not JSON; nothing in
// Gazelle calls it, so it is quoted here.
func (h *siteHandler) infoTorrent(param string) []byte {
	b := append([]byte(`{"hash":`), strconv.Quote(param)...)
	hash, ok := parseInfoHash(param)
	var t storage.Torrent
	if ok {
		t, ok = h.p.Torrent(hash)
	}
	if !ok {
		return append(b, `,"fail":1}`+"\n"...)
	}
	b = append(b, `,"id":`...)
	b = strconv.AppendUint(b, uint64(t.ID), 10)
	b = append(b, `,"free":`...)
	b = strconv.AppendUint(b, uint64(t.Leech), 10)
	return append(b, "}\n"...)
}

// lookupTorrent is for reports: the torrent named by info_hash.
func (h *siteHandler) lookupTorrent(q map[string]string) (storage.TorrentActivity, string) {
	param, ok := q["info_hash"]
	if !ok || param == "" {
		return storage.TorrentActivity{}, "Info hash missing"
	}
	hash, ok := parseInfoHash(param)
	if !ok {
		return storage.TorrentActivity{}, "Info hash not found"
	}
	a, ok := h.p.TorrentActivity(hash)
	if !ok {
		return storage.TorrentActivity{}, "Info hash not found"
	}
	return a, ""
}
