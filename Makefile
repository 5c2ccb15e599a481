# posd's build and test entry points. `make test` is what CI runs (.ci/run) and what the
# README tells a newcomer to run; it must stay well under 15 minutes on 2 cores.

GO       ?= go
PKGS     ?= ./...
FUZZTIME ?= 30s

.PHONY: all build build-arm32 test test-deps vet unit test-pkcs11 fuzz-short cross crash exactly-once bench fuzz clean

all: build

build:
	$(GO) build -o bin/ ./cmd/...

# test: tools the tests use when present (installed when possible), vet, every package's
# tests (the end-to-end ones run the built binaries over real ptys and loopback TCP), and the
# cross-builds for the processors POS devices use.
test: test-deps vet unit test-pkcs11 fuzz-short cross

test-deps:
	@scripts/test-deps

vet:
	$(GO) vet $(PKGS)

# The race detector needs cgo and a C compiler; without them the tests run without it.
unit:
	@if [ "$$($(GO) env CGO_ENABLED)" = 1 ] && command -v gcc >/dev/null 2>&1; then \
		echo "$(GO) test -race -count=1 -timeout 20m $(PKGS)"; \
		$(GO) test -race -count=1 -timeout 20m $(PKGS); \
	else \
		echo "unit: no C compiler for the race detector; running the tests without -race"; \
		$(GO) test -count=1 -timeout 20m $(PKGS); \
	fi

# The PKCS#11 backend (cgo, build tag pkcs11), and posd key with it, against SoftHSM2; the
# tests skip, saying why, where softhsm2 is missing.
test-pkcs11:
	@if command -v gcc >/dev/null 2>&1; then \
		$(GO) vet -tags pkcs11 ./hsm/... ./cmd/posd && \
		$(GO) test -count=1 -tags pkcs11 ./hsm/pkcs11/... && \
		$(GO) test -count=1 -tags pkcs11 -run PKCS11 ./cmd/posd; \
	else \
		echo "test-pkcs11: no C compiler: the PKCS#11 backend (cgo) is not built or tested"; \
	fi

# A short fuzz run of the acquirer's unpacker on every make test (make fuzz runs all).
fuzz-short:
	@scripts/fuzz-short ./iso8583 FuzzUnpack 10s

# Pure-Go cross-builds: posd must build with CGO_ENABLED=0 for 32-bit ARMv7 and arm64.
# 32-bit ARM goes through scripts/build-arm32, which works around a 32-bit compile error in
# moov-io/iso8583 v0.26.1 (see the script); `make build-arm32` leaves the binaries in bin/arm32.
cross:
	scripts/build-arm32
	CGO_ENABLED=0 GOOS=linux GOARCH=arm64 $(GO) build -o /dev/null ./cmd/...
	@echo "cross-builds for linux/arm (GOARM=7) and linux/arm64: ok"

build-arm32:
	mkdir -p bin/arm32 && scripts/build-arm32 $(CURDIR)/bin/arm32

# crash: the long store-and-forward crash run (make test runs 200 kills; this runs 2000),
# then the long exactly-once run.
CRASH_KILLS ?= 2000
crash:
	POSD_CRASH_KILLS=$(CRASH_KILLS) $(GO) test -count=1 -run TestCrashKill -v -timeout 60m ./cmd/posd
	$(MAKE) exactly-once

# exactly-once: TestExactlyOnce run long (docs/EXACTLY-ONCE.md). make test runs one round
# (duplicate and concurrent till requests, tills that hang up, Abort, voids of offline
# approvals, SIGKILL while advices are sent, against a host that keys on terminal + STAN +
# field 7); this runs XO_ROUNDS rounds with XO_KILLS kills in each.
XO_ROUNDS ?= 25
XO_KILLS  ?= 6
exactly-once:
	POSD_XO_ROUNDS=$(XO_ROUNDS) POSD_XO_KILLS=$(XO_KILLS) $(GO) test -count=1 -run TestExactlyOnce -v -timeout 60m ./cmd/posd

# bench: the benchmarks whose figures go to docs/BENCHMARKS.md.
bench:
	$(GO) test -run '^$$' -bench . -benchmem -count 5 $(PKGS)

# fuzz: each fuzz target for FUZZTIME (not part of `make test`). New crashers land in the
# package's testdata/fuzz/ and become regression tests; commit them.
fuzz:
	@scripts/fuzz-all "$(FUZZTIME)"

clean:
	rm -rf bin
