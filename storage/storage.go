// Package storage defines the link to a web application's database: the
// source of users, registered torrents and the client whitelist, and the sink
// for the statistics the tracker collects. Drivers register themselves by
// name, as database/sql drivers do. A tracker with no storage configured is
// an open tracker.
package storage

import (
	"encoding/json"

	"github.com/chihaya/chihaya/internal/registry"
)

// Storage is an open link to a web application's database.
//
// The open tracker needs nothing from it; the private-tracker rules extend
// this interface with the loads and the batched writes they need.
type Storage interface {
	// Close flushes what is pending and releases the connection.
	Close() error
}

// Driver opens storages of one kind.
type Driver interface {
	// Open validates config, the driver's own JSON block, and connects.
	// Errors name the offending key.
	Open(config json.RawMessage) (Storage, error)
}

var drivers = registry.New[Driver]("storage")

// Register makes a driver available under name. It is meant to be called
// from the driver package's init and panics if name is taken or driver is
// nil, since either is a programming error.
func Register(name string, driver Driver) { drivers.Register(name, driver) }

// Drivers returns the names of the registered drivers, sorted.
func Drivers() []string { return drivers.Names() }

// Open opens a storage with the driver registered as name.
func Open(name string, config json.RawMessage) (Storage, error) {
	driver, err := drivers.Lookup(name)
	if err != nil {
		return nil, err
	}
	return driver.Open(config)
}
