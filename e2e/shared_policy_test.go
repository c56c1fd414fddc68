//go:build linux

package e2e

import (
	"crypto/rand"
	"fmt"
	"net"
	"strconv"
	"strings"
	"testing"
	"time"
)

// TestSiteChangesAcrossInstances runs two private trackers on one Gazelle
// database (the ops schema) that share one Redis, as a site behind a load
// balancer would, and sends each of Gazelle's update calls to one instance
// only, as Gazelle does (raw HTTP/1.1 without a Host header): the change
// must take effect on the other instance within a second. Neither tracker
// reloads from the database during the test, so the other instance can
// only learn of a change through Redis.
func TestSiteChangesAcrossInstances(t *testing.T) {
	if testing.Short() {
		t.Skip("end-to-end test skipped in -short mode")
	}
	db := newGazelleDB(t)
	redisAddr, prefix := sharedRedis(t)
	site := gzSite{sitePassword: gzSecret(), reportPassword: gzSecret()}
	configure := func(cfg map[string]any, port int) {
		withRedis(redisAddr, prefix)(cfg, port)
		cfg["storage"] = map[string]any{
			"driver": "gazelle",
			"config": map[string]any{
				"dsn":             db.dsn,
				"dialect":         "ops",
				"site_password":   site.sitePassword,
				"report_password": site.reportPassword,
			},
			"flush_interval":  "1s",
			"reload_interval": "0s",
		}
	}
	a, b := startTracker(t, configure), startTracker(t, configure)
	siteA, siteB := site, site
	siteA.addr = net.JoinHostPort("127.0.0.1", strconv.Itoa(a.port))
	siteB.addr = net.JoinHostPort("127.0.0.1", strconv.Itoa(b.port))

	urlA := func(p string) string { return a.url("http", "127.0.0.1", p) }
	urlB := func(p string) string { return b.url("http", "127.0.0.1", p) }

	// Polling is done through the site's report calls, which ask the
	// policy directly: refused announces would spend the address's
	// bad-request budget.

	// add_user to one instance makes the account known to the other. A
	// tracker subscribes in the background once it serves, so the first
	// account may be sent before the other is listening: up to a few
	// are tried, each new to both trackers (created after they loaded).
	var user gzUser
	for _, c := range []struct {
		name     string
		from, to gzSite
	}{{"A to B", siteA, siteB}, {"B to A", siteB, siteA}} {
		deadline := time.Now().Add(10 * time.Second)
		for {
			user = db.addUser(t)
			c.from.update(t, fmt.Sprintf("action=add_user&passkey=%s&id=%d&visible=1", user.passkey, user.id))
			if got := waitFor(time.Second, func() string { return c.to.reportTo(t, "get=user&format=json&key="+user.passkey) }, "known"); got == "known" {
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("add_user %s: the other instance does not know the user after 10s", c.name)
			}
		}
	}

	tt := &testTorrent{size: 1 << 20}
	rand.Read(tt.infoHash[:])
	torrentQuery := "get=torrent&info_hash=" + escapeBytes(tt.infoHash[:])
	if got := gzFailureReason(t, announceURL(urlB, user, tt.infoHash)); got != "Unregistered torrent" {
		t.Fatalf("before add_torrent, B answers %q, want Unregistered torrent", got)
	}

	// add_torrent to A: the torrent is announceable on B.
	db.addTorrent(t, siteA, tt)
	if got := waitFor(time.Second, func() string { return siteB.reportTo(t, torrentQuery) }, "known"); got != "known" {
		t.Fatalf("after add_torrent to A, B's torrent report says %q after 1s", got)
	}
	if got := gzFailureReason(t, announceURL(urlB, user, tt.infoHash)); got != "" {
		t.Fatalf("after add_torrent to A, B answers %q", got)
	}
	if got := gzFailureReason(t, announceURL(urlA, user, tt.infoHash)); got != "" {
		t.Fatalf("after add_torrent to A, A answers %q", got)
	}

	// update_torrent to A: B's torrent is freeleech.
	siteA.update(t, "action=update_torrent&freetorrent=1&info_hash="+escapeBytes(tt.infoHash[:]))
	free := func() string {
		_, payload := gzRawGet(t, siteB.addr, "/"+siteB.reportPassword+"/report?"+torrentQuery)
		return payload
	}
	if got := waitFor(time.Second, func() string {
		if p := free(); strings.Contains(p, `"free":1,`) {
			return "free"
		}
		return ""
	}, "free"); got != "free" {
		t.Errorf("after update_torrent to A, B's torrent report is %q after 1s, want free 1", free())
	}

	// update_announce_interval to B: A tells clients the new interval.
	siteB.update(t, "action=update_announce_interval&new_announce_interval=1234")
	if got := waitFor(time.Second, func() string { return announceInterval(t, announceURL(urlA, user, tt.infoHash)) }, "1234"); got != "1234" {
		t.Errorf("after update_announce_interval to B, A's interval is %s after 1s, want 1234", got)
	}

	// delete_torrent to B: A refuses the torrent.
	siteB.update(t, "action=delete_torrent&info_hash="+escapeBytes(tt.infoHash[:]))
	if got := waitFor(time.Second, func() string { return siteA.reportTo(t, torrentQuery) }, "Info hash not found"); got != "Info hash not found" {
		t.Fatalf("after delete_torrent to B, A's torrent report says %q after 1s", got)
	}
	if got := gzFailureReason(t, announceURL(urlA, user, tt.infoHash)); got != "Unregistered torrent" {
		t.Errorf("after delete_torrent to B, A answers %q, want Unregistered torrent", got)
	}
	if got := gzFailureReason(t, announceURL(urlB, user, tt.infoHash)); got != "Unregistered torrent" {
		t.Errorf("after delete_torrent to B, B answers %q, want Unregistered torrent", got)
	}
}

// reportTo asks for a JSON report (user or torrent) and returns "known"
// for an object, else the failure reason.
func (s gzSite) reportTo(t *testing.T, query string) string {
	t.Helper()
	_, payload := gzRawGet(t, s.addr, "/"+s.reportPassword+"/report?"+query)
	if strings.HasPrefix(payload, `{"id":`) {
		return "known"
	}
	v, err := bdecode([]byte(payload))
	if d, ok := v.(map[string]any); err == nil && ok {
		if reason, ok := d["failure reason"].(string); ok {
			return reason
		}
	}
	return payload
}

// announceURL is a started announce by u for ih, on the tracker whose URLs
// trackerURL makes.
func announceURL(trackerURL func(path string) string, u gzUser, ih [20]byte) string {
	return trackerURL("/"+u.passkey+"/announce") + "?info_hash=" + escapeBytes(ih[:]) +
		"&peer_id=-E2E001-instances001&port=40001&uploaded=0&downloaded=0&left=1000&compact=1&event=started"
}

// announceInterval announces and returns the interval of the answer, or
// its failure reason.
func announceInterval(t *testing.T, u string) string {
	t.Helper()
	body, err := httpGet(u)
	if err != nil {
		t.Fatal(err)
	}
	v, err := bdecode(body)
	if err != nil {
		t.Fatalf("announce response %q: %v", body, err)
	}
	d, _ := v.(map[string]any)
	if reason, ok := d["failure reason"].(string); ok {
		return "failure: " + reason
	}
	n, _ := d["interval"].(int64)
	return strconv.FormatInt(n, 10)
}

// waitFor calls f until it returns want or d has passed, and returns its
// last answer.
func waitFor(d time.Duration, f func() string, want string) string {
	deadline := time.Now().Add(d)
	for {
		got := f()
		if got == want || time.Now().After(deadline) {
			return got
		}
		time.Sleep(20 * time.Millisecond)
	}
}
