//go:build amd64 || arm64

package prefetch

import "unsafe"

// LinesFrom asks for n cache lines, the first holding the byte offset
// bytes past addr and each next one stride bytes further. The address is
// computed here rather than by the caller, as it may lie outside addr's
// object: Go code may not form such a pointer (the race detector's
// pointer checks and the garbage collector reject it).
//
//go:noescape
func LinesFrom(addr unsafe.Pointer, offset uintptr, n int, stride uintptr)
