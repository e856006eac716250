package buildall

import (
	"errors"
	"flag"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/google/go-containerregistry/pkg/name"
	specs "github.com/opencontainers/image-spec/specs-go/v1"

	"kiln/builder"
	"kiln/builder/runner"
	"kiln/platform"
)

var update = flag.Bool("update", false, "rewrite the golden files under testdata/")

// TestPlan: how each (image, platform) builds on an amd64 host, decided
// from the Dockerfile before any work.
func TestPlan(t *testing.T) {
	aarch64 := binfmtDir(t, map[string]string{"status": "enabled", "qemu-aarch64": "enabled"})
	tests := []struct {
		name        string
		dockerfile  string
		required    []specs.Platform
		optional    []specs.Platform
		opts        []Option
		wantModes   []runner.Mode
		wantErrs    []string // per target; "" = none
		wantBlocked bool
	}{
		{
			name: "native and cross COPY-only", dockerfile: copyOnly, required: []specs.Platform{amd64, arm64},
			wantModes: []runner.Mode{runner.Native, runner.Cross}, wantErrs: []string{"", ""},
		},
		{
			name: "cross with RUN fails up front", dockerfile: runBuild, required: []specs.Platform{amd64, arm64},
			wantModes:   []runner.Mode{runner.Native, runner.Blocked},
			wantErrs:    []string{"", `images.api linux/arm64: stage "build" needs to run code (Dockerfile:3 RUN make): build it on an arm64 node (runner = "kubernetes") or pass --allow-emulation with a registered binfmt handler for arm64`},
			wantBlocked: true,
		},
		{
			name: "optional platform with RUN is dropped", dockerfile: runBuild, required: []specs.Platform{amd64}, optional: []specs.Platform{arm64},
			wantModes: []runner.Mode{runner.Native, runner.Blocked}, wantErrs: []string{"", `images.api linux/arm64: stage "build" needs to run code`},
		},
		{
			name: "emulation allowed with a handler", dockerfile: runBuild, required: []specs.Platform{amd64, arm64},
			opts:      []Option{WithAllowEmulation(true), WithBinfmtDir(aarch64)},
			wantModes: []runner.Mode{runner.Native, runner.Emulated}, wantErrs: []string{"", ""},
		},
		{
			name: "emulation allowed, no handler", dockerfile: runBuild, required: []specs.Platform{amd64, s390x},
			opts:        []Option{WithAllowEmulation(true), WithBinfmtDir(aarch64)},
			wantModes:   []runner.Mode{runner.Native, runner.Blocked},
			wantErrs:    []string{"", "build it on an s390x node (runner = \"kubernetes\") or pass --allow-emulation with a registered binfmt handler for s390x; no binfmt handler for s390x is registered"},
			wantBlocked: true,
		},
		{
			name: "bad Dockerfile", dockerfile: "FROM scratch AS a\nCOPY --from=a /x /x\n", required: []specs.Platform{amd64}, optional: []specs.Platform{arm64},
			wantModes: []runner.Mode{runner.Blocked, runner.Blocked}, wantErrs: []string{"images.api linux/amd64: Dockerfile:", "images.api linux/arm64: Dockerfile:"}, wantBlocked: true,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := newTest(t, &fakeRunner{}, tt.opts...)
			plan, err := c.Plan(t.Context(), []Image{testImage(t, "api", tt.dockerfile, tt.required, tt.optional)})
			if err != nil {
				t.Fatal(err)
			}
			ip := plan.Images[0]
			if len(ip.Targets) != len(tt.wantModes) {
				t.Fatalf("%d targets, want %d", len(ip.Targets), len(tt.wantModes))
			}
			for i, tg := range ip.Targets {
				if tg.Execution.Mode != tt.wantModes[i] {
					t.Errorf("%s: mode %s, want %s", platform.Format(tg.Platform), tg.Execution.Mode, tt.wantModes[i])
				}
				switch {
				case tt.wantErrs[i] == "" && tg.Err != nil:
					t.Errorf("%s: error %v", platform.Format(tg.Platform), tg.Err)
				case tt.wantErrs[i] != "" && (tg.Err == nil || !strings.Contains(tg.Err.Error(), tt.wantErrs[i])):
					t.Errorf("%s: error %v, want one containing %q", platform.Format(tg.Platform), tg.Err, tt.wantErrs[i])
				}
			}
			if got := ip.Blocked() != nil; got != tt.wantBlocked || plan.Failed() != tt.wantBlocked {
				t.Errorf("blocked %v (plan failed %v), want %v", got, plan.Failed(), tt.wantBlocked)
			}
		})
	}
}

func TestPlanRejects(t *testing.T) {
	ok := func() Image { return testImage(t, "api", copyOnly, []specs.Platform{amd64}, nil) }
	with := func(f func(*Image)) []Image { im := ok(); f(&im); return []Image{im} }
	tests := []struct {
		name    string
		images  []Image
		wantErr error
		wantMsg string
	}{
		{name: "nothing", wantErr: ErrInvalid, wantMsg: "no images"},
		{name: "no required platform", images: with(func(im *Image) { im.Platforms = nil }), wantErr: ErrInvalid, wantMsg: "no required platforms"},
		{name: "platform twice", images: with(func(im *Image) { im.OptionalPlatforms = []specs.Platform{platform.MustParse("amd64")} }), wantErr: ErrInvalid, wantMsg: "linux/amd64 twice"},
		{name: "stdin context", images: with(func(im *Image) { im.Request.Context = "-" }), wantErr: runner.ErrStdinContext},
		{name: "push without tags", images: with(func(im *Image) { im.Push = true }), wantErr: ErrInvalid, wantMsg: "no tags"},
		{name: "nowhere to go", images: with(func(im *Image) { im.OCIDir = "" }), wantErr: ErrInvalid, wantMsg: "nowhere"},
		{name: "same name twice", images: []Image{ok(), ok()}, wantErr: ErrInvalid, wantMsg: "listed twice"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := newTest(t, &fakeRunner{}).Plan(t.Context(), tt.images)
			if !errors.Is(err, tt.wantErr) || !strings.Contains(err.Error(), tt.wantMsg) {
				t.Errorf("error %v, want %v with %q", err, tt.wantErr, tt.wantMsg)
			}
		})
	}
}

// TestPlanString compares the --plan output with testdata/plan.golden.
func TestPlanString(t *testing.T) {
	tag := func(s string) name.Reference {
		ref, err := name.ParseReference(s)
		if err != nil {
			t.Fatal(err)
		}
		return ref
	}
	api := testImage(t, "api", copyOnly, []specs.Platform{amd64, arm64}, []specs.Platform{s390x})
	api.Tags, api.Push, api.OCIDir = []name.Reference{tag("registry.example.com/acme/api:1.4.2"), tag("registry.example.com/acme/api:latest")}, true, ""
	tools := testImage(t, "tools", runBuild, []specs.Platform{amd64}, []specs.Platform{arm64})
	tools.OCIDir = "out/tools"
	gen := testImage(t, "gen", "FROM --platform=$BUILDPLATFORM golang:1.22 AS build\nRUN go build -o /app .\nFROM scratch\nCOPY --from=build /app /app\n", []specs.Platform{arm64}, nil)
	gen.OCIDir = "out/gen"
	broken := testImage(t, "broken", runBuild, []specs.Platform{arm64, amd64}, nil)
	broken.OCIDir = "out/broken"
	emulated := Image{Name: "emu", Request: builder.Request{Context: tools.Request.Context}, Platforms: []specs.Platform{arm64}, OCIDir: "out/emu"}

	c := newTest(t, &fakeRunner{}, WithJobs(3))
	plan, err := c.Plan(t.Context(), []Image{api, tools, gen, broken})
	if err != nil {
		t.Fatal(err)
	}
	ce := newTest(t, &fakeRunner{}, WithAllowEmulation(true), WithBinfmtDir(binfmtDir(t, map[string]string{"qemu-aarch64": "enabled"})))
	planEmu, err := ce.Plan(t.Context(), []Image{emulated})
	if err != nil {
		t.Fatal(err)
	}
	golden(t, "plan.golden", plan.String()+"---\n"+planEmu.String())
}

func golden(t *testing.T, file, got string) {
	t.Helper()
	path := filepath.Join("testdata", file)
	if *update {
		if err := os.MkdirAll("testdata", 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(path, []byte(got), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	want, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("%v (run with -update to create it)", err)
	}
	if got != string(want) {
		t.Errorf("output differs from %s (run with -update to accept):\n--- got\n%s--- want\n%s", path, got, want)
	}
}
