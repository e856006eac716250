package runner

import (
	"errors"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"kiln/builder"
	"kiln/platform"
)

var (
	amd64 = platform.MustParse("linux/amd64")
	arm64 = platform.MustParse("linux/arm64")
)

// binfmtDir makes a fake binfmt_misc mount: name → first line.
func binfmtDir(t *testing.T, entries map[string]string) string {
	t.Helper()
	dir := t.TempDir()
	for name, state := range entries {
		body := state + "\ninterpreter /usr/bin/" + name + "\nflags: F\n"
		if name == "register" {
			body = ""
		}
		if err := os.WriteFile(filepath.Join(dir, name), []byte(body), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	return dir
}

func TestDecide(t *testing.T) {
	withAarch64 := binfmtDir(t, map[string]string{"status": "enabled", "register": "", "qemu-aarch64": "enabled"})
	disabled := binfmtDir(t, map[string]string{"status": "enabled", "qemu-aarch64": "disabled"})
	allOff := binfmtDir(t, map[string]string{"status": "disabled", "qemu-aarch64": "enabled"})
	onlyArmeb := binfmtDir(t, map[string]string{"qemu-armeb": "enabled", "qemu-aarch64": "enabled"})
	withArm := binfmtDir(t, map[string]string{"qemu-arm": "enabled"})

	const runBuild = "FROM scratch AS build\nCOPY src /src\nRUN make\n\nFROM scratch\nCOPY --from=build /out /app\n"
	tests := []struct {
		name         string
		dockerfile   string
		target       string
		platform     string
		emu          Emulation
		wantMode     Mode
		wantRuns     int
		wantHandlers []string
		wantErr      string // substring; "" = no error
	}{
		{name: "native COPY-only", dockerfile: "FROM scratch\nCOPY a /a\n", platform: "linux/amd64", wantMode: Native},
		{name: "native with RUN", dockerfile: "FROM busybox\nRUN true\n", platform: "linux/amd64", wantMode: Native, wantRuns: 1},
		{name: "386 runs on amd64", dockerfile: "FROM busybox\nRUN true\n", platform: "linux/386", wantMode: Native, wantRuns: 1},
		{name: "cross COPY-only", dockerfile: "FROM scratch\nARG TARGETARCH\nCOPY bin/${TARGETARCH}/app /app\n", platform: "linux/arm64", wantMode: Cross},
		{
			name: "cross with RUN in a needed stage", dockerfile: runBuild, platform: "linux/arm64", wantMode: Blocked, wantRuns: 1,
			wantErr: `stage "build" needs to run code (Dockerfile:3 RUN make): build it on an arm64 node (runner = "kubernetes") or pass --allow-emulation with a registered binfmt handler for arm64`,
		},
		{name: "RUN only in a stage the target skips", dockerfile: "FROM scratch AS test\nRUN make test\nFROM scratch\nCOPY a /a\n", platform: "linux/arm64", wantMode: Cross},
		{name: "the target is the RUN stage", dockerfile: runBuild, target: "build", platform: "linux/arm64", wantMode: Blocked, wantRuns: 1, wantErr: `stage "build"`},
		{
			name:       "RUN on the build platform",
			dockerfile: "FROM --platform=$BUILDPLATFORM golang:1.22 AS build\nARG TARGETARCH\nRUN GOARCH=$TARGETARCH go build -o /out/app .\nFROM scratch\nCOPY --from=build /out/app /app\n",
			platform:   "linux/arm64", wantMode: Cross, wantRuns: 1,
		},
		{
			name:       "a stage FROM a build-platform stage runs there too",
			dockerfile: "FROM --platform=$BUILDPLATFORM golang:1.22 AS build\nFROM build AS test\nRUN go test ./...\nFROM scratch\nCOPY --from=test /x /x\n",
			platform:   "linux/arm64", wantMode: Cross, wantRuns: 1,
		},
		{
			name:       "native target, foreign stage",
			dockerfile: "FROM --platform=linux/arm64 alpine AS tools\nRUN apk add jq\nFROM scratch\nCOPY --from=tools /usr/bin/jq /jq\n",
			platform:   "linux/amd64", wantMode: Blocked, wantRuns: 1, wantErr: `stage "tools" needs to run code (Dockerfile:2 RUN apk add jq): build it on an arm64 node`,
		},
		{
			name:       "ONBUILD RUN trigger of a stage in the Dockerfile",
			dockerfile: "FROM scratch AS base\nONBUILD RUN make\nFROM base\nCOPY a /a\n",
			platform:   "linux/arm64", wantMode: Blocked, wantRuns: 1, wantErr: `stage "1" needs to run code (Dockerfile:2 ONBUILD RUN make)`,
		},
		{
			name:       "COPY --from by index reaches a RUN",
			dockerfile: "FROM scratch\nRUN make\nFROM scratch\nCOPY --from=0 /a /a\n",
			platform:   "linux/arm64", wantMode: Blocked, wantRuns: 1, wantErr: `stage "0" needs to run code (Dockerfile:2 RUN make)`,
		},
		{
			name:       "RUN --mount from a stage with RUN",
			dockerfile: "FROM --platform=$BUILDPLATFORM scratch AS tool\nRUN make tool\nFROM --platform=$BUILDPLATFORM scratch AS gen\nRUN --mount=from=tool,target=/t /t/gen\nFROM scratch\nCOPY --from=gen /g /g\n",
			platform:   "linux/arm64", wantMode: Cross, wantRuns: 2,
		},
		{name: "emulation allowed with a handler", dockerfile: runBuild, platform: "linux/arm64", emu: Emulation{Allow: true, BinfmtDir: withAarch64}, wantMode: Emulated, wantRuns: 1, wantHandlers: []string{"qemu-aarch64"}},
		{
			name: "emulation allowed, handler disabled", dockerfile: runBuild, platform: "linux/arm64", emu: Emulation{Allow: true, BinfmtDir: disabled}, wantMode: Blocked, wantRuns: 1,
			wantErr: "or pass --allow-emulation with a registered binfmt handler for arm64; no binfmt handler for arm64 is registered",
		},
		{name: "emulation allowed, binfmt_misc off", dockerfile: runBuild, platform: "linux/arm64", emu: Emulation{Allow: true, BinfmtDir: allOff}, wantMode: Blocked, wantRuns: 1, wantErr: "no binfmt handler for arm64 is registered"},
		{name: "emulation allowed, no binfmt_misc", dockerfile: runBuild, platform: "linux/arm64", emu: Emulation{Allow: true, BinfmtDir: filepath.Join(t.TempDir(), "none")}, wantMode: Blocked, wantRuns: 1, wantErr: "no binfmt handler for arm64 is registered"},
		{name: "emulation not allowed, handler there", dockerfile: runBuild, platform: "linux/arm64", emu: Emulation{BinfmtDir: withAarch64}, wantMode: Blocked, wantRuns: 1, wantErr: "build it on an arm64 node"},
		{name: "qemu-armeb is not arm", dockerfile: runBuild, platform: "linux/arm/v7", emu: Emulation{Allow: true, BinfmtDir: onlyArmeb}, wantMode: Blocked, wantRuns: 1, wantErr: "no binfmt handler for arm/v7 is registered"},
		{name: "qemu-arm is arm", dockerfile: runBuild, platform: "linux/arm/v7", emu: Emulation{Allow: true, BinfmtDir: withArm}, wantMode: Emulated, wantRuns: 1, wantHandlers: []string{"qemu-arm"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p := platform.MustParse(tt.platform)
			plan, err := PlanFor([]byte(tt.dockerfile), "Dockerfile", builder.Request{Platform: p, BuildPlatform: amd64, Target: tt.target})
			if err != nil {
				t.Fatal(err)
			}
			ex, err := Decide(amd64, p, plan, tt.emu)
			switch {
			case tt.wantErr == "" && err != nil:
				t.Fatalf("error: %v", err)
			case tt.wantErr != "" && (err == nil || !strings.Contains(err.Error(), tt.wantErr)):
				t.Fatalf("error %v, want one containing %q", err, tt.wantErr)
			case tt.wantErr != "" && !errors.Is(err, ErrNeedsMatchingNode):
				t.Errorf("error %v does not match ErrNeedsMatchingNode", err)
			}
			if ex.Mode != tt.wantMode || ex.Runs != tt.wantRuns || !slices.Equal(ex.Handlers, tt.wantHandlers) {
				t.Errorf("got mode %s, %d runs, handlers %v; want %s, %d, %v", ex.Mode, ex.Runs, ex.Handlers, tt.wantMode, tt.wantRuns, tt.wantHandlers)
			}
		})
	}
}

func TestRunSitesLongInstruction(t *testing.T) {
	df := "FROM scratch\nRUN apt-get update && \\\n    apt-get install -y build-essential curl git ca-certificates wget unzip\n"
	plan, err := PlanFor([]byte(df), "build/Dockerfile", builder.Request{Platform: arm64, BuildPlatform: amd64})
	if err != nil {
		t.Fatal(err)
	}
	sites := RunSites(plan)
	if len(sites) != 1 {
		t.Fatalf("sites = %+v", sites)
	}
	s := sites[0]
	if s.Line != 2 || s.Stage != "0" || !platform.Equal(s.Platform, arm64) || strings.Contains(s.Instruction, "\n") ||
		len([]rune(s.Instruction)) != maxInstruction || !strings.HasSuffix(s.Instruction, "…") {
		t.Errorf("site = %+v", s)
	}
	if want := "build/Dockerfile:2 RUN apt-get update && apt-get install"; !strings.HasPrefix(s.Where(), want) {
		t.Errorf("Where() = %q, want it to begin %q", s.Where(), want)
	}
}

func TestNamesArch(t *testing.T) {
	tests := []struct {
		name, want string
		ok         bool
	}{
		{"qemu-aarch64", "qemu-aarch64", true},
		{"qemu-arm", "qemu-arm", true},
		{"qemu-arm-static", "qemu-arm", true},
		{"qemu-armeb", "qemu-arm", false},
		{"qemu-armeb-qemu-arm", "qemu-arm", true},
		{"qemu-ppc64le", "qemu-ppc64", false},
		{"qemu-ppc64le", "qemu-ppc64le", true},
		{"fex-x86_64", "qemu-x86_64", false},
	}
	for _, tt := range tests {
		if got := namesArch(tt.name, tt.want); got != tt.ok {
			t.Errorf("namesArch(%q, %q) = %v, want %v", tt.name, tt.want, got, tt.ok)
		}
	}
}

func TestBinfmtHandlerUnknownArch(t *testing.T) {
	dir := binfmtDir(t, map[string]string{"qemu-sparc64": "enabled"})
	if h, ok := BinfmtHandler(dir, platform.MustParse("linux/sparc64")); ok {
		t.Errorf("found %s for an architecture kiln has no QEMU name for", h)
	}
}
