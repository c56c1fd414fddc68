# Operator and developer entry points; see README.md.
.PHONY: run build test fuzz bench

# Run the tracker on the built-in defaults (HTTP on :6969, memory cache,
# open tracker). Pass a configuration with: make run ARGS='-config my.json'
run:
	go run ./cmd/chihaya $(ARGS)

build:
	go build -o bin/chihaya ./cmd/chihaya

# Everything CI runs: gofmt, go vet, staticcheck, go test -race ./...,
# end-to-end tests with real BitTorrent clients.
test:
	scripts/test

# A longer fuzz run of every fuzz target (FUZZTIME per target).
FUZZTIME ?= 60s
fuzz:
	go test ./frontend/http -run '^$$' -fuzz '^FuzzParseAnnounce$$' -fuzztime $(FUZZTIME)
	go test ./frontend/udp -run '^$$' -fuzz '^FuzzHandle$$' -fuzztime $(FUZZTIME)
	go test ./frontend/udp -run '^$$' -fuzz '^FuzzParseAnnounce$$' -fuzztime $(FUZZTIME)
	go test ./frontend/http -run '^$$' -fuzz '^FuzzSplitPath$$' -fuzztime $(FUZZTIME)
	go test ./storage/gazelle -run '^$$' -fuzz '^FuzzUpdateQuery$$' -fuzztime $(FUZZTIME)
	go test ./cache/memory -run '^$$' -fuzz '^FuzzReadSnapshot$$' -fuzztime $(FUZZTIME)
	go test ./config -run '^$$' -fuzz '^FuzzParse$$' -fuzztime $(FUZZTIME)

# Hot-path micro-benchmarks with allocation counts.
bench:
	go test -run '^$$' -bench . -benchmem ./...
