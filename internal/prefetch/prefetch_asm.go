//go:build amd64 || arm64

package prefetch

import "unsafe"

// Lines asks for n cache lines, the first holding addr and each next one
// stride bytes further.
//
//go:noescape
func Lines(addr unsafe.Pointer, n int, stride uintptr)
