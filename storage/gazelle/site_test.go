package gazelle

import (
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http/httptest"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/chihaya/chihaya/bittorrent"
	"github.com/chihaya/chihaya/storage"
)

// siteServer serves the store's site handler on a real TCP listener behind
// tolerateMissingHost, so that Host-less requests reach it as they do through
// the tracker's HTTP server.
func siteServer(t *testing.T, s *Store, p storage.Policy) string {
	t.Helper()
	srv := httptest.NewUnstartedServer(s.SiteHandler(p))
	srv.Listener = tolerateMissingHost(srv.Listener)
	srv.Start()
	t.Cleanup(srv.Close)
	return srv.Listener.Addr().String()
}

// gazelleCall sends target the way Gazelle does, over a raw socket, and
// reads until the server closes: What.CD's Gazelle without a Host header,
// OPS's with one.
func gazelleCall(t *testing.T, addr, target string, withHost bool) string {
	t.Helper()
	conn, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	_ = conn.SetDeadline(time.Now().Add(5 * time.Second))
	req := "GET " + target + " HTTP/1.1\r\n"
	if withHost {
		req += "Host: tracker.example.org\r\n"
	}
	req += "Connection: Close\r\n\r\n"
	if _, err := io.WriteString(conn, req); err != nil {
		t.Fatal(err)
	}
	b, err := io.ReadAll(conn)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// gazelleReply is a reply cut up as Gazelle's PHP does it.
type gazelleReply struct {
	statusLine string
	headers    string
	// body is what follows the header up to the last newline; status
	// is what follows the last newline.
	body, status string
}

func parseGazelle(t *testing.T, raw string) gazelleReply {
	t.Helper()
	headEnd := strings.Index(raw, "\r\n\r\n")
	if headEnd < 0 {
		t.Fatalf("reply without a header end: %q", raw)
	}
	r := gazelleReply{headers: raw[:headEnd]}
	r.statusLine, _, _ = strings.Cut(raw, "\r\n")
	rest := raw[headEnd+4:]
	if last := strings.LastIndexByte(rest, '\n'); last >= 0 {
		r.body, r.status = rest[:last], rest[last+1:]
	} else {
		r.status = rest
	}
	if r.statusLine != "HTTP/1.1 200 OK" {
		t.Errorf("status line %q, want HTTP/1.1 200 OK", r.statusLine)
	}
	if !strings.Contains(r.headers, "\r\nContent-Length: ") || strings.Contains(r.headers, "chunked") {
		t.Errorf("reply header lacks an explicit length:\n%s", r.headers)
	}
	return r
}

// rawurlencode encodes like PHP's rawurlencode.
func rawurlencode(b []byte) string {
	var sb strings.Builder
	for _, c := range b {
		if unreserved(c) {
			sb.WriteByte(c)
		} else {
			fmt.Fprintf(&sb, "%%%02X", c)
		}
	}
	return sb.String()
}

var (
	// h1 has bytes that need escaping; h2 holds a '+', sent literally
	// to check that it stays a plus.
	h1 = bittorrent.InfoHash{0x00, 0xff, '%', '&', '=', ' ', 'a', 'B', '-', '~', 1, 2, 3, 4, 5, 6, 7, 8, 9, 10}
	h2 = bittorrent.InfoHash{'+', '+', 'x', 0x80, 0x81, 0x82, 0x83, 0x84, 0x85, 0x86, 0x87, 0x88, 0x89, 0x8a, 0x8b, 0x8c, 0x8d, 0x8e, 0x8f, 0x90}
)

func enc(h bittorrent.InfoHash) string {
	return strings.Replace(rawurlencode(h[:]), "%2B", "+", -1)
}

const (
	pk1 = "passkey1passkey1passkey1passkey1"
	pk2 = "passkey2passkey2passkey2passkey2"
	pk3 = "passkey3passkey3passkey3passkey3"
	pk4 = "passkey4passkey4passkey4passkey4"
)

// TestSiteUpdates replays every update action as both Gazelles send it and
// checks the reply and the calls on the policy.
func TestSiteUpdates(t *testing.T) {
	steps := []struct {
		query string
		calls []string
		check func(t *testing.T, p *recordingPolicy)
	}{
		{query: "action=add_torrent&info_hash=" + enc(h1) + "&id=7&freetorrent=0",
			calls: []string{fmt.Sprintf("PutTorrent(7, %s, normal)", h1)}},
		// A known torrent keeps its id; only its state changes.
		{query: "action=add_torrent&info_hash=" + enc(h1) + "&id=70&freetorrent=1",
			calls: []string{fmt.Sprintf("SetLeech(%s, freeleech)", h1)}},
		// A missing freetorrent means neutral, as in Ocelot.
		{query: "action=add_torrent&info_hash=" + enc(h2) + "&id=8",
			calls: []string{fmt.Sprintf("PutTorrent(8, %s, neutral)", h2)}},
		{query: "action=update_torrent&info_hash=" + enc(h1) + "&freetorrent=2",
			calls: []string{fmt.Sprintf("SetLeech(%s, neutral)", h1)}},
		{query: "action=update_torrents&info_hashes=" + enc(h1) + enc(h2) + "&freetorrent=0",
			calls: []string{fmt.Sprintf("SetLeech(%s, normal)", h1), fmt.Sprintf("SetLeech(%s, normal)", h2)}},
		{query: "action=add_user&passkey=" + pk1 + "&id=11&visible=0",
			calls: []string{"PutUser({ID:11 Passkey:" + pk1 + " CanLeech:true Protected:true})"}},
		{query: "action=add_user&passkey=" + pk2 + "&id=12",
			calls: []string{"PutUser({ID:12 Passkey:" + pk2 + " CanLeech:true Protected:false})"}},
		// A known passkey is left alone.
		{query: "action=add_user&passkey=" + pk2 + "&id=12&visible=0"},
		// update_user changes only what it was sent.
		{query: "action=update_user&passkey=" + pk1 + "&can_leech=0",
			calls: []string{"UpdateUser(" + pk1 + ", false, true)"}},
		{query: "action=update_user&passkey=" + pk1 + "&visible=1",
			calls: []string{"UpdateUser(" + pk1 + ", false, false)"}},
		{query: "action=update_user&passkey=" + pk1 + "&can_leech=1&visible=0",
			calls: []string{"UpdateUser(" + pk1 + ", true, true)"}},
		{query: "action=add_token&info_hash=" + enc(h1) + "&userid=11",
			calls: []string{"AddToken(11, 7)"}},
		{query: "action=remove_token&info_hash=" + enc(h1) + "&userid=11",
			calls: []string{"RemoveToken(11, 7)"}},
		{query: "action=add_token&info_hash=" + enc(h2) + "&userid=12",
			calls: []string{"AddToken(12, 8)"}},
		{query: "action=trace_user&passkey=" + pk2 + "&trace=1"},
		{query: "action=change_passkey&oldpasskey=" + pk2 + "&newpasskey=" + pk3,
			calls: []string{"ChangePasskey(" + pk2 + ", " + pk3 + ")"},
			check: func(t *testing.T, p *recordingPolicy) {
				if u, ok := p.User(pk3); !ok || u.ID != 12 {
					t.Errorf("user 12 not under the new passkey: %+v", u)
				}
			}},
		// Values are taken verbatim: the '+' is a plus.
		{query: "action=add_whitelist&peer_id=-TR+", calls: []string{`AddWhitelist("-TR+")`}},
		{query: "action=add_whitelist&peer_id=-DE", calls: []string{`AddWhitelist("-DE")`}},
		{query: "action=edit_whitelist&old_peer_id=-TR+&new_peer_id=-qB",
			calls: []string{`RemoveWhitelist("-TR+")`, `AddWhitelist("-qB")`},
			check: func(t *testing.T, p *recordingPolicy) {
				if !slices.Equal(p.whitelist, []string{"-DE", "-qB"}) {
					t.Errorf("whitelist %q", p.whitelist)
				}
			}},
		{query: "action=remove_whitelist&peer_id=-DE", calls: []string{`RemoveWhitelist("-DE")`}},
		{query: "action=update_announce_interval&new_announce_interval=2400", calls: []string{"SetAnnounceInterval(40m0s)"}},
		{query: "action=update_announce_interval&new_announce_interval=0"},
		{query: "action=update_announce_jitter&new_announce_jitter=120", calls: []string{"SetAnnounceJitter(2m0s)"}},
		{query: "action=remove_user&passkey=" + pk1, calls: []string{"RemoveUser(" + pk1 + ")"}},
		{query: "action=remove_users&passkeys=" + pk3 + pk4,
			calls: []string{"RemoveUser(" + pk3 + ")", "RemoveUser(" + pk4 + ")"}},
		{query: "action=delete_torrent&info_hash=" + enc(h2) + "&id=8&reason=3",
			calls: []string{fmt.Sprintf("DeleteTorrent(%s, 3)", h2)}},
		{query: "action=delete_torrent&info_hash=" + enc(h1) + "&id=7",
			calls: []string{fmt.Sprintf("DeleteTorrent(%s, -1)", h1)}},
		{query: "action=no_such_action&x=1"},
	}
	for _, style := range []struct {
		name     string
		withHost bool
	}{{"what", false}, {"ops", true}} {
		t.Run(style.name, func(t *testing.T) {
			p := newRecordingPolicy()
			addr := siteServer(t, storeWithoutDB(t, nil), p)
			for _, step := range steps {
				raw := gazelleCall(t, addr, "/"+testSitePassword+"/update?"+step.query, style.withHost)
				r := parseGazelle(t, raw)
				if r.status != "success" || r.body != "" {
					t.Errorf("%s: reply body %q status %q, want status \"success\"", step.query, r.body, r.status)
				}
				if got := p.takeCalls(); !slices.Equal(got, step.calls) {
					t.Errorf("%s:\n calls %q\n want  %q", step.query, got, step.calls)
				}
				if step.check != nil {
					step.check(t, p)
				}
			}
		})
	}
}

func TestSiteInfoTorrent(t *testing.T) {
	p := newRecordingPolicy()
	p.PutTorrent(storage.Torrent{ID: 7, InfoHash: h1, Leech: storage.Free})
	addr := siteServer(t, storeWithoutDB(t, nil), p)
	r := parseGazelle(t, gazelleCall(t, addr, "/"+testSitePassword+"/update?action=info_torrent&info_hash="+enc(h1), true))
	var got map[string]any
	if err := json.Unmarshal([]byte(r.body), &got); err != nil || got["id"] != 7.0 || got["free"] != 1.0 || got["hash"] != enc(h1) {
		t.Errorf("info_torrent: %q (%v)", r.body, err)
	}
	r = parseGazelle(t, gazelleCall(t, addr, "/"+testSitePassword+"/update?action=info_torrent&info_hash="+enc(h2), true))
	if err := json.Unmarshal([]byte(r.body), &got); err != nil || got["fail"] != 1.0 {
		t.Errorf("info_torrent of an unknown torrent: %q (%v)", r.body, err)
	}
}

const authFailure = "d14:failure reason22:Authentication failure8:intervali5400e12:min intervali5400ee"

func TestSiteAuthentication(t *testing.T) {
	p := newRecordingPolicy()
	addr := siteServer(t, storeWithoutDB(t, nil), p)
	for _, target := range []string{
		"/" + testReportPassword + "/update?action=remove_user&passkey=" + pk1, // the other secret
		"/" + strings.ToUpper(testSitePassword) + "/update?action=remove_user&passkey=" + pk1,
		"/" + testSitePassword[:31] + "/update?action=remove_user&passkey=" + pk1,
		"/" + testSitePassword + "/report?get=stats",
		"//update?action=remove_user",
	} {
		r := parseGazelle(t, gazelleCall(t, addr, target, false))
		if r.status != authFailure {
			t.Errorf("%s: %q, want %q", target, r.status, authFailure)
		}
	}
	if calls := p.takeCalls(); len(calls) != 0 {
		t.Errorf("refused calls changed the policy: %q", calls)
	}
	r := parseGazelle(t, gazelleCall(t, addr, "/"+testSitePassword+"/nothing", false))
	if !strings.Contains(r.status, "14:Invalid action") {
		t.Errorf("unknown path: %q", r.status)
	}

	// Empty secrets disable the calls.
	addr = siteServer(t, storeWithoutDB(t, map[string]any{"site_password": "", "report_password": ""}), p)
	for _, target := range []string{"//update?action=remove_user", "//report?get=stats"} {
		if r := parseGazelle(t, gazelleCall(t, addr, target, true)); r.status != authFailure {
			t.Errorf("disabled %s: %q", target, r.status)
		}
	}
}

func TestSiteReportsJSON(t *testing.T) {
	p := newRecordingPolicy()
	p.PutUser(storage.User{ID: 11, Passkey: pk1, CanLeech: true})
	p.PutUser(storage.User{ID: 12, Passkey: pk2, Protected: true})
	p.PutTorrent(storage.Torrent{ID: 7, InfoHash: h1, Leech: storage.Free, Snatches: 42})
	p.AddToken(storage.Token{UserID: 12, TorrentID: 7})
	p.activity[11] = [2]int{3, 1}
	p.swarms[h1] = storage.TorrentActivity{Seeders: []uint32{11, 13}, Leechers: []uint32{12}, Balance: -99, LastFlushed: time.Unix(1700000000, 0)}
	p.counters = storage.Counters{Started: time.Now().Add(-time.Hour), Announces: 100, FailedAnnounces: 5, Scrapes: 7, Seeders: 20, Leechers: 30,
		Pending: storage.Pending{Users: 1, Peers: 2}}
	s := storeWithoutDB(t, nil)
	addr := siteServer(t, s, p)
	report := func(query string) gazelleReply {
		return parseGazelle(t, gazelleCall(t, addr, "/"+testReportPassword+"/report?"+query, true))
	}
	decode := func(r gazelleReply) map[string]json.RawMessage {
		t.Helper()
		var m map[string]json.RawMessage
		if err := json.Unmarshal([]byte(r.body), &m); err != nil {
			t.Fatalf("body %q: %v", r.body, err)
		}
		if r.status != "" {
			t.Errorf("JSON reply does not end in a newline: status part %q", r.status)
		}
		return m
	}

	stats := decode(report("get=stats"))
	for label, want := range map[string]string{
		"announce interval":        `{"type":"number","value":1800}`,
		"announce jitter":          `{"type":"number","value":240}`,
		"successful announcements": `{"type":"number","value":100}`,
		"seeders tracked":          `{"type":"number","value":20}`,
		"leechers tracked":         `{"type":"number","value":30}`,
		"items in peer queue":      `{"type":"number","value":2}`,
	} {
		if string(stats[label]) != want {
			t.Errorf("stats %q = %s, want %s", label, stats[label], want)
		}
	}
	for _, label := range []string{"requests handled", "uptime", "version"} {
		if stats[label] == nil {
			t.Errorf("stats lack %q", label)
		}
	}

	user := decode(report("get=user&key=" + pk1))
	wantUser := map[string]string{"id": "11", "leeching": "1", "seeding": "3", "deleted": "0", "protected": "0", "can_leech": "1", "traced": "0"}
	if len(user) != len(wantUser) {
		t.Errorf("user report has %d keys, want exactly %d: %v", len(user), len(wantUser), user)
	}
	for k, v := range wantUser {
		if string(user[k]) != v {
			t.Errorf("user report %q = %s, want %s", k, user[k], v)
		}
	}
	if r := report("get=user"); !strings.Contains(r.status, "Announce key missing") {
		t.Errorf("user report without a key: %q", r.status)
	}
	if r := report("get=user&key=" + pk4); !strings.Contains(r.status, "Announce key not found") {
		t.Errorf("user report for an unknown key: %q", r.status)
	}

	tor := decode(report("get=torrent&info_hash=" + enc(h1)))
	wantTorrent := map[string]string{"id": "7", "free": "1", "completed": "42", "balance": "-99", "last_flushed": "1700000000",
		"last_selected_seeder": "0", "seeder_list": "[11,13]", "leecher_list": "[12]", "fltoken_list": "[12]"}
	if len(tor) != len(wantTorrent) {
		t.Errorf("torrent report has %d keys, want %d: %v", len(tor), len(wantTorrent), tor)
	}
	for k, v := range wantTorrent {
		if string(tor[k]) != v {
			t.Errorf("torrent report %q = %s, want %s", k, tor[k], v)
		}
	}
	if r := report("get=torrent&info_hash=" + enc(h2)); !strings.Contains(r.status, "Info hash not found") {
		t.Errorf("unknown torrent: %q", r.status)
	}
	if r := report("get=bogus"); !strings.Contains(r.status, "unrecognized report query") {
		t.Errorf("unknown report: %q", r.status)
	}
	if r := report("get=prom_stats"); !strings.Contains(r.body, "chihaya_announces_total 100\n") {
		t.Errorf("prom_stats: %q", r.body)
	}
	if r := report("get=jemalloc"); !strings.Contains(r.body, "heap in use: ") {
		t.Errorf("jemalloc: %q", r.body)
	}
}

func TestSiteReportsText(t *testing.T) {
	p := newRecordingPolicy()
	p.PutUser(storage.User{ID: 11, Passkey: pk1, CanLeech: true})
	p.activity[11] = [2]int{3, 1}
	p.counters = storage.Counters{Started: time.Now().Add(-(26*time.Hour + 3*time.Minute + 4*time.Second)), Seeders: 20, Leechers: 30}
	// The what dialect answers in What.CD's text form by default.
	addr := siteServer(t, storeWithoutDB(t, map[string]any{"dialect": "what"}), p)
	report := func(query string) gazelleReply {
		return parseGazelle(t, gazelleCall(t, addr, "/"+testReportPassword+"/report?"+query, false))
	}

	r := report("get=stats")
	if r.status != "success" {
		t.Errorf("stats status %q, want success", r.status)
	}
	lines := strings.Split(r.body, "\n")
	if lines[0] != "Uptime: 1 days, 02:03:04" {
		t.Errorf("first line %q", lines[0])
	}
	for _, want := range []string{"20 seeders tracked", "30 leechers tracked", "1800 announce interval"} {
		if !slices.Contains(lines, want) {
			t.Errorf("stats lack the line %q:\n%s", want, r.body)
		}
	}
	if r := report("get=user&key=" + pk1); r.body != "1 leeching\n3 seeding" || r.status != "success" {
		t.Errorf("user report %q / %q", r.body, r.status)
	}
	if r := report("get=user&key=" + pk4); r.body != "" || r.status != "success" {
		t.Errorf("unknown user: %q / %q, want just success", r.body, r.status)
	}
	if r := report("get=bogus"); r.body != "Invalid action" || r.status != "success" {
		t.Errorf("unknown report: %q / %q", r.body, r.status)
	}
	// format=json asks for OPS's form.
	if r := report("get=stats&format=json"); !strings.HasPrefix(r.body, "{") {
		t.Errorf("format=json: %q", r.body)
	}
}

func TestSiteTraceFlag(t *testing.T) {
	p := newRecordingPolicy()
	p.PutUser(storage.User{ID: 11, Passkey: pk1})
	addr := siteServer(t, storeWithoutDB(t, nil), p)
	call := func(path string) gazelleReply { return parseGazelle(t, gazelleCall(t, addr, path, true)) }
	traced := func(passkey string) string {
		var m map[string]int
		_ = json.Unmarshal([]byte(call("/"+testReportPassword+"/report?get=user&key="+passkey).body), &m)
		return fmt.Sprint(m["traced"])
	}
	call("/" + testSitePassword + "/update?action=trace_user&passkey=" + pk1 + "&trace=1")
	if traced(pk1) != "1" {
		t.Error("trace flag not reported")
	}
	call("/" + testSitePassword + "/update?action=change_passkey&oldpasskey=" + pk1 + "&newpasskey=" + pk2)
	if traced(pk2) != "1" {
		t.Error("trace flag lost with the passkey change")
	}
	call("/" + testSitePassword + "/update?action=trace_user&passkey=" + pk2 + "&trace=0")
	if traced(pk2) != "0" {
		t.Error("trace flag not cleared")
	}
}

func TestParseQuery(t *testing.T) {
	q := parseQuery("a=1&b=x+y&c=%41&&d&e=f=g&a=2&=z")
	for k, want := range map[string]string{"a": "2", "b": "x+y", "c": "%41", "d": "", "e": "f=g", "": "z"} {
		if got, ok := q[k]; !ok || got != want {
			t.Errorf("%q = %q (%v), want %q", k, got, ok, want)
		}
	}
	if got := string(percentDecode("%41+%zz%4")); got != "A+%zz%4" {
		t.Errorf("percentDecode = %q", got)
	}
	if hs := parseInfoHashes(enc(h1) + enc(h2) + "abc"); len(hs) != 2 || hs[0] != h1 || hs[1] != h2 {
		t.Errorf("parseInfoHashes = %v", hs)
	}
	if _, ok := parseInfoHash("%41"); ok {
		t.Error("a 1-byte hash parsed")
	}
	for in, want := range map[string]int64{"12": 12, "12abc": 12, "-3": -3, "+4": 4, "99999999999999999999": 1<<63 - 1} {
		if got, ok := leadingInt(in); !ok || got != want {
			t.Errorf("leadingInt(%q) = %d, %v", in, got, ok)
		}
	}
	for _, in := range []string{"", "abc", "-"} {
		if _, ok := leadingInt(in); ok {
			t.Errorf("leadingInt(%q) ok", in)
		}
	}
	for in, ok := range map[string]bool{"1": true, "4294967295": true, "4294967296": false, "0": false, "-1": false, "x": false} {
		if _, got := parseID(in); got != ok {
			t.Errorf("parseID(%q) ok = %v", in, got)
		}
	}
}

func TestDeletionLabels(t *testing.T) {
	for reason, want := range map[int]string{
		-1: "Unregistered torrent", 0: "Unregistered torrent: Dupe", 3: "Unregistered torrent: Bad Folder Names",
		22: "Unregistered torrent: Audience Recording", 23: "Unregistered torrent: ", -7: "Unregistered torrent",
	} {
		if got := DeletionMessage(reason); got != want {
			t.Errorf("DeletionMessage(%d) = %q, want %q", reason, got, want)
		}
	}
	if len(deletionLabels) != 23 {
		t.Errorf("%d labels, want 23 (codes 0 to 22)", len(deletionLabels))
	}
}
