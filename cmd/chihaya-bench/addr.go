package main

import (
	"net"
	"net/netip"
)

// Linux routes the whole of 127.0.0.0/8 to the loopback interface, so a
// client on the tracker's machine can bind sockets to millions of distinct
// source addresses without configuring anything. The tracker then sees
// distinct peers with distinct endpoints, as it would in the wild, and each
// address has its own range of ephemeral ports, which is what lets a
// connection-per-request run go on past some 28,000 connections.
//
// Owners (UDP sockets, HTTP keep-alive connections) take addresses under
// 127.1.0.0/16, peers (HTTP connection-per-request) under 127.2.0.0 and
// up. Octets 0 and 255 are skipped so that no address looks like a network
// or broadcast address.

const (
	octets = 254
	// maxOwners is how many owners 127.1.x.y holds.
	maxOwners = octets * octets
	// maxPeers is how many peers 127.2.0.0 to 127.253.255.255 hold.
	maxPeers = (253 - 2 + 1) * octets * octets
)

// loopbackAddr returns the i-th address above 127.first.1.1.
func loopbackAddr(first byte, i int) netip.Addr {
	d := byte(1 + i%octets)
	i /= octets
	c := byte(1 + i%octets)
	i /= octets
	return netip.AddrFrom4([4]byte{127, first + byte(i), c, d})
}

// ownerAddr is the source address of socket or connection i.
func ownerAddr(i int) netip.Addr { return loopbackAddr(1, i) }

// peerAddr is the source address of peer g's own connections.
func peerAddr(g int) netip.Addr { return loopbackAddr(2, g) }

// sources decides the local address of the client's sockets.
type sources struct {
	spread bool
}

// newSources spreads sources over 127.0.0.0/8 only when asked and when the
// target is on IPv4 loopback: elsewhere the machine's own address is the
// only one that routes, and IPv6 has a single loopback address.
func newSources(target netip.AddrPort, spread bool) sources {
	return sources{spread: spread && target.Addr().Unmap().Is4() && target.Addr().IsLoopback()}
}

// udp returns the local address for a socket at addr, nil to let the kernel
// choose.
func (s sources) udp(addr netip.Addr) *net.UDPAddr {
	if !s.spread {
		return nil
	}
	return net.UDPAddrFromAddrPort(netip.AddrPortFrom(addr, 0))
}

// tcp returns the local address for a connection from addr, nil to let the
// kernel choose.
func (s sources) tcp(addr netip.Addr) net.Addr {
	if !s.spread {
		return nil
	}
	return net.TCPAddrFromAddrPort(netip.AddrPortFrom(addr, 0))
}
