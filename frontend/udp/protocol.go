package udp

import (
	"bytes"
	"encoding/binary"
	"net/netip"
	"time"
	"unsafe"

	"github.com/chihaya/chihaya/bittorrent"
)

// The wire format of BEP 15: every field big-endian, every request opening
// with connection_id (8 bytes), action (4) and transaction_id (4).

// protocolID is the connection_id of a connect request.
const protocolID = 0x41727101980

// Actions.
const (
	actionConnect  = 0
	actionAnnounce = 1
	actionScrape   = 2
	actionError    = 3
)

const (
	headerLen      = 16
	announceLen    = 98
	connectRespLen = 16
	// maxPacket is the largest request read; anything longer is dropped.
	// An announce with BEP 41 options fits easily.
	maxPacket = 1500
)

// header is the common start of every request.
type header struct {
	connID uint64
	action uint32
	txID   uint32
}

func parseHeader(p []byte) header {
	return header{
		connID: binary.BigEndian.Uint64(p[0:8]),
		action: binary.BigEndian.Uint32(p[8:12]),
		txID:   binary.BigEndian.Uint32(p[12:16]),
	}
}

// announced returns the info hash and peer id of an announce packet;
// false for any other packet, or one too short to be an announce.
func announced(p []byte) (bittorrent.InfoHash, bittorrent.PeerID, bool) {
	if len(p) < announceLen || parseHeader(p).action != actionAnnounce {
		return bittorrent.InfoHash{}, bittorrent.PeerID{}, false
	}
	return bittorrent.InfoHash(p[16:36]), bittorrent.PeerID(p[36:56]), true
}

// announcedPasskey returns the passkey of an announce packet (one that
// announced accepts) as a view of p, when its path comes in the first
// BEP 41 URL data option; "" otherwise. It is for the batch hint, which
// copies nothing: a path in several pieces is left to parseAnnounce.
func announcedPasskey(p []byte) string {
	opts := p[announceLen:]
	for len(opts) > 0 && opts[0] == optionNOP {
		opts = opts[1:]
	}
	if len(opts) < 2 || opts[0] != optionURLData || len(opts) < 2+int(opts[1]) {
		return ""
	}
	return passkeyFromPath(opts[2 : 2+int(opts[1])])
}

// scrapedHashes returns the info hashes of a scrape packet, at most max of
// them, as 20-byte pieces of p; nil for any other packet.
func scrapedHashes(p []byte, max int) []byte {
	if len(p) < headerLen+20 || parseHeader(p).action != actionScrape {
		return nil
	}
	body := p[headerLen:]
	return body[:min(len(body)/20, max)*20]
}

// udpEvents maps BEP 15's event numbers to events.
var udpEvents = [...]bittorrent.Event{0: bittorrent.None, 1: bittorrent.Completed, 2: bittorrent.Started, 3: bittorrent.Stopped}

// parseAnnounce fills req from an announce packet (header included) and
// returns the IPv4 address the client named in its IP field (zero when it
// named none). req must be zeroed beforehand.
func parseAnnounce(p []byte, req *bittorrent.AnnounceRequest) (netip.Addr, error) {
	if len(p) < announceLen {
		return netip.Addr{}, bittorrent.ClientError("malformed announce: too short")
	}
	copy(req.InfoHash[:], p[16:36])
	copy(req.PeerID[:], p[36:56])
	req.Downloaded = binary.BigEndian.Uint64(p[56:64])
	req.Left = binary.BigEndian.Uint64(p[64:72])
	req.Uploaded = binary.BigEndian.Uint64(p[72:80])
	event := binary.BigEndian.Uint32(p[80:84])
	if event >= uint32(len(udpEvents)) {
		return netip.Addr{}, bittorrent.ClientError("invalid event")
	}
	req.Event = udpEvents[event]
	var named netip.Addr
	if ip := [4]byte(p[84:88]); ip != ([4]byte{}) {
		named = netip.AddrFrom4(ip)
	}
	req.Key = binary.BigEndian.Uint32(p[88:92])
	req.NumWant = int32(binary.BigEndian.Uint32(p[92:96]))
	if req.NumWant < 0 {
		req.NumWant = -1
	}
	req.Port = binary.BigEndian.Uint16(p[96:98])
	req.Compact = true

	path, err := urlData(p[announceLen:])
	if err != nil {
		return netip.Addr{}, err
	}
	req.Passkey = passkeyFromPath(path)
	return named, nil
}

// BEP 41 option types; every other type carries a length byte.
const (
	optionEnd     = 0x0
	optionNOP     = 0x1
	optionURLData = 0x2
)

// urlData reads the BEP 41 options after an announce and returns the path
// and query they carry ("/<passkey>/announce?..."). Several URLData options
// are one string in pieces; it is returned as a view of p when it comes in
// one piece and copied only when it comes in several.
func urlData(p []byte) ([]byte, error) {
	var first []byte
	var joined []byte
	pieces := 0
	for len(p) > 0 {
		typ := p[0]
		p = p[1:]
		switch typ {
		case optionEnd:
			p = nil
			continue
		case optionNOP:
			continue
		}
		if len(p) < 1 || len(p) < 1+int(p[0]) {
			return nil, bittorrent.ClientError("malformed announce: truncated BEP 41 option")
		}
		data := p[1 : 1+int(p[0])]
		p = p[1+int(p[0]):]
		if typ != optionURLData {
			continue
		}
		pieces++
		switch pieces {
		case 1:
			first = data
		case 2:
			joined = append(append(make([]byte, 0, 2*255), first...), data...)
		default:
			joined = append(joined, data...)
		}
	}
	if pieces > 1 {
		return joined, nil
	}
	return first, nil
}

// passkeyFromPath returns the passkey of "/<passkey>/announce[?query]", or
// "" for any other path. The passkey is a view of path, not a copy: a
// private tracker's every announce carries one, and the tracker only looks
// it up during the call (see bittorrent.AnnounceRequest.Passkey), so a copy
// would be an allocation per packet for nothing.
func passkeyFromPath(path []byte) string {
	path, _, _ = bytes.Cut(path, []byte("?"))
	rest, ok := bytes.CutPrefix(path, []byte("/"))
	if !ok {
		return ""
	}
	passkey, action, ok := bytes.Cut(rest, []byte("/"))
	if !ok || string(action) != "announce" || len(passkey) == 0 {
		return ""
	}
	return unsafe.String(&passkey[0], len(passkey))
}

// appendConnect appends a connect response.
func appendConnect(dst []byte, txID uint32, connID uint64) []byte {
	dst = binary.BigEndian.AppendUint32(dst, actionConnect)
	dst = binary.BigEndian.AppendUint32(dst, txID)
	return binary.BigEndian.AppendUint64(dst, connID)
}

// appendAnnounce appends an announce response with the peers of the
// requester's family: 6 bytes each over IPv4, 18 over IPv6.
func appendAnnounce(dst []byte, txID uint32, resp *bittorrent.AnnounceResponse, v6 bool) []byte {
	dst = binary.BigEndian.AppendUint32(dst, actionAnnounce)
	dst = binary.BigEndian.AppendUint32(dst, txID)
	dst = binary.BigEndian.AppendUint32(dst, uint32(resp.Interval/time.Second))
	dst = binary.BigEndian.AppendUint32(dst, resp.Incomplete)
	dst = binary.BigEndian.AppendUint32(dst, resp.Complete)
	// BEP 15's peer list is the compact form the response already holds.
	if v6 {
		return append(dst, resp.Peers6.Compact...)
	}
	return append(dst, resp.Peers4.Compact...)
}

// appendScrape appends a scrape response: one entry per hash asked for, in
// the order asked, zeros for unknown swarms. files is sorted by hash, as the
// tracker returns it.
func appendScrape(dst []byte, txID uint32, asked []bittorrent.InfoHash, files []bittorrent.Scrape) []byte {
	dst = binary.BigEndian.AppendUint32(dst, actionScrape)
	dst = binary.BigEndian.AppendUint32(dst, txID)
	for _, h := range asked {
		var f bittorrent.Scrape
		if i, ok := findScrape(files, h); ok {
			f = files[i]
		}
		dst = binary.BigEndian.AppendUint32(dst, f.Complete)
		dst = binary.BigEndian.AppendUint32(dst, f.Snatches)
		dst = binary.BigEndian.AppendUint32(dst, f.Incomplete)
	}
	return dst
}

func findScrape(files []bittorrent.Scrape, h bittorrent.InfoHash) (int, bool) {
	lo, hi := 0, len(files)
	for lo < hi {
		mid := int(uint(lo+hi) >> 1)
		if string(files[mid].InfoHash[:]) < string(h[:]) {
			lo = mid + 1
		} else {
			hi = mid
		}
	}
	return lo, lo < len(files) && files[lo].InfoHash == h
}

// appendError appends an error response, cut so that the whole packet is at
// most limit bytes: an answer to an address that has not proved itself must
// not be larger than what it sent, or the tracker becomes an amplifier.
func appendError(dst []byte, txID uint32, msg string, limit int) []byte {
	dst = binary.BigEndian.AppendUint32(dst, actionError)
	dst = binary.BigEndian.AppendUint32(dst, txID)
	if room := limit - 8; len(msg) > room {
		msg = msg[:max(room, 0)]
	}
	return append(dst, msg...)
}
