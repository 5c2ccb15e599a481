# posd's build and test entry points. `make test` is what CI runs (.ci/run) and what the
# README tells a newcomer to run; it must stay under 10 minutes on 2 cores.
#
# Release builds (`make package`, `make cross`, `make vuln`) use the Go release RELEASE_GO
# through GOTOOLCHAIN (the go command fetches it from the module proxy once): go.mod's
# go1.26.8 has standard-library vulnerabilities that govulncheck finds reachable in posd
# (crypto/x509, crypto/tls, net/http, net/textproto; fixed in 1.26.9 and 1.26.10).
# Everyday builds and tests use whatever Go is installed (1.26.8 or later).

# pipefail: a test run piped through scripts/testreport keeps go test's exit status.
SHELL       := /bin/bash
.SHELLFLAGS := -o pipefail -c

GO       ?= go
PKGS     ?= ./...
FUZZTIME ?= 30s

RELEASE_GO ?= go1.27.3
# The package version: the newest vX.Y.Z tag, else 0.0.0~git<commit> (Debian sorts ~ first).
VERSION  ?= $(shell v=$$(git describe --tags --match 'v[0-9]*' 2>/dev/null) && echo "$${v\#v}" || echo "0.0.0~git$$(git rev-parse --short HEAD 2>/dev/null || echo unknown)")
ARCHES   ?= amd64 arm64 armhf
DIST     ?= dist

# The offline Go vulnerability database (make vulndb) and the govulncheck release.
VULNDB         ?= $(HOME)/.cache/posd/vulndb
VULNDB_VERSION ?= v0.0.0-20261105234957-e22db6528018
GOVULNCHECK    ?= v1.9.0

# What make test's steps skipped (go test's t.Skip reasons, make vuln's), printed at its end.
SKIPLOG := bin/skipped-tests.txt
REPORT  := bin/testreport

.PHONY: all build build-arm32 test test-start test-skips test-deps vet unit test-pkcs11 fuzz-short cross package vuln vulndb crash exactly-once bench bench-compare fuzz clean

all: build

build:
	$(GO) build -o bin/ ./cmd/...

# test: tools the tests use when present (installed when possible), vet, every package's
# tests (the end-to-end ones run the built binaries over real ptys and loopback TCP; the
# packaging ones build the amd64 .deb and install it into a throwaway root), the
# cross-builds for the processors POS devices use, govulncheck when its offline database is
# there, and at the end every skipped test with its reason.
test: test-start test-deps vet unit test-pkcs11 fuzz-short cross vuln test-skips

test-start:
	@mkdir -p bin && : >$(SKIPLOG)
	@$(GO) build -o $(REPORT) ./scripts/testreport

test-skips:
	@$(REPORT) -print-skips $(SKIPLOG)

test-deps:
	@scripts/test-deps

vet:
	$(GO) vet $(PKGS)

# The race detector needs cgo and a C compiler; without them the tests run without it.
# go test -json through scripts/testreport prints what plain go test does (ok/FAIL lines,
# failed tests' output) and keeps the skip reasons for the end.
unit: test-start
	@race=; if [ "$$($(GO) env CGO_ENABLED)" = 1 ] && command -v gcc >/dev/null 2>&1; then \
		race=-race; \
	else \
		echo "unit: no C compiler for the race detector; running the tests without -race"; \
	fi; \
	echo "$(GO) test $$race -count=1 -timeout 20m $(PKGS)"; \
	$(GO) test -json $$race -count=1 -timeout 20m $(PKGS) | $(REPORT) -skips $(SKIPLOG)

# The PKCS#11 backend (cgo, build tag pkcs11), and posd key with it, against SoftHSM2; the
# tests skip, saying why, where softhsm2 is missing.
test-pkcs11: test-start
	@if command -v gcc >/dev/null 2>&1; then \
		$(GO) vet -tags pkcs11 ./hsm/... ./cmd/posd && \
		$(GO) test -json -count=1 -tags pkcs11 ./hsm/pkcs11/... | $(REPORT) -skips $(SKIPLOG) && \
		$(GO) test -json -count=1 -tags pkcs11 -run PKCS11 ./cmd/posd | $(REPORT) -skips $(SKIPLOG); \
	else \
		echo "test-pkcs11: no C compiler: the PKCS#11 backend (cgo) is not built or tested"; \
		echo "SKIP make test-pkcs11: no C compiler: the PKCS#11 backend (cgo) is not built or tested" >>$(SKIPLOG); \
	fi

# A short fuzz run of the acquirer's unpacker on every make test (make fuzz runs all).
fuzz-short:
	@scripts/fuzz-short ./iso8583 FuzzUnpack 10s

# Pure-Go cross-builds: posd must build with CGO_ENABLED=0 for 32-bit ARMv7 and arm64,
# with the release toolchain. 32-bit ARM goes through scripts/build-arm32, which works
# around a 32-bit compile error in moov-io/iso8583 v0.26.1 (see the script);
# `make build-arm32` leaves the binaries in bin/arm32.
# Where the release toolchain cannot be fetched (no module proxy), the check runs with the
# installed Go and says so among make test's skips.
cross:
	@mkdir -p bin; tc=$(RELEASE_GO); \
	if ! why=$$(GOTOOLCHAIN=$$tc $(GO) version 2>&1 | tr -s "\n\t" "  "); then \
		tc=local; \
		echo "cross: $(RELEASE_GO) unavailable ($$why): building with $$($(GO) env GOVERSION)"; \
		echo "SKIP make cross with $(RELEASE_GO): unavailable ($$why); cross-built with $$($(GO) env GOVERSION)" >>$(SKIPLOG); \
	fi; \
	GOTOOLCHAIN=$$tc scripts/build-arm32 && \
	GOTOOLCHAIN=$$tc CGO_ENABLED=0 GOOS=linux GOARCH=arm64 $(GO) build -o /dev/null ./cmd/... && \
	echo "cross-builds for linux/arm (GOARM=7) and linux/arm64 with $$(GOTOOLCHAIN=$$tc $(GO) env GOVERSION): ok"

build-arm32:
	mkdir -p bin/arm32 && GOTOOLCHAIN=$(RELEASE_GO) scripts/build-arm32 $(CURDIR)/bin/arm32

# package: posd_VERSION_ARCH.deb in dist/ for amd64, arm64 and armhf (ARMv7), built with
# dpkg-deb and the release toolchain: posd, posctl, hsmctl, the systemd unit and the default
# /etc/posd/posd.json (packaging/). make test installs the amd64 one into a throwaway root.
package:
	GOTOOLCHAIN=$(RELEASE_GO) scripts/package $(DIST) $(VERSION) $(ARCHES)

# vuln: govulncheck against the offline database in VULNDB with the release toolchain. make
# test runs it when the database is there and says why it skipped otherwise; make vuln
# fails without it. make vulndb builds the database from the golang.org/x/vulndb module
# (module proxy only; vuln.go.dev is not needed).
vuln:
	@mkdir -p bin; if [ "$(filter vuln,$(MAKECMDGOALS))" ]; then export VULN_REQUIRED=1; fi; \
	scripts/vuln $(VULNDB) $(RELEASE_GO) $(GOVULNCHECK) | tee bin/vuln.out; rc=$$?; \
	grep '^vuln: SKIP: ' bin/vuln.out | sed 's/^vuln: SKIP: /SKIP make vuln: /' >>$(SKIPLOG); exit $$rc

vulndb:
	scripts/vulndb $(VULNDB) $(VULNDB_VERSION)

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

# bench: every benchmark, five times (a look at one package: make bench PKGS=./store).
bench:
	$(GO) test -run '^$$' -bench . -benchmem -count 5 $(PKGS)

# bench-compare: issue 16's measures in one run, each a ratio of pairs measured A B A B
# (scripts/bench-compare), printed as the Markdown of docs/BENCHMARKS.md and written there.
# About 15 minutes on 2 cores; it loads the machine on purpose for the drain.
bench-compare:
	@mkdir -p bin && $(GO) run ./scripts/bench-compare | tee bin/BENCHMARKS.md && cp bin/BENCHMARKS.md docs/BENCHMARKS.md

# fuzz: each fuzz target for FUZZTIME (not part of `make test`). New crashers land in the
# package's testdata/fuzz/ and become regression tests; commit them.
fuzz:
	@scripts/fuzz-all "$(FUZZTIME)"

clean:
	rm -rf bin $(DIST)
