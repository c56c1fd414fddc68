// Package e2e holds end-to-end tests that run the chihaya binary together
// with real BitTorrent clients (aria2 and libtorrent) and check that a file
// actually travels from a seeder to a leecher that could only have found
// each other through the tracker.
//
// The package contains no code of its own; everything lives in the test
// files. The clients come from Debian packages; install them with
// scripts/install-e2e-clients. Without them the tests are skipped, unless
// the CI environment variable is set, in which case they fail.
package e2e
