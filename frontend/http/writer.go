package http

import (
	"net/netip"
	"time"

	"github.com/chihaya/chihaya/bencode"
	"github.com/chihaya/chihaya/bittorrent"
)

// appendFailure appends a bencoded failure response.
func appendFailure(dst []byte, reason string) []byte {
	dst = append(dst, bencode.Dict)
	dst = bencode.AppendKey(dst, "failure reason")
	dst = bencode.AppendString(dst, reason)
	return append(dst, bencode.End)
}

// appendAnnounce appends the bencoded announce response. The keys are
// written in the sorted order BEP 3 requires.
func appendAnnounce(dst []byte, req *bittorrent.AnnounceRequest, resp *bittorrent.AnnounceResponse) []byte {
	dst = append(dst, bencode.Dict)
	dst = bencode.AppendKey(dst, "complete")
	dst = bencode.AppendUint(dst, uint64(resp.Complete))
	dst = bencode.AppendKey(dst, "downloaded")
	dst = bencode.AppendUint(dst, uint64(resp.Snatches))
	if req.Source.IsValid() {
		// BEP 24: the address the tracker saw, so a client can learn
		// its public address.
		dst = bencode.AppendKey(dst, "external ip")
		dst = appendAddrBytes(dst, req.Source)
	}
	dst = bencode.AppendKey(dst, "incomplete")
	dst = bencode.AppendUint(dst, uint64(resp.Incomplete))
	dst = bencode.AppendKey(dst, "interval")
	dst = bencode.AppendInt(dst, seconds(resp.Interval))
	dst = bencode.AppendKey(dst, "min interval")
	dst = bencode.AppendInt(dst, seconds(resp.MinInterval))
	dst = bencode.AppendKey(dst, "peers")
	if req.Compact {
		dst = bencode.AppendBytes(dst, resp.Peers4.Compact)
		// BEP 7: IPv6 peers travel in their own key; it is sent to
		// every client that has an IPv6 endpoint.
		if req.IPv6.IsValid() {
			dst = bencode.AppendKey(dst, "peers6")
			dst = bencode.AppendBytes(dst, resp.Peers6.Compact)
		}
	} else {
		// The dictionary model (BEP 3) carries both families in one
		// list, each address as text.
		dst = append(dst, bencode.List)
		dst = appendPeerDicts(dst, &resp.Peers4, req.NoPeerID)
		dst = appendPeerDicts(dst, &resp.Peers6, req.NoPeerID)
		dst = append(dst, bencode.End)
	}
	return append(dst, bencode.End)
}

func seconds(d time.Duration) int64 { return int64(d / time.Second) }

func appendAddrBytes(dst []byte, a netip.Addr) []byte {
	if a.Is4() {
		b := a.As4()
		return bencode.AppendBytes(dst, b[:])
	}
	b := a.As16()
	return bencode.AppendBytes(dst, b[:])
}

func appendPeerDicts[A [4]byte | [16]byte](dst []byte, peers *bittorrent.Peers[A], noPeerID bool) []byte {
	var text [64]byte
	for i := range peers.Len() {
		ap := peers.At(i)
		dst = append(dst, bencode.Dict)
		dst = bencode.AppendKey(dst, "ip")
		dst = bencode.AppendBytes(dst, ap.Addr().AppendTo(text[:0]))
		// A list without ids comes from a cache that keeps none.
		if id, ok := peers.ID(i); ok && !noPeerID {
			dst = bencode.AppendKey(dst, "peer id")
			dst = bencode.AppendBytes(dst, id[:])
		}
		dst = bencode.AppendKey(dst, "port")
		dst = bencode.AppendUint(dst, uint64(ap.Port()))
		dst = append(dst, bencode.End)
	}
	return dst
}

// appendScrape appends the bencoded scrape response (BEP 48). files must be
// sorted by hash without repeats, as the tracker returns them.
func appendScrape(dst []byte, resp *bittorrent.ScrapeResponse) []byte {
	dst = append(dst, bencode.Dict)
	dst = bencode.AppendKey(dst, "files")
	dst = append(dst, bencode.Dict)
	for i := range resp.Files {
		f := &resp.Files[i]
		dst = bencode.AppendBytes(dst, f.InfoHash[:])
		dst = append(dst, bencode.Dict)
		dst = bencode.AppendKey(dst, "complete")
		dst = bencode.AppendUint(dst, uint64(f.Complete))
		dst = bencode.AppendKey(dst, "downloaded")
		dst = bencode.AppendUint(dst, uint64(f.Snatches))
		dst = bencode.AppendKey(dst, "incomplete")
		dst = bencode.AppendUint(dst, uint64(f.Incomplete))
		dst = append(dst, bencode.End)
	}
	return append(dst, bencode.End, bencode.End)
}
