# protoc-gen-go-lb. `make help` lists the targets.
SHELL := bash
.SHELLFLAGS := -euo pipefail -c
.DEFAULT_GOAL := help
MAKEFLAGS += --no-print-directory

export GOTOOLCHAIN := local
MODULE := github.com/protoc-gen-go-lb/protoc-gen-go-lb
# Tool builds are cached by version under $HOME/.cache, so a second run (and
# CI on the same machine) skips them.
CACHE := $(HOME)/.cache/protoc-gen-go-lb
BUF_VERSION := v1.75.0
BUF := $(CACHE)/buf-$(BUF_VERSION)/buf
# Consul for the integration tests: Debian has none and `go install` is
# refused, so a throw-away module builds it from the proxy (see
# ../shared/notes/real-registries.md). About 5 minutes on 2 cores, once.
CONSUL_VERSION := 1.12.9
CONSUL := $(CACHE)/consul-$(CONSUL_VERSION)/consul
# kube-apiserver for the Kubernetes backend's tests: k8s.io/kubernetes cannot
# be `go install`ed (its go.mod points its staging modules at ./staging), so a
# throw-away module replaces each of them with its published v0.x version.
# About 5.5 minutes on 2 cores, once; it runs against the tests' in-process etcd.
KUBE_VERSION := 1.37.2
KUBE_APISERVER := $(CACHE)/kube-apiserver-$(KUBE_VERSION)/kube-apiserver
# Modules of their own, so that users without Kubernetes never compile
# client-go: the backend and its example. `make test` covers them too.
KUBE_MODULES := runtime/discovery/kubernetes example/kubernetes
# Plugins pinned by go.mod (tool directives) and built from this tree.
BIN := $(abspath .tmp/bin)
export PATH := $(BIN):$(PATH)
SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo)

.PHONY: help
help: ## Describe the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk 'BEGIN {FS = ":.*## "}; {printf "%-15s %s\n", $$1, $$2}'

.PHONY: demo
demo: ## Run three greeter servers and a balanced client on loopback
	go run ./example/demo

.PHONY: test
test: tools ## Vet, check formatting and generated code, run all tests with -race
	go vet ./...
	GOARCH=386 go vet ./runtime/... ./proto/... # what users build on 32 bits
	for m in $(KUBE_MODULES); do (cd $$m && go vet ./...); done
	cd runtime/discovery/kubernetes && GOARCH=386 go vet ./...
	@test -z "$$(gofmt -l $$(git ls-files '*.go'))" || { gofmt -l $$(git ls-files '*.go'); echo "gofmt: files above need formatting"; exit 1; }
	BUF=$(BUF) LB_CONSUL=$(CONSUL) LB_KUBE_APISERVER=$(KUBE_APISERVER) LB_REQUIRE_TOOLS=1 go test -race -count=1 ./...
	for m in $(KUBE_MODULES); do (cd $$m && LB_KUBE_APISERVER=$(KUBE_APISERVER) LB_REQUIRE_TOOLS=1 go test -race -count=1 ./...); done
	$(MAKE) checkgenerate

.PHONY: generate
generate: tools ## Regenerate proto/lb and example code with buf
	$(BUF) generate

.PHONY: checkgenerate
checkgenerate: tools ## Fail if the generated code in the tree is stale
	@tmp=$$(mktemp -d); trap 'rm -rf "$$tmp"' EXIT; \
	$(BUF) generate -o "$$tmp"; \
	fail=0; for f in $$(cd "$$tmp" && find . -name '*.go'); do \
		cmp -s "$$tmp/$$f" "$$f" || { echo "$$f is stale: run make generate"; fail=1; }; \
	done; exit $$fail

.PHONY: update-golden
update-golden: tools ## Rewrite the plugin's golden files (buf compiles the edition 2024 one)
	BUF=$(BUF) LB_REQUIRE_TOOLS=1 go test ./cmd/protoc-gen-go-lb -run 'TestGolden' -update

.PHONY: bench
bench: ## Benchmark picks, tail latency, gray failures, hashing, subsets and cross-zone calls against grpc-go, go-zero, kratos into docs/bench (~45 min)
	@mkdir -p docs/bench/tail docs/bench/tail-churn docs/bench/gray && rm -f docs/bench/tail/*.csv docs/bench/tail-churn/*.csv docs/bench/gray/*.csv
	@echo "runtime: $$(git rev-parse --short HEAD)$$(git diff --quiet HEAD -- runtime go.mod || echo '+dirty')" | tee docs/bench/pick.txt docs/bench/tail.txt docs/bench/tail-churn.txt docs/bench/subset.txt docs/bench/crosszone.txt > docs/bench/gray.txt
	cd bench && go test -run '^$$' -bench '^BenchmarkPick$$' -benchmem -benchtime 200ms -count 6 -timeout 60m . | tee -a ../docs/bench/pick.txt
	cd bench && go test -run '^$$' -bench '^BenchmarkTail$$' -benchtime 1x -tail.rounds 3 -tail.duration 40s -tail.out ../docs/bench/tail -timeout 60m . | tee -a ../docs/bench/tail.txt
	cd bench && go test -run '^$$' -bench '^BenchmarkTail$$/^policy=(gozero_p2c_ewma|kratos_p2c|lb_p2c_ewma)(#|$$)' -benchtime 1x -tail.rounds 3 -tail.duration 40s -tail.churn 5s -tail.out ../docs/bench/tail-churn -timeout 60m . | tee -a ../docs/bench/tail-churn.txt
	cd bench && go test -run '^$$' -bench '^BenchmarkGray$$' -benchtime 1x -gray.duration 60s -gray.out ../docs/bench/gray -timeout 60m . | tee -a ../docs/bench/gray.txt
	cd bench && go test -run '^$$' -bench '^BenchmarkHashing$$' -benchtime 1x -timeout 60m . | tee ../docs/bench/hashing.txt
	cd bench && go test -run '^$$' -bench '^BenchmarkSubset$$' -benchtime 1x -subset.out ../docs/bench/subset.csv -timeout 60m . | tee -a ../docs/bench/subset.txt
	cd bench && go test -run '^$$' -bench '^BenchmarkCrossZone$$' -benchtime 1x -timeout 60m . | tee -a ../docs/bench/crosszone.txt
	cd bench && ./pickmd.sh ../docs/bench/pick.txt > ../docs/bench/pick.md
	cd bench && go run ./cmd/plot -pick ../docs/bench/pick.txt -tail ../docs/bench/tail.txt -hist ../docs/bench/tail -tail-churn ../docs/bench/tail-churn.txt -hist-churn ../docs/bench/tail-churn -gray ../docs/bench/gray.txt -gray-csv ../docs/bench/gray -subset ../docs/bench/subset.txt -subset-csv ../docs/bench/subset.csv -crosszone ../docs/bench/crosszone.txt -out ../docs/bench

.PHONY: bench-check
bench-check: ## Vet the bench module and run each benchmark once, briefly (~2 min)
	cd bench && go vet ./...
	@cd bench && test -z "$$(gofmt -l .)" || { gofmt -l .; echo "gofmt: files above need formatting"; exit 1; }
	cd bench && go test -count 1 -run . -bench . -benchtime 1x -tail.duration 2s -gray.duration 3s .
	cd bench && go test -count 1 -run '^$$' -bench '^BenchmarkTail$$/^policy=lb_p2c_ewma(#|$$)' -benchtime 1x -tail.rounds 2 -tail.duration 2s -tail.churn 500ms .

.PHONY: tools chromium
tools: $(BUF) $(CONSUL) $(KUBE_APISERVER) protoc chromium plugins ## Install protoc, buf, consul, kube-apiserver, chromium and the plugins

.PHONY: plugins
plugins:
	go build -o $(BIN)/ google.golang.org/protobuf/cmd/protoc-gen-go google.golang.org/grpc/cmd/protoc-gen-go-grpc ./cmd/protoc-gen-go-lb

$(BUF):
	GOBIN=$(dir $(BUF)) go install github.com/bufbuild/buf/cmd/buf@$(BUF_VERSION)

$(CONSUL):
	@echo "building consul $(CONSUL_VERSION) from the Go module proxy (once; cached in $(dir $(CONSUL)))"
	@mkdir -p $(dir $(CONSUL))
	tmp=$$(mktemp -d); trap 'rm -rf "$$tmp"' EXIT; \
	printf 'module consulwrap\n\ngo 1.18\n\nrequire github.com/hashicorp/consul v$(CONSUL_VERSION)\n\nreplace (\n\tgithub.com/hashicorp/consul/api => github.com/hashicorp/consul/api v1.13.0\n\tgithub.com/hashicorp/consul/sdk => github.com/hashicorp/consul/sdk v0.11.0\n)\n' > "$$tmp/go.mod"; \
	cd "$$tmp" && GOFLAGS=-mod=mod go build -o $(CONSUL).tmp github.com/hashicorp/consul && mv $(CONSUL).tmp $(CONSUL)

$(KUBE_APISERVER):
	@echo "building kube-apiserver $(KUBE_VERSION) from the Go module proxy (once; cached in $(dir $(KUBE_APISERVER)))"
	@mkdir -p $(dir $(KUBE_APISERVER))
	tmp=$$(mktemp -d); trap 'rm -rf "$$tmp"' EXIT; cd "$$tmp"; \
	gomod=$$(go mod download -json k8s.io/kubernetes@v$(KUBE_VERSION) | sed -n 's/^\t"GoMod": "\(.*\)",$$/\1/p'); \
	staging=$$(sed -n 's,^\t\(k8s\.io/[^ ]*\) => \./staging/.*,\1,p' "$$gomod"); \
	test -n "$$staging" || { echo "no staging modules found in $$gomod" >&2; exit 1; }; \
	{ printf 'module kubewrap\n\ngo 1.26\n\nrequire k8s.io/kubernetes v$(KUBE_VERSION)\n\nreplace (\n'; \
	  for m in $$staging; do printf '\t%s => %s v0.$(patsubst 1.%,%,$(KUBE_VERSION))\n' "$$m" "$$m"; done; printf ')\n'; } > go.mod; \
	printf 'package kubewrap\n\nimport _ "k8s.io/kubernetes/cmd/kube-apiserver/app"\n' > tools.go; \
	go mod tidy && go build -o $(KUBE_APISERVER).tmp k8s.io/kubernetes/cmd/kube-apiserver && mv $(KUBE_APISERVER).tmp $(KUBE_APISERVER)

.PHONY: protoc
protoc:
	@command -v protoc >/dev/null || { echo "installing protoc (Debian protobuf-compiler)"; \
		$(SUDO) apt-get install -y -q protobuf-compiler || { $(SUDO) apt-get update -q && $(SUDO) apt-get install -y -q protobuf-compiler; }; }

# Headless Chromium for the live page's browser test (Debian's package).
chromium:
	@command -v chromium >/dev/null || { echo "installing chromium (Debian chromium)"; \
		$(SUDO) apt-get install -y -q chromium || { $(SUDO) apt-get update -q && $(SUDO) apt-get install -y -q chromium; }; }

.PHONY: clean
clean: ## Remove built plugins
	rm -rf .tmp
