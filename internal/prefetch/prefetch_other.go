//go:build !amd64 && !arm64

package prefetch

import "unsafe"

// LinesFrom asks for n cache lines, the first holding the byte offset
// bytes past addr and each next one stride bytes further; here it does
// nothing.
func LinesFrom(addr unsafe.Pointer, offset uintptr, n int, stride uintptr) {}
