# cloonix: make demo | make test (see README.md)
SHELL := /bin/bash
GO      ?= go
BIN     := bin/cloonix
AGENT   := bin/cloonix-agent
export CLOONIX_BULK ?= $(HOME)/cloonix_labs/bulk
# Static binaries: cloonix-agent is copied into guest images (cloonix
# bulk build finds it beside bin/cloonix); cloonix runs its helpers anywhere.
export CGO_ENABLED := 0

.PHONY: all build web deps images demo test test-unit test-e2e test-long fuzz bench bench-smoke lint clean \
	k8s-testbed k8s-testbed-stop test-k8s

all: build

build:
	$(GO) build -trimpath -ldflags "-s -w" -o $(BIN) ./cmd/cloonix
	$(GO) build -trimpath -ldflags "-s -w" -o $(AGENT) ./cmd/cloonix-agent

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

test: deps build images lint test-unit fuzz test-e2e bench-smoke

test-unit:
	$(GO) test -count=1 ./internal/... ./cmd/...

# bench-smoke runs every benchmark once, briefly: it proves each runs and
# prints its table (no figure is asserted; see docs/benchmarks.md).

# Each fuzz target briefly (go test runs one -fuzz target per call).
#
# Budgets are execution counts (-fuzztime Nx), not durations: with a
# duration, Go's fuzzing coordinator (up to 1.26) can fail a target that
# found nothing with a bare "context deadline exceeded" as the time runs out
# (golang/go#75804, fixed in Go 1.27; seen here on FuzzDecoder and
# FuzzParseRequest). A count sets no deadline, so that race cannot happen,
# while a real finding still fails the step: go test runs the seed corpus
# and every written reproducer (testdata/fuzz/FuzzXxx/*) before fuzzing and
# fails on any of them. A count also does the same work on a busy machine
# as on an idle one. Each is sized to about 3.5 s on this 2-core machine
# at load ~15 (other builds and guests running; an idle machine does the
# same in 1.5-3 s): 21 targets took 97 s in all, compiling included.
# FUZZN_<package>_<target> sets a target's budget; a new target gets
# FUZZN until it has its own line. FUZZSCALE multiplies them all
# (e.g. make fuzz FUZZSCALE=20 for a longer hunt).
FUZZN     ?= 20000
FUZZSCALE ?= 1
FUZZN_graph_FuzzCheckCall       := 25000
FUZZN_guest_FuzzReadCD          := 20000
FUZZN_guest_FuzzParseCmdline    := 80000
FUZZN_guest_FuzzDecoder         := 100000
FUZZN_guest_FuzzDecoderCost     := 3000
FUZZN_guest_FuzzServer          := 40000
FUZZN_netem_FuzzParse           := 35000
FUZZN_proto_FuzzCaptureStream   := 70000
FUZZN_proto_FuzzDecode          := 25000
FUZZN_proto_FuzzDecodeRequest   := 25000
FUZZN_topology_FuzzParse        := 50000
FUZZN_topology_FuzzApply        := 70000
FUZZN_tux_FuzzSegmentTCP        := 15000
FUZZN_tux_FuzzT2TRecords        := 8000
FUZZN_tux_FuzzT2THandshake      := 20000
FUZZN_wire_FuzzFrameReader      := 40000
FUZZN_tux_FuzzTCPMerger         := 20000
FUZZN_tux_FuzzVXLANDecode       := 35000
FUZZN_wire_FuzzStreamRead       := 12000
FUZZN_wire_FuzzDgramRead        := 30000
FUZZN_wire_FuzzParseRequest     := 45000
FUZZN_kube_FuzzExecStatus       := 20000
FUZZN_kube_FuzzKubeconfig       := 20000
FUZZ_TARGETS := $(shell grep -rl --include='*_test.go' '^func Fuzz' internal | xargs -r -n1 dirname | sort -u)
# The budgets as "package_target=N" words, for the shell loop below.
FUZZ_BUDGETS := $(foreach v,$(filter FUZZN_%,$(.VARIABLES)),$(v:FUZZN_%=%)=$($(v)))
fuzz:
	@for d in $(FUZZ_TARGETS); do \
	  for f in $$(grep -h '^func Fuzz' $$d/*_test.go | sed 's/func \(Fuzz[A-Za-z0-9_]*\).*/\1/'); do \
	    n=$(FUZZN); \
	    for b in $(FUZZ_BUDGETS); do [ "$${b%%=*}" = "$$(basename $$d)_$$f" ] && n=$${b#*=}; done; \
	    n=$$((n * $(FUZZSCALE))); \
	    echo "fuzz $$d $$f $${n}x"; \
	    $(GO) test -run='^$$' -fuzz="^$$f$$" -fuzztime=$${n}x ./$$d || exit 1; \
	  done; \
	done

test-e2e:
	CLOONIX_E2E=1 $(GO) test -count=1 -timeout 45m -v ./e2e/ 2>&1 | tee /tmp/cloonix-e2e.log | grep -E '^(=== RUN|--- |PASS|FAIL|ok|panic)|_test.go'; exit $${PIPESTATUS[0]}

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

# Labs on Kubernetes (docs/kubernetes.md): a 2-node cluster on this
# machine (Kubernetes built from the Go module proxy into ~/.cache, outside
# this module), then the e2e tests on it with freshly written images.
K8S_IMAGES ?= /tmp/cloonix-k8s-images
k8s-testbed:
	./scripts/deps.sh k8s/debian-packages.txt
	./scripts/k8s/testbed.sh up

k8s-testbed-stop:
	./scripts/k8s/testbed.sh down

test-k8s: build
	./scripts/deps.sh k8s/debian-packages.txt
	./scripts/k8s/testbed.sh status >/dev/null || ./scripts/k8s/testbed.sh up
	$(BIN) kube images --out $(K8S_IMAGES) --cache-dir $(K8S_IMAGES)/trees busybox
	./scripts/k8s/testbed.sh import $(K8S_IMAGES)/*.tar
	eval "$$(./scripts/k8s/testbed.sh env)" && CLOONIX_E2E=1 CLOONIX_K8S=1 \
		$(GO) test -count=1 -timeout 20m -run 'TestKube' -v ./e2e/

clean:
	rm -rf bin
