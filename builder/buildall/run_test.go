package buildall

import (
	"bytes"
	"context"
	"errors"
	"io"
	"log"
	"net/http/httptest"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"

	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/registry"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/layout"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/google/go-containerregistry/pkg/v1/types"
	specs "github.com/opencontainers/image-spec/specs-go/v1"

	"kiln/builder/runner"
	"kiln/manifest"
	"kiln/platform"
)

// TestRunIsolation: a failed required platform costs its image the index
// and nothing else; a failed optional one is dropped; an image that fails
// up front is never handed to the runner.
func TestRunIsolation(t *testing.T) {
	fr := &fakeRunner{fail: map[string]error{"a linux/arm64": errBoom, "b linux/arm64": errBoom}}
	a := testImage(t, "a", copyOnly, []specs.Platform{amd64, arm64}, nil)
	b := testImage(t, "b", copyOnly, []specs.Platform{amd64}, []specs.Platform{arm64, s390x})
	c := testImage(t, "c", runBuild, []specs.Platform{arm64}, nil)
	d := testImage(t, "d", runBuild, []specs.Platform{amd64}, []specs.Platform{arm64})
	_, rep := planAndRun(t, newTest(t, fr, WithJobs(1)), a, b, c, d)

	want := map[string][]string{
		"a": {"linux/amd64 built|skipped", "linux/arm64 failed"},
		"b": {"linux/amd64 built", "linux/arm64 dropped", "linux/s390x built"},
		"c": {"linux/arm64 failed"},
		"d": {"linux/amd64 built", "linux/arm64 dropped"},
	}
	for _, im := range rep.Images {
		got := statuses(im)
		if len(got) != len(want[im.Name]) {
			t.Fatalf("%s: %v, want %v", im.Name, got, want[im.Name])
		}
		for i, w := range want[im.Name] {
			p, alts, _ := strings.Cut(w, " ")
			if !slices.Contains(strings.Split(alts, "|"), strings.TrimPrefix(got[i], p+" ")) || !strings.HasPrefix(got[i], p+" ") {
				t.Errorf("%s: %s, want %s", im.Name, got[i], w)
			}
		}
	}
	byName := map[string]ImageResult{}
	for _, im := range rep.Images {
		byName[im.Name] = im
	}
	for _, n := range []string{"a", "c"} {
		im := byName[n]
		if !errors.Is(im.Err, ErrRequiredFailed) || im.Index.Hex != "" || im.OCIDir != "" {
			t.Errorf("%s: err %v, index %q, written to %q; want no index", n, im.Err, im.Index, im.OCIDir)
		}
	}
	if _, err := os.Stat(a.OCIDir); !os.IsNotExist(err) {
		t.Errorf("a's layout exists (%v): nothing may be written for a failed image", err)
	}
	if !errors.Is(byName["a"].Platforms[1].Err, errBoom) || !strings.HasPrefix(byName["a"].Platforms[1].Err.Error(), "images.a linux/arm64: ") {
		t.Errorf("a linux/arm64: error %v", byName["a"].Platforms[1].Err)
	}
	if err := byName["c"].Platforms[0].Err; !errors.Is(err, runner.ErrNeedsMatchingNode) {
		t.Errorf("c linux/arm64: error %v, want the up-front emulation error", err)
	}
	wantIndex(t, byName["b"], b.OCIDir, "b", amd64, s390x)
	wantIndex(t, byName["d"], d.OCIDir, "d", amd64)
	for _, call := range fr.called() {
		if strings.HasPrefix(call, "c ") || call == "d linux/arm64" {
			t.Errorf("the runner was asked for %s, which failed up front", call)
		}
	}
	if !rep.Failed() {
		t.Error("the report does not say it failed")
	}
	if built := countBuilt(rep); fr.released != built {
		t.Errorf("%d outcomes released, %d built", fr.released, built)
	}
}

// TestRunCancelsSiblings: when a required platform fails, the image's
// other builds stop; other images' do not.
func TestRunCancelsSiblings(t *testing.T) {
	fr := &fakeRunner{fail: map[string]error{"a linux/arm64": errBoom}, block: map[string]bool{"a linux/amd64": true}}
	a := testImage(t, "a", copyOnly, []specs.Platform{amd64, arm64}, nil)
	b := testImage(t, "b", copyOnly, []specs.Platform{amd64, arm64}, nil)
	_, rep := planAndRun(t, newTest(t, fr, WithJobs(2)), a, b)
	if got := statuses(rep.Images[0]); !slices.Equal(got, []string{"linux/amd64 skipped", "linux/arm64 failed"}) {
		t.Errorf("a: %v", got)
	}
	if err := rep.Images[0].Platforms[0].Err; !errors.Is(err, ErrCanceled) {
		t.Errorf("a linux/amd64: error %v, want ErrCanceled", err)
	}
	wantIndex(t, rep.Images[1], b.OCIDir, "b", amd64, arm64)
}

// TestRunDeterministic: builds finishing in any order give the same
// report order and the same index digest.
func TestRunDeterministic(t *testing.T) {
	var digests []v1.Hash
	for range 3 {
		fr := &fakeRunner{jitter: true}
		im := testImage(t, "api", copyOnly, []specs.Platform{arm64, amd64}, []specs.Platform{s390x, platform.MustParse("linux/arm/v7")})
		plan, rep := planAndRun(t, newTest(t, fr, WithJobs(4)), im)
		for j, pr := range rep.Images[0].Platforms {
			if !platform.Equal(pr.Platform, plan.Images[0].Targets[j].Platform) {
				t.Errorf("result %d is %s, the plan's %s", j, platform.Format(pr.Platform), platform.Format(plan.Images[0].Targets[j].Platform))
			}
		}
		wantIndex(t, rep.Images[0], im.OCIDir, "api", amd64, platform.MustParse("linux/arm/v7"), arm64, s390x)
		digests = append(digests, rep.Images[0].Index)
	}
	if digests[0] != digests[1] || digests[1] != digests[2] {
		t.Errorf("index digests differ between runs: %v", digests)
	}
}

// TestRunLogPrefix: every job line reaches the log writer whole, behind
// "[name platform] ".
func TestRunLogPrefix(t *testing.T) {
	var buf syncBuffer
	fr := &fakeRunner{jitter: true}
	_, rep := planAndRun(t, newTest(t, fr, WithJobs(4), WithLogWriter(&buf)),
		testImage(t, "a", copyOnly, []specs.Platform{amd64, arm64}, nil),
		testImage(t, "b", copyOnly, []specs.Platform{amd64, s390x}, nil))
	if rep.Failed() {
		t.Fatal("failed")
	}
	lines := strings.Split(strings.TrimSuffix(buf.String(), "\n"), "\n")
	for _, key := range []string{"a linux/amd64", "a linux/arm64", "b linux/amd64", "b linux/s390x"} {
		prefix := "[" + key + "] "
		for _, want := range []string{"line one of " + key, "line two, split across writes", "building (fake, ", "built sha256:"} {
			if !slices.ContainsFunc(lines, func(l string) bool { return strings.HasPrefix(l, prefix+want) }) {
				t.Errorf("no line %q in:\n%s", prefix+want, buf.String())
			}
		}
	}
	for _, l := range lines {
		if !strings.HasPrefix(l, "[a ") && !strings.HasPrefix(l, "[b ") {
			t.Errorf("line without a prefix: %q", l)
		}
	}
}

func TestRunFormat(t *testing.T) {
	tests := []struct {
		name      string
		images    types.MediaType
		format    manifest.IndexFormat
		wantIndex types.MediaType
		wantErr   error
	}{
		{name: "oci", images: types.OCIManifestSchema1, format: manifest.FormatOCI, wantIndex: types.OCIImageIndex},
		{name: "docker", images: types.DockerManifestSchema2, format: manifest.FormatDocker, wantIndex: types.DockerManifestList},
		{name: "docker of OCI images", images: types.OCIManifestSchema1, format: manifest.FormatDocker, wantErr: manifest.ErrIndexFormat},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			im := testImage(t, "api", copyOnly, []specs.Platform{amd64, arm64}, nil)
			_, rep := planAndRun(t, newTest(t, &fakeRunner{mediaType: tt.images}, WithFormat(tt.format)), im)
			res := rep.Images[0]
			if !errors.Is(res.Err, tt.wantErr) || res.MediaType != tt.wantIndex {
				t.Errorf("err %v, index %s; want %v, %s", res.Err, res.MediaType, tt.wantErr, tt.wantIndex)
			}
		})
	}
}

// TestRunPush: platform images go by digest into the first tag's
// repository, the index to every tag, in two repositories; a runner that
// leaves its image in the registry works the same.
func TestRunPush(t *testing.T) {
	srv := httptest.NewServer(registry.New(registry.Logger(log.New(io.Discard, "", 0))))
	defer srv.Close()
	host := strings.TrimPrefix(srv.URL, "http://")
	client, err := manifest.NewClient()
	if err != nil {
		t.Fatal(err)
	}
	for _, tt := range []struct {
		name         string
		runnerPushes bool
	}{{name: "the coordinator pushes"}, {name: "the runner pushes by digest", runnerPushes: true}} {
		t.Run(tt.name, func(t *testing.T) {
			repo := strings.ReplaceAll(tt.name, " ", "-")
			tags := []name.Reference{ref(t, host+"/"+repo+"/api:1"), ref(t, host+"/"+repo+"/api:latest"), ref(t, host+"/"+repo+"-mirror/api:1")}
			fr := &fakeRunner{}
			if tt.runnerPushes {
				fr.push = func(ctx context.Context, img v1.Image, r name.Reference) error {
					_, err := client.Push(ctx, img, []name.Reference{r})
					return err
				}
			}
			im := testImage(t, "api", copyOnly, []specs.Platform{amd64, arm64}, nil)
			im.Tags, im.Push, im.OCIDir = tags, true, ""
			_, rep := planAndRun(t, newTest(t, fr, WithClient(client)), im)
			res := rep.Images[0]
			if res.Err != nil || !res.Pushed || res.Index.Hex == "" {
				t.Fatalf("result %+v", res)
			}
			for _, tag := range tags {
				idx, err := remote.Index(tag, remote.WithContext(t.Context()))
				if err != nil {
					t.Fatalf("%s: %v", tag, err)
				}
				if d, _ := idx.Digest(); d != res.Index {
					t.Errorf("%s is %s, want %s", tag, d, res.Index)
				}
				for _, pr := range res.Platforms {
					if _, err := remote.Head(tag.Context().Digest(pr.Digest.String()), remote.WithContext(t.Context())); err != nil {
						t.Errorf("%s: %s child %s: %v", tag, platform.Format(pr.Platform), pr.Digest, err)
					}
				}
			}
		})
	}
}

// TestRunArchCheck wires the local runner in: an x86-64 binary COPied into
// an arm64 image fails that platform with its path; amd64 still builds.
func TestRunArchCheck(t *testing.T) {
	x86 := goBinary(t, "amd64")
	im := testImage(t, "api", "FROM scratch\nCOPY app /app\n", []specs.Platform{amd64}, []specs.Platform{arm64})
	if err := os.WriteFile(filepath.Join(im.Request.Context, "app"), x86, 0o755); err != nil {
		t.Fatal(err)
	}
	local := runner.NewLocal(runner.WithWorkDir(t.TempDir()))
	_, rep := planAndRun(t, newTest(t, local), im)
	res := rep.Images[0]
	if got := statuses(res); !slices.Equal(got, []string{"linux/amd64 built", "linux/arm64 dropped"}) {
		t.Fatalf("statuses %v", got)
	}
	if err := res.Platforms[1].Err; err == nil || !strings.Contains(err.Error(), "/app (x86-64, linux/amd64)") {
		t.Errorf("arm64: error %v, want the foreign binary named", err)
	}
	wantIndex(t, res, im.OCIDir, "api", amd64)
}

// wantIndex checks the image's index was written to dir under refName
// with exactly the given platforms, in platform order, each platform image
// also filed under its own name (manifest.PlatformRefName).
func wantIndex(t *testing.T, res ImageResult, dir, refName string, ps ...specs.Platform) {
	t.Helper()
	if res.Err != nil || res.OCIDir != dir || res.RefName != refName {
		t.Errorf("%s: err %v, written to %q as %q", res.Name, res.Err, res.OCIDir, res.RefName)
		return
	}
	top, err := layout.ImageIndexFromPath(dir)
	if err != nil {
		t.Fatalf("%s: %v", res.Name, err)
	}
	tm, err := top.IndexManifest()
	if err != nil {
		t.Fatal(err)
	}
	if len(tm.Manifests) != 1+len(ps) || tm.Manifests[0].Digest != res.Index || tm.Manifests[0].Annotations[manifest.AnnotationRefName] != refName {
		t.Fatalf("%s: index.json %+v, want an entry %s named %s and one per platform", res.Name, tm.Manifests, res.Index, refName)
	}
	idx, err := top.ImageIndex(res.Index)
	if err != nil {
		t.Fatal(err)
	}
	im, err := idx.IndexManifest()
	if err != nil {
		t.Fatal(err)
	}
	var got, want []string
	for i, d := range im.Manifests {
		got = append(got, platform.Format(platform.FromV1(d.Platform)))
		if e, name := tm.Manifests[1+min(i, len(ps)-1)], manifest.PlatformRefName(refName, *d.Platform); e.Digest != d.Digest || e.Annotations[manifest.AnnotationRefName] != name {
			t.Errorf("%s: index.json entry %d is %s named %q, want %s named %q", res.Name, 1+i, e.Digest, e.Annotations[manifest.AnnotationRefName], d.Digest, name)
		}
	}
	for _, p := range ps {
		want = append(want, platform.Format(p))
	}
	if !slices.Equal(got, want) {
		t.Errorf("%s: index holds %v, want %v", res.Name, got, want)
	}
}

func countBuilt(rep *Report) int {
	n := 0
	for _, im := range rep.Images {
		for _, p := range im.Platforms {
			if p.Status == StatusBuilt {
				n++
			}
		}
	}
	return n
}

func ref(t *testing.T, s string) name.Reference {
	t.Helper()
	r, err := name.ParseReference(s)
	if err != nil {
		t.Fatal(err)
	}
	return r
}

type syncBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}
