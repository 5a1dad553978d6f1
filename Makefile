# hagate: `make demo` (as root) shows a failover live; `make test` runs
# every test (the namespace tests need root and skip without it).
#
# Two modules: the product (this directory) and the lab (lab/: the
# namespace lab, the cluster harness, the benchmarks, the demo and the
# soak), which has a go.mod of its own. Every target that runs the lab's
# code does so with `go -C lab`, so its paths are the lab's.
GO      ?= go
BIN     := bin/hagate
PKGS    := ./...
LAB     := $(GO) -C lab
FUZZTIME ?= 30s

.PHONY: all build test test-short demo bench bench-deps fuzz soak vet clean deps

all: build

build:
	$(GO) build -ldflags "-X github.com/hagate/hagate/internal/version.Version=$$(git describe --tags --always --dirty)" -o $(BIN) ./cmd/hagate

# Debian packages the lab, the demo and the tests use (prometheus: promtool, for the alert rules).
deps:
	@command -v ip >/dev/null && command -v nft >/dev/null && command -v socat >/dev/null && command -v conntrack >/dev/null && command -v promtool >/dev/null || \
	  { apt-get update && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends iproute2 nftables conntrack socat iputils-ping prometheus; }

vet:
	$(GO) vet $(PKGS)
	$(LAB) vet $(PKGS)

test: deps vet
	$(GO) test -count=1 -timeout 12m $(PKGS)
	$(LAB) test -count=1 -timeout 12m $(PKGS)
	$(GO) test -count=1 -run '^$$' -bench . -benchtime 1x $(PKGS)
	$(LAB) test -count=1 -run '^$$' -bench . -benchtime 1x $(PKGS)

test-short:
	$(GO) test -short $(PKGS)
	$(LAB) test -short $(PKGS)

demo: deps
	$(LAB) run ./cmd/hagate-demo

# keepalived and conntrackd, for the side-by-side benchmarks only.
bench-deps:
	@command -v keepalived >/dev/null && command -v conntrackd >/dev/null || \
	  { apt-get update && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends keepalived conntrackd; }

bench: deps bench-deps
	$(LAB) run ./cmd/hagate-bench

# Five minutes of random faults on a live cluster carrying TCP sessions.
soak: deps
	$(LAB) run ./cmd/hagate-soak -duration 5m -v -pickup -sessions 8 -require-sessions
	$(LAB) run ./cmd/hagate-soak -duration 2m -v -pickup -quorum -sessions 4 -require-sessions

# Every fuzz target of both modules, FUZZTIME each.
fuzz:
	@for dir in . lab; do \
	  for pkg in $$($(GO) -C $$dir list $(PKGS)); do \
	    for t in $$($(GO) -C $$dir test -list '^Fuzz' $$pkg | grep '^Fuzz'); do \
	      echo "== $$pkg $$t"; \
	      $(GO) -C $$dir test -run '^$$' -fuzz "^$$t$$" -fuzztime $(FUZZTIME) $$pkg || exit 1; \
	    done; \
	  done; \
	done

# The Debian package (bin/hagate_VERSION_ARCH.deb): static binary stamped
# from git, unit, conffile, sysctl drop-in, nftables example, docs, man
# pages and completions. dist/deb_test.go builds and installs it in `make test`.
.PHONY: deb
deb:
	GO=$(GO) dist/build-deb.sh bin

clean:
	rm -rf bin
