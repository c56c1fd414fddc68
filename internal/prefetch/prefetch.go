// Package prefetch asks the CPU to start loading memory that code is about
// to read, without waiting for it.
//
// A plain load of cold memory stalls whatever depends on it; when a batch
// of requests each need a few cold lines, asking for all of them first lets
// the misses overlap instead of coming one after another. A prefetch reads
// nothing the program can see: it cannot fault, needs no lock, and is no
// data access to the race detector, so it may name memory that another
// goroutine is changing or that has since been freed. It is only a hint;
// on architectures without an implementation here it does nothing.
package prefetch

import "unsafe"

// Line asks for the cache line that holds addr.
func Line(addr unsafe.Pointer) { LinesFrom(addr, 0, 1, 0) }

// Lines asks for n cache lines, the first holding addr and each next one
// stride bytes further.
func Lines(addr unsafe.Pointer, n int, stride uintptr) { LinesFrom(addr, 0, n, stride) }

// LineSize is the cache line size the strides of Lines are meant in, and
// what data that cores share is padded to.
const LineSize = 64
