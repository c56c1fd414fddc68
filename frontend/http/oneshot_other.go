//go:build !linux

package http

import (
	"net"
	"syscall"
)

// Inline answers are for Linux; elsewhere every connection gets the full
// server.

func deferAccept(_, _ string, _ syscall.RawConn) error { return nil }

type oneShotListener struct{ net.Listener }

func oneShot(net.Listener, int) *oneShotListener { return nil }

func (l *oneShotListener) acceptors() int { return 1 }

func (l *oneShotListener) attach(*server) {}
