package main

import (
	"encoding/binary"
	"errors"
)

// BEP 15 packets as the client writes and reads them: big-endian fields,
// every request opening with connection_id (8 bytes), action (4) and
// transaction_id (4), every answer with action (4) and transaction_id (4).

// udpProtocolID is the connection_id of a connect request.
const udpProtocolID = 0x41727101980

// BEP 15 actions.
const (
	actConnect  = 0
	actAnnounce = 1
	actScrape   = 2
	actError    = 3
)

const (
	udpHeaderLen   = 16
	udpAnnounceLen = 98
	// udpMaxScrapeHashes keeps a scrape in one 1500-byte packet.
	udpMaxScrapeHashes = 74
	// bep41URLData is the BEP 41 option that carries the URL's path.
	bep41URLData = 0x2
)

// appendConnectReq appends a connect request.
func appendConnectReq(dst []byte, txID uint32) []byte {
	dst = binary.BigEndian.AppendUint64(dst, udpProtocolID)
	dst = binary.BigEndian.AppendUint32(dst, actConnect)
	return binary.BigEndian.AppendUint32(dst, txID)
}

// udpAnnounce is what an announce request carries besides its header.
type udpAnnounce struct {
	infoHash, peerID           [20]byte
	downloaded, left, uploaded uint64
	event                      event
	key                        uint32
	numWant                    int32
	port                       uint16
	// path, when not empty, is sent as BEP 41 URL data, how a UDP
	// announce carries a private tracker's passkey ("/<passkey>/announce").
	path string
}

// appendAnnounceReq appends an announce request. The IP address field is
// left zero: the tracker takes the packet's source address.
func appendAnnounceReq(dst []byte, connID uint64, txID uint32, a *udpAnnounce) []byte {
	dst = binary.BigEndian.AppendUint64(dst, connID)
	dst = binary.BigEndian.AppendUint32(dst, actAnnounce)
	dst = binary.BigEndian.AppendUint32(dst, txID)
	dst = append(dst, a.infoHash[:]...)
	dst = append(dst, a.peerID[:]...)
	dst = binary.BigEndian.AppendUint64(dst, a.downloaded)
	dst = binary.BigEndian.AppendUint64(dst, a.left)
	dst = binary.BigEndian.AppendUint64(dst, a.uploaded)
	dst = binary.BigEndian.AppendUint32(dst, a.event.udpCode())
	dst = binary.BigEndian.AppendUint32(dst, 0) // IP address
	dst = binary.BigEndian.AppendUint32(dst, a.key)
	dst = binary.BigEndian.AppendUint32(dst, uint32(a.numWant))
	dst = binary.BigEndian.AppendUint16(dst, a.port)
	// A URL data option holds at most 255 bytes; a longer path goes
	// in several, which the receiver joins.
	for p := a.path; p != ""; {
		n := min(len(p), 255)
		dst = append(dst, bep41URLData, byte(n))
		dst = append(dst, p[:n]...)
		p = p[n:]
	}
	return dst
}

// appendScrapeHeader appends the header of a scrape request; the caller
// appends the 20-byte info hashes.
func appendScrapeHeader(dst []byte, connID uint64, txID uint32) []byte {
	dst = binary.BigEndian.AppendUint64(dst, connID)
	dst = binary.BigEndian.AppendUint32(dst, actScrape)
	return binary.BigEndian.AppendUint32(dst, txID)
}

// udpAnswer is a parsed answer. Only the fields of its action are set.
type udpAnswer struct {
	action, txID uint32
	// connect
	connID uint64
	// announce
	interval, leechers, seeders uint32
	peers                       int
	// scrape: the number of 12-byte entries and the sums of their
	// seeders and leechers
	scraped                       int
	scrapeSeeders, scrapeLeechers uint64
	// error: the message, a view of the packet
	msg []byte
}

// errMalformed is an answer that does not follow BEP 15.
var errMalformed = errors.New("malformed answer")

// parseAnswer reads an answer. v6 says whether the tracker was reached over
// IPv6, which makes announce peers 18 bytes instead of 6.
func parseAnswer(p []byte, v6 bool, a *udpAnswer) error {
	if len(p) < 8 {
		return errMalformed
	}
	*a = udpAnswer{
		action: binary.BigEndian.Uint32(p[0:4]),
		txID:   binary.BigEndian.Uint32(p[4:8]),
	}
	body := p[8:]
	switch a.action {
	case actConnect:
		if len(body) < 8 {
			return errMalformed
		}
		a.connID = binary.BigEndian.Uint64(body)
	case actAnnounce:
		if len(body) < 12 {
			return errMalformed
		}
		a.interval = binary.BigEndian.Uint32(body[0:4])
		a.leechers = binary.BigEndian.Uint32(body[4:8])
		a.seeders = binary.BigEndian.Uint32(body[8:12])
		size := 6
		if v6 {
			size = 18
		}
		if (len(body)-12)%size != 0 {
			return errMalformed
		}
		a.peers = (len(body) - 12) / size
	case actScrape:
		if len(body)%12 != 0 {
			return errMalformed
		}
		a.scraped = len(body) / 12
		for e := body; len(e) >= 12; e = e[12:] {
			a.scrapeSeeders += uint64(binary.BigEndian.Uint32(e[0:4]))
			a.scrapeLeechers += uint64(binary.BigEndian.Uint32(e[8:12]))
		}
	case actError:
		a.msg = body
	default:
		return errMalformed
	}
	return nil
}
