package admin

import (
	"bytes"
	"compress/gzip"
	"encoding/hex"
	"io"
	"net/http"
	"slices"
	"strconv"
	"strings"

	"github.com/chihaya/chihaya/bencode"
	"github.com/chihaya/chihaya/bittorrent"
)

type scrapeFormat int

const (
	bencodeFormat scrapeFormat = iota
	jsonFormat
)

// fullScrape serves every swarm's counts: bencoded as a BEP 48 scrape
// answer (files keyed by raw hash) or as JSON (keyed by hex hash),
// gzip-compressed when the client accepts it, streamed as it is written.
// The swarms are listed first and sorted, since a bencoded dictionary's
// keys must be; that costs 32 bytes per swarm for the length of the
// request.
func (s *Server) fullScrape(format scrapeFormat) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		var all []bittorrent.Scrape
		err := s.cfg.Walker.Walk(r.Context(), func(sc bittorrent.Scrape) error {
			all = append(all, sc)
			return nil
		})
		if err != nil {
			s.log.Error("full scrape failed", "err", err)
			http.Error(w, "listing the swarms failed", http.StatusInternalServerError)
			return
		}
		slices.SortFunc(all, func(a, b bittorrent.Scrape) int { return bytes.Compare(a.InfoHash[:], b.InfoHash[:]) })

		var out io.Writer = w
		if strings.Contains(r.Header.Get("Accept-Encoding"), "gzip") {
			w.Header().Set("Content-Encoding", "gzip")
			gz := gzip.NewWriter(w)
			defer gz.Close()
			out = gz
		}
		if format == jsonFormat {
			w.Header().Set("Content-Type", "application/json")
			writeJSONScrape(out, all)
		} else {
			w.Header().Set("Content-Type", "text/plain; charset=utf-8")
			writeBencodeScrape(out, all)
		}
	}
}

// flushEvery is how many swarms go into one write.
const flushEvery = 1024

func writeBencodeScrape(w io.Writer, all []bittorrent.Scrape) {
	buf := make([]byte, 0, 64*flushEvery)
	buf = append(buf, bencode.Dict)
	buf = bencode.AppendKey(buf, "files")
	buf = append(buf, bencode.Dict)
	for i, sc := range all {
		buf = bencode.AppendBytes(buf, sc.InfoHash[:])
		buf = append(buf, bencode.Dict)
		buf = bencode.AppendKey(buf, "complete")
		buf = bencode.AppendUint(buf, uint64(sc.Complete))
		buf = bencode.AppendKey(buf, "downloaded")
		buf = bencode.AppendUint(buf, uint64(sc.Snatches))
		buf = bencode.AppendKey(buf, "incomplete")
		buf = bencode.AppendUint(buf, uint64(sc.Incomplete))
		buf = append(buf, bencode.End)
		if i%flushEvery == flushEvery-1 {
			if _, err := w.Write(buf); err != nil {
				return
			}
			buf = buf[:0]
		}
	}
	buf = append(buf, bencode.End, bencode.End)
	_, _ = w.Write(buf)
}

func writeJSONScrape(w io.Writer, all []bittorrent.Scrape) {
	buf := make([]byte, 0, 128*flushEvery)
	buf = append(buf, `{"files":{`...)
	for i, sc := range all {
		if i > 0 {
			buf = append(buf, ',')
		}
		buf = append(buf, '"')
		buf = hex.AppendEncode(buf, sc.InfoHash[:])
		buf = append(buf, `":{"complete":`...)
		buf = strconv.AppendUint(buf, uint64(sc.Complete), 10)
		buf = append(buf, `,"downloaded":`...)
		buf = strconv.AppendUint(buf, uint64(sc.Snatches), 10)
		buf = append(buf, `,"incomplete":`...)
		buf = strconv.AppendUint(buf, uint64(sc.Incomplete), 10)
		buf = append(buf, '}')
		if i%flushEvery == flushEvery-1 {
			if _, err := w.Write(buf); err != nil {
				return
			}
			buf = buf[:0]
		}
	}
	buf = append(buf, "}}\n"...)
	_, _ = w.Write(buf)
}
