# Operator and developer entry points; see README.md.
.PHONY: run build test fuzz bench bench-go

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
	go test ./frontend/http -run '^$$' -fuzz '^FuzzParseHead$$' -fuzztime $(FUZZTIME)
	go test ./storage/gazelle -run '^$$' -fuzz '^FuzzUpdateQuery$$' -fuzztime $(FUZZTIME)
	go test ./cache/memory -run '^$$' -fuzz '^FuzzReadSnapshot$$' -fuzztime $(FUZZTIME)
	go test ./config -run '^$$' -fuzz '^FuzzParse$$' -fuzztime $(FUZZTIME)

# The README's performance table: the tracker pinned to one CPU, the load
# tool (cmd/chihaya-bench) to another; the throughput rows are run in three
# rounds, each compared row beside the open-mode row it is compared with,
# and the medians shown; about 17 minutes.
# Flags for scripts/benchtable go in BENCHFLAGS, e.g. BENCHFLAGS='-soak 0'.
bench:
	go run ./scripts/benchtable $(BENCHFLAGS)

# Micro-benchmarks of each hot-path step with allocation counts, so that a
# regression shows at the step that caused it.
bench-go:
	go test -run '^$$' -bench . -benchmem ./...
