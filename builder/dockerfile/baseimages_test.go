package dockerfile

import (
	"errors"
	"fmt"
	"reflect"
	"strings"
	"testing"

	specs "github.com/opencontainers/image-spec/specs-go/v1"

	"kiln/platform"
)

var (
	amd64 = platform.MustParse("linux/amd64")
	arm64 = platform.MustParse("linux/arm64")
	armv7 = platform.MustParse("linux/arm/v7")
)

func from(ref string, p specs.Platform, stage string, line int) BaseImage {
	return BaseImage{Ref: ref, Platform: p, Stage: stage, Line: line, Kind: KindFrom}
}

func copyFrom(ref string, p specs.Platform, stage string, line int) BaseImage {
	return BaseImage{Ref: ref, Platform: p, Stage: stage, Line: line, Kind: KindCopyFrom}
}

func mountFrom(ref string, p specs.Platform, stage string, line int) BaseImage {
	return BaseImage{Ref: ref, Platform: p, Stage: stage, Line: line, Kind: KindMountFrom}
}

func TestBaseImages(t *testing.T) {
	onAMD64 := Options{TargetPlatform: amd64}
	tests := []struct {
		name       string
		dockerfile string
		opts       Options
		want       []BaseImage
		wantErr    string // substring of the error; "" = no error
		wantLine   int    // line of the *Error when wantErr is set; 0 = not an *Error with a line
	}{
		{
			name:       "single FROM",
			dockerfile: "FROM alpine:3.19\nRUN apk add curl\n",
			opts:       onAMD64,
			want:       []BaseImage{from("alpine:3.19", amd64, "0", 1)},
		},
		{
			name:       "scratch is skipped",
			dockerfile: "FROM scratch\nCOPY app /\n",
			opts:       onAMD64,
			want:       nil,
		},
		{
			name:       "global ARG default",
			dockerfile: "ARG VERSION=3.19\nFROM alpine:${VERSION}\n",
			opts:       onAMD64,
			want:       []BaseImage{from("alpine:3.19", amd64, "0", 2)},
		},
		{
			name:       "build arg overrides global ARG default",
			dockerfile: "ARG VERSION=3.19\nFROM alpine:$VERSION\n",
			opts:       Options{TargetPlatform: amd64, Args: map[string]string{"VERSION": "3.20"}},
			want:       []BaseImage{from("alpine:3.20", amd64, "0", 2)},
		},
		{
			name:       "registry and version from ARGs",
			dockerfile: "ARG REGISTRY=registry.example.com\nARG VERSION\nFROM ${REGISTRY}/base:${VERSION}\n",
			opts:       Options{TargetPlatform: amd64, Args: map[string]string{"VERSION": "1.4.2"}},
			want:       []BaseImage{from("registry.example.com/base:1.4.2", amd64, "0", 3)},
		},
		{
			name:       "ARG default built from an earlier ARG",
			dockerfile: "ARG GO=1.22\nARG BASE=golang:${GO}-alpine\nFROM $BASE\n",
			opts:       Options{TargetPlatform: amd64, Args: map[string]string{"GO": "1.23"}},
			want:       []BaseImage{from("golang:1.23-alpine", amd64, "0", 3)},
		},
		{
			name:       "undefined ARG expands to empty",
			dockerfile: "FROM alpine${SUFFIX}\n",
			opts:       onAMD64,
			want:       []BaseImage{from("alpine", amd64, "0", 1)},
		},
		{
			name:       "build arg that no ARG declares is invisible to FROM",
			dockerfile: "FROM alpine:${TAG:-3.19}\n",
			opts:       Options{TargetPlatform: amd64, Args: map[string]string{"TAG": "3.20"}},
			want:       []BaseImage{from("alpine:3.19", amd64, "0", 1)},
		},
		{
			name:       "FROM that expands to empty",
			dockerfile: "ARG BASE\n\nFROM $BASE\n",
			opts:       onAMD64,
			wantErr:    `FROM: BASE is declared without a default and no --build-arg gives it: image name "$BASE" expands to an empty string`,
			wantLine:   3,
		},
		{
			name:       "FROM of undeclared variables names them",
			dockerfile: "FROM ${BASE_IMAGE}:${BASE_TAG}\n",
			opts:       onAMD64,
			wantErr:    `FROM: BASE_IMAGE and BASE_TAG are not declared (FROM sees only the ARGs before the first FROM): image name "${BASE_IMAGE}:${BASE_TAG}" expands to invalid image reference ":"`,
			wantLine:   1,
		},
		{
			name:       "FROM of a build arg no ARG declares says so",
			dockerfile: "ARG BASE=alpine\nFROM ${BASE}:${TAG}\n",
			opts:       Options{TargetPlatform: amd64, Args: map[string]string{"TAG": "3.20"}},
			wantErr:    `FROM: TAG is not declared (FROM sees only the ARGs before the first FROM) (--build-arg TAG is ignored without an ARG TAG before the first FROM): image name "${BASE}:${TAG}" expands to invalid image reference "alpine:"`,
			wantLine:   2,
		},
		{
			name:       "FROM of a misspelt ARG suggests the declared one",
			dockerfile: "ARG BASE_IMAGE=alpine\nFROM ${BASE_IMGE}\n",
			opts:       onAMD64,
			wantErr:    `FROM: BASE_IMGE is not declared (FROM sees only the ARGs before the first FROM) (did you mean BASE_IMAGE?): image name "${BASE_IMGE}" expands to an empty string`,
			wantLine:   2,
		},
		{
			name:       "FROM of declared ARGs without values",
			dockerfile: "ARG REG\nARG TAG\nFROM ${REG}alpine:${TAG}\n",
			opts:       onAMD64,
			wantErr:    `FROM: REG and TAG are declared without a default and no --build-arg gives them: image name "${REG}alpine:${TAG}" expands to invalid image reference "alpine:"`,
			wantLine:   3,
		},
		{
			name:       "required ARG missing",
			dockerfile: "ARG BASE\nFROM ${BASE:?is-required}\n",
			opts:       onAMD64,
			wantErr:    "BASE: is-required",
			wantLine:   2,
		},
		{
			name:       "ARG redefined inside a stage does not affect FROM",
			dockerfile: "ARG VERSION=3.19\nFROM alpine:${VERSION} AS one\nARG VERSION=3.20\nFROM alpine:${VERSION}\nARG VERSION=edge\n",
			opts:       Options{TargetPlatform: amd64, AllStages: true},
			want:       []BaseImage{from("alpine:3.19", amd64, "one", 2)},
		},
		{
			name:       "automatic target ARGs",
			dockerfile: "FROM alpine:3.19-${TARGETOS}-${TARGETARCH}${TARGETVARIANT}\nFROM example.com/${TARGETPLATFORM}:latest\n",
			opts:       Options{TargetPlatform: armv7, AllStages: true},
			want: []BaseImage{
				from("alpine:3.19-linux-armv7", armv7, "0", 1),
				from("example.com/linux/arm/v7:latest", armv7, "1", 2),
			},
		},
		{
			name:       "automatic build ARGs and --platform=$BUILDPLATFORM",
			dockerfile: "FROM --platform=$BUILDPLATFORM tools:${BUILDOS}-${BUILDARCH}${BUILDVARIANT}\n",
			opts:       Options{TargetPlatform: arm64, BuildPlatform: amd64},
			want:       []BaseImage{from("tools:linux-amd64", amd64, "0", 1)},
		},
		{
			name:       "build platform defaults to the target platform",
			dockerfile: "FROM --platform=$BUILDPLATFORM golang:1.22\n",
			opts:       Options{TargetPlatform: arm64},
			want:       []BaseImage{from("golang:1.22", arm64, "0", 1)},
		},
		{
			name:       "zero target platform is the host",
			dockerfile: "FROM alpine\n",
			opts:       Options{},
			want:       []BaseImage{from("alpine", platform.Host(), "0", 1)},
		},
		{
			name:       "build args override automatic ARGs",
			dockerfile: "FROM example.com/base-${TARGETARCH}:1\n",
			opts:       Options{TargetPlatform: amd64, Args: map[string]string{"TARGETARCH": "riscv64"}},
			want:       []BaseImage{from("example.com/base-riscv64:1", amd64, "0", 1)},
		},
		{
			name:       "--platform is expanded, parsed and normalised",
			dockerfile: "ARG P=aarch64\nFROM --platform=linux/${P} alpine\n",
			opts:       onAMD64,
			want:       []BaseImage{from("alpine", arm64, "0", 2)},
		},
		{
			name: "multi-stage Go build",
			dockerfile: `# syntax=docker/dockerfile:1
FROM --platform=$BUILDPLATFORM golang:1.22 AS build
ARG TARGETOS TARGETARCH
WORKDIR /src
COPY . .
RUN --mount=type=cache,target=/root/.cache/go-build \
    GOOS=$TARGETOS GOARCH=$TARGETARCH go build -o /out/app .

FROM scratch
COPY --from=build /out/app /app
ENTRYPOINT ["/app"]
`,
			opts: Options{TargetPlatform: arm64, BuildPlatform: amd64},
			want: []BaseImage{from("golang:1.22", amd64, "build", 2)},
		},
		{
			name:       "stage names are case-insensitive",
			dockerfile: "FROM alpine:3.19 AS Base\nFROM BASE AS next\nCOPY --from=bAsE /etc/os-release /\n",
			opts:       onAMD64,
			want:       []BaseImage{from("alpine:3.19", amd64, "base", 1)},
		},
		{
			name:       "stage chosen by a global ARG",
			dockerfile: "ARG FLAVOR=slim\nFROM debian:12 AS base-full\nFROM debian:12-slim AS base-slim\nFROM base-${FLAVOR}\n",
			opts:       onAMD64,
			want:       []BaseImage{from("debian:12-slim", amd64, "base-slim", 3)},
		},
		{
			name:       "FROM sees only earlier stages",
			dockerfile: "FROM later\nFROM alpine AS later\n",
			opts:       Options{TargetPlatform: amd64, AllStages: true},
			want:       []BaseImage{from("later", amd64, "0", 1), from("alpine", amd64, "later", 2)},
		},
		{
			name:       "COPY --from an image uses the target platform",
			dockerfile: "FROM --platform=$BUILDPLATFORM golang:1.22 AS build\nCOPY --from=alpine:3.19 /etc/ssl/certs /certs\n",
			opts:       Options{TargetPlatform: arm64, BuildPlatform: amd64},
			want: []BaseImage{
				from("golang:1.22", amd64, "build", 1),
				copyFrom("alpine:3.19", arm64, "build", 2),
			},
		},
		{
			name:       "COPY --from a stage index",
			dockerfile: "FROM alpine\nFROM scratch\nCOPY --from=0 /bin/sh /sh\n",
			opts:       onAMD64,
			want:       []BaseImage{from("alpine", amd64, "0", 1)},
		},
		{
			name:       "COPY --from an index that is no stage",
			dockerfile: "FROM alpine\nCOPY --from=3 /x /x\n",
			opts:       onAMD64,
			wantErr:    "COPY: --from=3: no stage with that index",
			wantLine:   2,
		},
		{
			name:       "COPY --from with a variable",
			dockerfile: "ARG IMG=alpine\nFROM scratch\nCOPY --from=$IMG /x /x\n",
			opts:       onAMD64,
			wantErr:    "variables are not expanded in --from",
			wantLine:   3,
		},
		{
			name: "RUN --mount from an image and from a stage",
			dockerfile: "FROM golang:1.22 AS build\n" +
				"FROM alpine\n" +
				"RUN --mount=type=bind,from=busybox:1.36,target=/bb \\\n" +
				"    --mount=type=bind,from=BUILD,target=/build true\n",
			opts: onAMD64,
			want: []BaseImage{
				from("golang:1.22", amd64, "build", 1),
				from("alpine", amd64, "1", 2),
				mountFrom("busybox:1.36", amd64, "1", 3),
			},
		},
		{
			name: "target selects only the stages it needs",
			dockerfile: `FROM golang:1.22 AS build
FROM golangci/golangci-lint:v1.59 AS lint
COPY --from=build /src /src
FROM gcr.io/distroless/static AS runtime
COPY --from=build /out/app /app
FROM debian:12 AS debug
`,
			opts: Options{TargetPlatform: amd64, Target: "runtime"},
			want: []BaseImage{
				from("golang:1.22", amd64, "build", 1),
				from("gcr.io/distroless/static", amd64, "runtime", 4),
			},
		},
		{
			name: "target needs stages through FROM, COPY --from index and mount",
			dockerfile: `FROM alpine:3.19 AS base
FROM base AS deps
RUN --mount=from=busybox:1.36,target=/bb true
FROM node:20 AS assets
FROM python:3.12 AS unused
FROM rust:1.79 AS tool
FROM deps AS final
COPY --from=2 /assets /assets
RUN --mount=type=bind,from=tool,target=/t true
`,
			opts: Options{TargetPlatform: amd64, Target: "FINAL"},
			want: []BaseImage{
				from("alpine:3.19", amd64, "base", 1),
				mountFrom("busybox:1.36", amd64, "deps", 3),
				from("node:20", amd64, "assets", 4),
				from("rust:1.79", amd64, "tool", 6),
			},
		},
		{
			name:       "COPY --from a later stage is a stage",
			dockerfile: "FROM alpine AS a\nCOPY --from=b /x /x\nFROM busybox AS b\n",
			opts:       Options{TargetPlatform: amd64, Target: "a"},
			want:       []BaseImage{from("alpine", amd64, "a", 1), from("busybox", amd64, "b", 3)},
		},
		{
			name:       "AllStages lists every stage",
			dockerfile: "FROM golang:1.22 AS build\nFROM debian:12 AS debug\nFROM alpine AS runtime\n",
			opts:       Options{TargetPlatform: amd64, Target: "runtime", AllStages: true},
			want: []BaseImage{
				from("golang:1.22", amd64, "build", 1),
				from("debian:12", amd64, "debug", 2),
				from("alpine", amd64, "runtime", 3),
			},
		},
		{
			name:       "unknown target lists the stages",
			dockerfile: "FROM golang:1.22 AS build\nFROM alpine AS runtime\n",
			opts:       Options{TargetPlatform: amd64, Target: "test"},
			wantErr:    `unknown target stage "test" in Dockerfile; stages are: build, runtime`,
		},
		{
			name: "deduplicated on reference and platform",
			dockerfile: "FROM alpine:3.19 AS a\n" +
				"FROM --platform=linux/amd64 alpine:3.19 AS b\n" +
				"FROM alpine:3.19 AS c\n" +
				"COPY --from=alpine:3.19 / /\n",
			opts: Options{TargetPlatform: arm64, AllStages: true},
			want: []BaseImage{
				from("alpine:3.19", arm64, "a", 1),
				from("alpine:3.19", amd64, "b", 2),
			},
		},
		{
			name: "digest-pinned references are kept as written",
			dockerfile: "FROM alpine@sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef\n" +
				"COPY --from=docker.io/library/busybox:1.36@sha256:fedcba9876543210fedcba9876543210fedcba9876543210fedcba9876543210 / /\n",
			opts: onAMD64,
			want: []BaseImage{
				from("alpine@sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef", amd64, "0", 1),
				copyFrom("docker.io/library/busybox:1.36@sha256:fedcba9876543210fedcba9876543210fedcba9876543210fedcba9876543210", amd64, "0", 2),
			},
		},
		{
			name:       "syntax and escape directives",
			dockerfile: "# syntax=docker/dockerfile:1.7\n# escape=`\nFROM `\n  mcr.microsoft.com/windows/nanoserver:ltsc2022\nRUN dir c:\\\n",
			opts:       onAMD64,
			want:       []BaseImage{from("mcr.microsoft.com/windows/nanoserver:ltsc2022", amd64, "0", 3)},
		},
		{
			name: "heredocs do not break parsing",
			dockerfile: `FROM alpine:3.19
RUN <<EOF
FROM evil:latest
echo hello
EOF
COPY <<-CONF /etc/app.conf
	FROM other
	CONF
FROM busybox:1.36
`,
			opts: Options{TargetPlatform: amd64, AllStages: true},
			want: []BaseImage{from("alpine:3.19", amd64, "0", 1), from("busybox:1.36", amd64, "1", 9)},
		},
		{
			name:       "CRLF line endings and continuation",
			dockerfile: "FROM \\\r\n  alpine:3.19 \\\r\n  AS base\r\nRUN true\r\n",
			opts:       onAMD64,
			want:       []BaseImage{from("alpine:3.19", amd64, "base", 1)},
		},
		{
			name:       "ONBUILD triggers of a stage run in the stages built on it",
			dockerfile: "FROM alpine AS base\nONBUILD COPY --from=busybox:1.36 /bin/busybox /bin/\nFROM base\n",
			opts:       onAMD64,
			want:       []BaseImage{from("alpine", amd64, "base", 1), copyFrom("busybox:1.36", amd64, "1", 2)},
		},
		{
			name:       "lint directive in a comment does not crash the parser",
			dockerfile: "FROM alpine\n# check=skip=all\nRUN true\n",
			opts:       onAMD64,
			want:       []BaseImage{from("alpine", amd64, "0", 1)},
		},
		{
			name:       "unknown instruction",
			dockerfile: "FROM alpine\n\nFORM busybox\n",
			opts:       onAMD64,
			wantErr:    "Dockerfile:3: unknown instruction: FORM",
			wantLine:   3,
		},
		{
			name:       "FROM with no image",
			dockerfile: "FROM alpine AS a\nFROM\n",
			opts:       onAMD64,
			wantErr:    "Dockerfile:2: FROM requires either one or three arguments",
			wantLine:   2,
		},
		{
			name:       "FROM with too many words",
			dockerfile: "FROM alpine AS a b\n",
			opts:       onAMD64,
			wantErr:    "FROM requires either one or three arguments",
			wantLine:   1,
		},
		{
			name:       "empty file",
			dockerfile: "",
			opts:       onAMD64,
			wantErr:    "Dockerfile:1: file with no instructions",
			wantLine:   1,
		},
		{
			name:       "only comments and ARGs",
			dockerfile: "# a comment\nARG X=1\n",
			opts:       onAMD64,
			wantErr:    "no FROM instruction",
			wantLine:   2,
		},
		{
			name:       "instruction before FROM",
			dockerfile: "ARG X=1\nRUN echo hi\nFROM alpine\n",
			opts:       onAMD64,
			wantErr:    "Dockerfile:2: RUN: only ARG may come before the first FROM",
			wantLine:   2,
		},
		{
			name:       "unterminated heredoc",
			dockerfile: "FROM alpine\nRUN <<EOF\necho hi\n",
			opts:       onAMD64,
			wantErr:    "unterminated heredoc",
			wantLine:   2,
		},
		{
			name:       "upper-case repository is an invalid reference",
			dockerfile: "FROM alpine\nFROM Ubuntu:22.04\n",
			opts:       onAMD64,
			wantErr:    `Dockerfile:2: FROM: invalid image reference "Ubuntu:22.04"`,
			wantLine:   2,
		},
		{
			name:       "invalid reference in a stage the target skips",
			dockerfile: "FROM alpine:3.19:bad AS old\nFROM alpine AS new\n",
			opts:       Options{TargetPlatform: amd64, Target: "new"},
			wantErr:    `invalid image reference "alpine:3.19:bad"`,
			wantLine:   1,
		},
		{
			name:       "invalid COPY --from reference",
			dockerfile: "FROM alpine\nCOPY --from=Busybox /x /x\n",
			opts:       onAMD64,
			wantErr:    `COPY: invalid image reference "Busybox"`,
			wantLine:   2,
		},
		{
			name:       "bad --platform",
			dockerfile: "FROM --platform=linux/sparkle alpine\n",
			opts:       onAMD64,
			wantErr:    "FROM: invalid platform",
			wantLine:   1,
		},
		{
			name:       "--platform that expands to empty",
			dockerfile: "FROM alpine\nFROM --platform=$NOPE alpine\n",
			opts:       onAMD64,
			wantErr:    "--platform=$NOPE expands to an empty string",
			wantLine:   2,
		},
		{
			name:       "stages that need each other",
			dockerfile: "FROM alpine AS a\nCOPY --from=b /x /x\nFROM alpine AS b\nCOPY --from=a /y /y\n",
			opts:       onAMD64,
			wantErr:    "circular dependency between stages",
			wantLine:   4,
		},
		{
			name:       "broken Dockerfile",
			dockerfile: "FROM golang:1.22 AS build\nCOPY --chown\nRUN go build ./...\n",
			opts:       onAMD64,
			wantErr:    "Dockerfile:2: COPY requires at least two arguments",
			wantLine:   2,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := BaseImages([]byte(tt.dockerfile), "Dockerfile", tt.opts)
			if !matchErr(t, err, tt.wantErr, tt.wantLine) {
				return
			}
			if !reflect.DeepEqual(got, tt.want) {
				t.Errorf("BaseImages() =\n%s\nwant\n%s", dump(got), dump(tt.want))
			}
		})
	}
}

// matchErr checks err against the test's expectation; true means carry on
// comparing results.
func matchErr(t *testing.T, err error, wantErr string, wantLine int) bool {
	t.Helper()
	if wantErr == "" {
		if err != nil {
			t.Fatalf("unexpected error: %v", err)
		}
		return true
	}
	if err == nil {
		t.Fatalf("no error, want one containing %q", wantErr)
	}
	t.Logf("error: %v", err)
	if !strings.Contains(err.Error(), wantErr) {
		t.Errorf("error %q does not contain %q", err, wantErr)
	}
	var derr *Error
	switch {
	case wantLine == 0 && errors.As(err, &derr):
		t.Errorf("got *Error at line %d, want a plain error: %v", derr.Line, err)
	case wantLine != 0 && !errors.As(err, &derr):
		t.Errorf("error %v is not an *Error", err)
	case wantLine != 0 && derr.Line != wantLine:
		t.Errorf("error at line %d, want %d: %v", derr.Line, wantLine, err)
	}
	return false
}

func dump(imgs []BaseImage) string {
	var b strings.Builder
	for _, img := range imgs {
		fmt.Fprintf(&b, "  %s %s %s stage=%s line=%d\n", img.Kind, img.Ref, platform.Format(img.Platform), img.Stage, img.Line)
	}
	return b.String()
}

func TestErrorFormat(t *testing.T) {
	cause := errors.New("boom")
	tests := []struct {
		name string
		err  *Error
		want string
	}{
		{"file, line, instruction", &Error{File: "Dockerfile", Line: 7, Msg: "FROM", Err: cause}, "Dockerfile:7: FROM: boom"},
		{"no line", &Error{File: "Dockerfile", Msg: "FROM", Err: cause}, "Dockerfile: FROM: boom"},
		{"no instruction", &Error{File: "a/Dockerfile.prod", Line: 2, Err: cause}, "a/Dockerfile.prod:2: boom"},
		{"cause names the instruction", &Error{File: "Dockerfile", Line: 1, Msg: "FROM", Err: errors.New("FROM requires an image")}, "Dockerfile:1: FROM requires an image"},
		{"no cause", &Error{File: "Dockerfile", Line: 3, Msg: "COPY"}, "Dockerfile:3: COPY"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := tt.err.Error(); got != tt.want {
				t.Errorf("Error() = %q, want %q", got, tt.want)
			}
			if tt.err.Err != nil && !errors.Is(tt.err, tt.err.Err) {
				t.Error("errors.Is does not see the cause")
			}
		})
	}
}

func TestErrorsAreInspectable(t *testing.T) {
	_, err := BaseImages([]byte("FROM alpine AS build\n"), "", Options{TargetPlatform: amd64, Target: "nope"})
	if !errors.Is(err, ErrUnknownTarget) {
		t.Errorf("unknown target: %v does not wrap ErrUnknownTarget", err)
	}
	_, err = BaseImages([]byte("FROM alpine\nFROM Alpine\n"), "svc/Dockerfile", Options{TargetPlatform: amd64})
	var derr *Error
	if !errors.As(err, &derr) {
		t.Fatalf("invalid reference: %v is not an *Error", err)
	}
	want := Error{File: "svc/Dockerfile", Line: 2, Msg: "FROM"}
	if derr.File != want.File || derr.Line != want.Line || derr.Msg != want.Msg || derr.Unwrap() == nil {
		t.Errorf("got %+v, want %+v with a cause", *derr, want)
	}
	_, err = BaseImages(nil, "", Options{TargetPlatform: amd64})
	if !errors.As(err, &derr) || derr.File != "Dockerfile" {
		t.Errorf("empty file without a name: %v, want an *Error for Dockerfile", err)
	}
}
