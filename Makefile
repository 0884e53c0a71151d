# cloonix: make demo | make test (see README.md)
SHELL := /bin/bash
GO      ?= go
BIN     := bin/cloonix
export CLOONIX_BULK ?= $(HOME)/cloonix_labs/bulk
# Static binary: it is copied into guest images as the agent.
export CGO_ENABLED := 0
FUZZTIME ?= 5s

.PHONY: all build web deps images demo test test-unit test-e2e test-long fuzz bench bench-smoke lint clean

all: build

build:
	$(GO) build -trimpath -ldflags "-s -w" -o $(BIN) ./cmd/cloonix

# The graph page's bundle (web/dist, committed so a Go build needs no npm):
# rebuild it after changing web/src or web/package.json.
web:
	cd web && npm ci --no-audit --no-fund && npm run build

deps:
	./scripts/deps.sh

# The default guest images, into CLOONIX_BULK (quick when already built).
images: build
	$(BIN) bulk build --bulk-dir $(CLOONIX_BULK)

demo: deps build images
	./scripts/demo.sh

test: deps build images lint test-unit fuzz test-e2e

test-unit:
	$(GO) test -count=1 ./internal/... ./cmd/...

# Each fuzz target briefly (go test runs one -fuzz target per call).
FUZZ_TARGETS := $(shell grep -rl --include='*_test.go' '^func Fuzz' internal | xargs -r -n1 dirname | sort -u)
fuzz:
	@for d in $(FUZZ_TARGETS); do \
	  for f in $$(grep -h '^func Fuzz' $$d/*_test.go | sed 's/func \(Fuzz[A-Za-z0-9_]*\).*/\1/'); do \
	    echo "fuzz $$d $$f"; \
	    $(GO) test -run='^$$' -fuzz="^$$f$$" -fuzztime=$(FUZZTIME) ./$$d || exit 1; \
	  done; \
	done

test-e2e:
	CLOONIX_E2E=1 $(GO) test -count=1 -timeout 25m -v ./e2e/ 2>&1 | tee /tmp/cloonix-e2e.log | grep -E '^(=== RUN|--- |PASS|FAIL|ok|panic)|_test.go'; exit $${PIPESTATUS[0]}

test-long:
	CLOONIX_E2E=1 CLOONIX_LONG=1 $(GO) test -count=1 -timeout 60m -v ./e2e/

bench: build
	$(GO) run ./bench/fabric
	$(GO) run ./bench/impair

# Every benchmark briefly (-short), as root: each must run and print its
# table. A smoke test only: no figure is checked (docs/benchmarks.md has
# the measured ones and how to measure them).
bench-smoke: build images
	$(GO) run ./bench/fabric -short
	$(GO) run ./bench/impair -short
	$(GO) run ./bench/tap -short -bin $(BIN)
	$(GO) run ./bench/vxlan -short -bin $(BIN)
	$(GO) run ./bench/boot -short
	$(GO) run ./bench/scale -short -bin $(BIN)
	$(GO) run ./bench/guests -short -bin $(BIN)

STATICCHECK := honnef.co/go/tools/cmd/staticcheck@v0.8.2
lint:
	@test -z "$$(gofmt -l $$(git ls-files '*.go' 2>/dev/null || find . -name '*.go'))" || { gofmt -l .; echo "gofmt: files above need formatting"; exit 1; }
	$(GO) vet ./...
	CGO_ENABLED=1 $(GO) run $(STATICCHECK) ./...

clean:
	rm -rf bin
