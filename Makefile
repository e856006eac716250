# kiln — build, test, measure.
#   make            build bin/kiln
#   make test       everything CI runs: vet, gofmt, unit and end-to-end tests
#   make e2e        only the end-to-end tests (real registry process, the built binary)
#   make bench      benchmarks: kiln warm vs crane, skopeo and the raw limit; kiln build vs buildah; layer cache vs kaniko and buildah; build-all via Kubernetes vs local; unpacking a base vs tar -xzf (bench/)
#   make lint       go vet + gofmt
#   make demo       README's main command: kiln build-all of build.toml (hello, amd64+arm64) into out/hello
#   make image      kiln's own image (the static binary on scratch, amd64+arm64) into out/kiln, its debug variant (a busybox shell) into out/kiln-debug
#   make demo-warm  kiln warm of sample multi-arch images from a local registry
#   make deps       install the system packages tests need (Debian; root or sudo)

GO      ?= go
VERSION ?= $(shell git describe --tags --always --dirty 2>/dev/null || echo dev)
LDFLAGS := -s -w -X main.version=$(VERSION)
export CGO_ENABLED ?= 0

.PHONY: all build test unit e2e bench lint deps demo demo-warm hello image clean

all: build

# kiln embeds its small RUN step init, built first (builder/run/initbin/build.sh
# prints its stamp, which kiln must carry to use it).
build:
	stamp=$$(GO=$(GO) sh builder/run/initbin/build.sh $$($(GO) env GOARCH)) && \
	$(GO) build -trimpath -ldflags "$(LDFLAGS) -X kiln/builder/run.initStamp=$$stamp" -o bin/kiln ./cmd/kiln

lint:
	$(GO) vet ./...
	GOARCH=arm64 $(GO) vet ./...   # kiln ships for arm64 nodes too: syscall types differ there
	@out=$$(gofmt -l $$(git ls-files '*.go' | grep -v '/testdata/')); \
	if [ -n "$$out" ]; then echo "gofmt would change:"; echo "$$out"; exit 1; fi

unit:
	$(GO) test -count=1 $$($(GO) list ./... | grep -v '^kiln/test')

e2e: deps build
	$(GO) test -count=1 -timeout 40m ./test/...

test: deps lint build
	$(GO) test -count=1 -timeout 60m ./...

bench: deps build
	bash bench/run.sh
	bash bench/build.sh
	bash bench/buildall.sh
	bash bench/runstep.sh
	bash bench/layercache.sh
	bash bench/unpack.sh
	bash bench/kube.sh

deps:
	@bash .ci/deps.sh

# The sample program, cross-compiled per architecture: the Dockerfile only COPYs it.
hello:
	GOOS=linux GOARCH=amd64 $(GO) build -trimpath -o examples/hello/bin/hello-amd64 ./examples/hello
	GOOS=linux GOARCH=arm64 $(GO) build -trimpath -o examples/hello/bin/hello-arm64 ./examples/hello

demo: build hello
	bin/kiln build-all --config build.toml --reproducible hello

# kiln's own image (the binary on scratch, for pods), built by kiln: out/kiln, and out/kiln-debug with busybox.
image: build
	for a in amd64 arm64; do \
		stamp=$$(GO=$(GO) sh builder/run/initbin/build.sh $$a) && \
		GOOS=linux GOARCH=$$a $(GO) build -trimpath -ldflags "$(LDFLAGS) -X kiln/builder/run.initStamp=$$stamp" -o deploy/image/bin/kiln-$$a ./cmd/kiln || exit 1; \
	done
	cp /etc/ssl/certs/ca-certificates.crt deploy/image/bin/ca-certificates.crt
	sh deploy/image/busybox.sh amd64 deploy/image/bin/busybox-amd64
	sh deploy/image/busybox.sh arm64 deploy/image/bin/busybox-arm64
	bin/kiln build-all --config build.toml --reproducible kiln kiln-debug

demo-warm: deps build
	$(GO) run ./test/demo

clean:
	rm -rf bin out .cache examples/hello/bin deploy/image/bin builder/run/initbin/*/kiln-init*
