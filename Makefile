# GCM Tracker. `make run` starts the whole system on embedded NATS JetStream
# and a PostgreSQL cluster it initialises itself; `make test` runs every test
# and the lint checks.

# The machine's Go may lag behind security fixes of the standard library;
# the go command fetches this toolchain from the module proxy once.
export GOTOOLCHAIN := go1.27.3

GO          ?= go
BIN         := bin/gcmtrack
PKGS        := ./...
STATICCHECK := honnef.co/go/tools/cmd/staticcheck@v0.8.2
GOVULNCHECK := golang.org/x/vuln/cmd/govulncheck@v1.9.0
# The Go vulnerability database, as published in a module on the proxy;
# indexed locally so the check needs no other network access.
VULNDB      := golang.org/x/vulndb@v0.0.0-20261105234957-e22db6528018
VULNDB_OUT  := $(HOME)/.cache/gcmtrack/vulndb-20261105

.PHONY: all build run demo test test-only lint vet layering staticcheck vuln fmt postgres clean chaos

all: build

build:
	$(GO) build -o $(BIN) ./cmd/gcmtrack

## run: build and start everything (embedded NATS + PostgreSQL) on 127.0.0.1:8080
run: postgres build
	./$(BIN) run

## demo: like run, and load the demonstration data set (once)
demo: postgres build
	./$(BIN) run --demo

## test: tests (real NATS JetStream and PostgreSQL) + lint
test: postgres test-only lint

test-only:
	$(GO) test -count=1 -timeout 10m $(PKGS)

## lint: formatting, go vet, import direction, staticcheck, govulncheck
lint: fmt vet layering staticcheck vuln

fmt:
	@out=$$(gofmt -l $$(git ls-files '*.go' 2>/dev/null || find . -name '*.go')); \
	if [ -n "$$out" ]; then echo "gofmt would change:"; echo "$$out"; exit 1; fi

vet:
	$(GO) vet $(PKGS)

layering:
	$(GO) test -count=1 -run TestImportDirection ./cmd/gcmtrack

staticcheck:
	$(GO) run $(STATICCHECK) $(PKGS)

vuln: $(VULNDB_OUT)/index/db.json
	$(GO) run $(GOVULNCHECK) -db file://$(VULNDB_OUT) $(PKGS)

$(VULNDB_OUT)/index/db.json:
	@dir=$$($(GO) mod download -json $(VULNDB) | sed -n 's/.*"Dir": "\(.*\)",/\1/p'); \
	rm -rf $(VULNDB_OUT) && mkdir -p $(dir $(VULNDB_OUT)) && \
	$(GO) run $(subst @,/cmd/indexdb@,$(VULNDB)) -vulns $$dir/data/osv -out $(VULNDB_OUT)

## bench: measure the product against baselines measured in the same run
## (BENCH_EVENTS=1000000 for full size, PROFILE=1 for CPU profiles in bin/bench/,
## BENCH_FLAGS for more, e.g. BENCH_FLAGS="-only replay,memory")
BENCH_EVENTS ?= 100000
BENCH_REPS   ?= 3
BENCH_FLAGS  ?=
BENCH_OUT    := bin/bench

.PHONY: bench
bench: postgres build
	$(GO) build -o bin/gcmbench ./bench/cmd/gcmbench
	./bin/gcmbench -events $(BENCH_EVENTS) -reps $(BENCH_REPS) -gcmtrack $(BIN) \
		-out $(BENCH_OUT)/latest.json $(if $(PROFILE),-profile $(BENCH_OUT)) $(BENCH_FLAGS)

## bench-compare: how the figures moved between two results files, benchstat-style
## (default: the last two runs of make bench; BENCH_OLD=, BENCH_NEW= for others)
BENCH_OLD ?= $(BENCH_OUT)/previous.json
BENCH_NEW ?= $(BENCH_OUT)/latest.json

.PHONY: bench-compare
bench-compare:
	$(GO) build -o bin/gcmbench ./bench/cmd/gcmbench
	./bin/gcmbench -compare $(BENCH_OLD) $(BENCH_NEW)

## chaos: the product as deployed (3 NATS nodes, PostgreSQL, 2 APIs, 2 projectors) on
## loopback under a steady load of writes while processes are killed, paused and
## restarted; fails if an acknowledged write is lost or doubled or the read models
## differ from a fresh rebuild (CHAOS_DURATION, CHAOS_RATE writes/s, CHAOS_FLAGS
## for more, e.g. CHAOS_FLAGS="-seed 42 -keep")
CHAOS_DURATION ?= 3m
CHAOS_RATE     ?= 10
CHAOS_FLAGS    ?=

chaos: postgres build
	$(GO) build -o bin/gcmchaos ./chaos/cmd/gcmchaos
	./bin/gcmchaos -gcmtrack $(BIN) -deploy deploy -duration $(CHAOS_DURATION) -rate $(CHAOS_RATE) $(CHAOS_FLAGS)

## postgres: install PostgreSQL's server binaries when the machine has none
postgres:
	@bash deploy/install-postgres.sh

clean:
	rm -rf bin
