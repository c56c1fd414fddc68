// Package registry is the name-to-driver table behind cache.Register and
// storage.Register, kept in one place so both behave the same.
package registry

import (
	"fmt"
	"sort"
	"sync"
)

// Registry maps driver names to drivers. The zero value is not usable; make
// one with New.
type Registry[D comparable] struct {
	kind    string
	mu      sync.RWMutex
	drivers map[string]D
}

// New returns an empty registry; kind ("cache", "storage") names it in
// messages.
func New[D comparable](kind string) *Registry[D] {
	return &Registry[D]{kind: kind, drivers: map[string]D{}}
}

// Register adds driver under name. It panics on a zero driver or a name
// that is taken: both are programming errors found at init.
func (r *Registry[D]) Register(name string, driver D) {
	var zero D
	r.mu.Lock()
	defer r.mu.Unlock()
	if driver == zero {
		panic(r.kind + ": Register driver is nil")
	}
	if _, dup := r.drivers[name]; dup {
		panic(r.kind + ": Register called twice for driver " + name)
	}
	r.drivers[name] = driver
}

// Names returns the registered names, sorted.
func (r *Registry[D]) Names() []string {
	r.mu.RLock()
	defer r.mu.RUnlock()
	names := make([]string, 0, len(r.drivers))
	for name := range r.drivers {
		names = append(names, name)
	}
	sort.Strings(names)
	return names
}

// Lookup returns the driver registered as name, or an error that lists the
// names that are registered.
func (r *Registry[D]) Lookup(name string) (D, error) {
	r.mu.RLock()
	driver, ok := r.drivers[name]
	r.mu.RUnlock()
	if !ok {
		return driver, fmt.Errorf("unknown %s driver %q (registered: %v)", r.kind, name, r.Names())
	}
	return driver, nil
}
