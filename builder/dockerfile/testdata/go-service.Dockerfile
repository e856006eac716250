# syntax=docker/dockerfile:1.7
# A typical cross-compiled Go service: build natively, copy into distroless.

ARG GO_VERSION=1.22
ARG REGISTRY=gcr.io/distroless

FROM --platform=$BUILDPLATFORM golang:${GO_VERSION}-alpine AS Build
ARG TARGETOS TARGETARCH
WORKDIR /src
RUN --mount=type=bind,source=go.mod,target=go.mod \
    --mount=type=cache,target=/go/pkg/mod \
    go mod download
COPY . .
RUN --mount=type=cache,target=/root/.cache/go-build \
    CGO_ENABLED=0 GOOS=$TARGETOS GOARCH=$TARGETARCH go build -o /out/api ./cmd/api

FROM --platform=$BUILDPLATFORM golangci/golangci-lint:v1.59 AS lint
COPY --from=build /src /src
RUN golangci-lint run

FROM build AS test
RUN go test ./...

FROM ${REGISTRY}/static-debian12:nonroot AS runtime
COPY --from=BUILD /out/api /api
COPY --from=alpine:3.19 /etc/ssl/certs/ca-certificates.crt /etc/ssl/certs/
USER nonroot
ENTRYPOINT ["/api"]
