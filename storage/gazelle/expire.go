package gazelle

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strconv"

	"github.com/chihaya/chihaya/storage"
)

// maxTokensParam bounds the tokens= value of one callback. Ocelot sends its
// buffer once it passes 350 characters; staying under that keeps every
// request within what Gazelle and any proxy in front of it already accept.
const maxTokensParam = 350

// ExpireTokens tells the site that these tokens are used up (their holder
// completed the torrent), as Ocelot does: GET
// {site_url}tools.php?key=<site_password>&type=expiretoken&action=ocelot&tokens=U:T,U:T
// split into as many requests as keep each tokens value under 350
// characters. Only HTTP 200 counts as done; any other status or a
// transport error is returned, and the caller retries the whole batch
// (expiring a token twice is harmless). Gazelle accepts the call only
// from the address it knows as TRACKER_HOST.
//
// Without site_url, the tokens are marked expired in users_freeleeches
// directly, which is what the site's handler does apart from clearing its
// cache. In readonly mode nothing is sent: a test tracker must not use up
// production tokens.
func (s *Store) ExpireTokens(ctx context.Context, tokens []storage.Token) error {
	if s.cfg.readonly || len(tokens) == 0 {
		return nil
	}
	if s.cfg.siteURL == "" {
		return s.expireTokensInDB(ctx, tokens)
	}
	for _, param := range tokenParams(tokens) {
		if err := s.callSite(ctx, param); err != nil {
			return err
		}
	}
	return nil
}

// tokenParams joins the tokens as "user:torrent" items separated by commas,
// starting a new value whenever the next item would take the value past
// maxTokensParam characters.
func tokenParams(tokens []storage.Token) []string {
	var (
		out []string
		buf []byte
	)
	for _, t := range tokens {
		item := strconv.AppendUint(nil, uint64(t.UserID), 10)
		item = append(item, ':')
		item = strconv.AppendUint(item, uint64(t.TorrentID), 10)
		if len(buf) > 0 && len(buf)+1+len(item) > maxTokensParam {
			out = append(out, string(buf))
			buf = buf[:0]
		}
		if len(buf) > 0 {
			buf = append(buf, ',')
		}
		buf = append(buf, item...)
	}
	if len(buf) > 0 {
		out = append(out, string(buf))
	}
	return out
}

func (s *Store) callSite(ctx context.Context, tokens string) error {
	// The query is written out as Ocelot sends it: the colons and commas
	// of the tokens value are not escaped.
	u := s.cfg.siteURL + "tools.php?key=" + s.cfg.sitePassword + "&type=expiretoken&action=ocelot&tokens=" + tokens
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u, nil)
	if err != nil {
		return fmt.Errorf("gazelle: expire tokens: %w", err)
	}
	resp, err := s.http.Do(req)
	if err != nil {
		// A *url.Error's text holds the URL, and so the site password:
		// report only its cause.
		var ue *url.Error
		if errors.As(err, &ue) {
			err = ue.Err
		}
		return fmt.Errorf("gazelle: expire tokens: request to %stools.php failed: %w", s.cfg.siteURL, err)
	}
	// Draining the body lets the connection be reused.
	_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 64<<10))
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("gazelle: expire tokens: %stools.php answered %s", s.cfg.siteURL, resp.Status)
	}
	return nil
}
