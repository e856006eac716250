package test

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"encoding/json"
	"maps"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	v1 "github.com/google/go-containerregistry/pkg/v1"

	"kiln/test/harness"
)

// TestWarmFromConfig warms what a build.toml needs: every FROM of every
// stage of its images' Dockerfiles (global ARGs, args overriding a default,
// --platform=$BUILDPLATFORM, a stage pinned to --platform=linux/amd64,
// COPY --from and RUN --mount from an image, scratch and stage references
// skipped; a folder context, a tar.gz context, a git context that is only
// read at build time), plus [warm].extra, for the union of the images'
// platforms.
func TestWarmFromConfig(t *testing.T) {
	t.Parallel()
	reg := harness.NewRegistry(t)
	pushStandard(t, reg.Addr) // base/multi:1 and app/shares:1 share a layer
	both := func(seed int64) []harness.ImageSpec {
		return []harness.ImageSpec{
			{Platform: "linux/amd64", Layers: layers(seed, 2, 64<<10)},
			{Platform: "linux/arm64", Layers: layers(seed+10, 2, 64<<10)},
		}
	}
	pushIndex(t, reg.Ref("tools/go:1.22"), both(1100)...)
	pushIndex(t, reg.Ref("lib/assets:3"), both(1200)...)
	pushIndex(t, reg.Ref("web/node:20"), both(1300)...)
	pushIndex(t, reg.Ref("extra/debug:1"), both(1400)...)
	pushIndex(t, reg.Ref("lib/certs:1"), both(1500)...)
	pushIndex(t, reg.Ref("worker/base:1"), both(1600)...)
	pushImage(t, reg.Ref("tools/lint:1"), harness.ImageSpec{Platform: "linux/amd64", Layers: layers(1700, 1, 64<<10)})
	for i, arch := range []string{"amd64", "arm64"} {
		pushImage(t, reg.Ref("arch/base-"+arch+":1"), harness.ImageSpec{Platform: "linux/" + arch, Layers: layers(int64(1800+10*i), 1, 64<<10)})
	}

	dir := t.TempDir()
	copyTestdata(t, "config-driven", dir, "@REGISTRY@", reg.Addr)
	writeTarGz(t, filepath.Join(dir, "worker.tar.gz"), map[string]string{
		"./build/Dockerfile": "FROM " + reg.Ref("worker/base:1") + "\nCOPY . /app\n",
		"./main.go":          "package main\n",
	})
	cache := filepath.Join(t.TempDir(), "cache")
	rep := filepath.Join(t.TempDir(), "report.json")
	r := runKiln(t, "warm", "--config", filepath.Join(dir, "build.toml"), "--cache-dir", cache, "--report", rep)
	mustExit(t, r, 0)

	refs := []string{
		reg.Ref("tools/go:1.22"), // api: FROM --platform=$BUILDPLATFORM ${REGISTRY}/tools/go:${GO_VERSION}
		reg.Ref("base/multi:1"),  // api: FROM ${BASE} with BASE from args; web: runtime stage
		reg.Ref("lib/assets:3"),  // api: COPY --from=image
		reg.Ref("lib/certs:1"),   // api: RUN --mount=...,from=image
		reg.Ref("web/node:20"),   // web: NODE_VERSION from args
		reg.Ref("worker/base:1"), // worker: Dockerfile inside a tar.gz context
		reg.Ref("extra/debug:1"), // [warm].extra
		reg.Ref("app/shares:1"),  // [warm].extra, shares a layer with base/multi
	}
	lint := reg.Ref("tools/lint:1") // web: FROM --platform=linux/amd64, in a stage the target does not need
	plats := []string{"linux/amd64", "linux/arm64"}
	got := readReport(t, rep)
	perArch := []string{reg.Ref("arch/base-amd64:1"), reg.Ref("arch/base-arm64:1")} // api: FROM ...base-${TARGETARCH}
	want := statuses(append(pairs(refs, plats), lint+" linux/amd64", perArch[0]+" linux/amd64", perArch[1]+" linux/arm64"), "pulled")
	wantStatuses(t, got, want)
	if got.Counts["pulled"] != len(want) {
		t.Errorf("counts = %v, want %d pulled", got.Counts, len(want))
	}
	if !strings.Contains(r.stderr, "images.remote") {
		t.Errorf("no word on stderr about images.remote, whose git context warm cannot read:\n%s", r)
	}
	if keys, all := entryKeys(t, cache), sortedCopy(append(slices.Clone(refs), lint, perArch[0], perArch[1])); !slices.Equal(keys, all) {
		t.Errorf("index.json names %v, want %v", keys, all)
	}
	for _, ref := range refs {
		ms := entryManifests(t, cache, ref)
		for _, p := range plats {
			if _, ok := ms[p]; !ok {
				t.Errorf("%s: no %s manifest in the cache (has %v)", ref, p, ms)
			}
		}
	}
	validateCache(t, cache)
	skopeoInspect(t, cache, reg.Ref("base/multi:1"), plats)
	verifyCache(t, cache)
}

// writeTarGz writes a gzipped tar of files (archive path → content).
func writeTarGz(t *testing.T, path string, files map[string]string) {
	t.Helper()
	var buf bytes.Buffer
	gz := gzip.NewWriter(&buf)
	tw := tar.NewWriter(gz)
	for _, name := range slices.Sorted(maps.Keys(files)) {
		body := files[name]
		if err := tw.WriteHeader(&tar.Header{Name: name, Mode: 0o644, Size: int64(len(body)), Typeflag: tar.TypeReg}); err != nil {
			t.Fatal(err)
		}
		if _, err := tw.Write([]byte(body)); err != nil {
			t.Fatal(err)
		}
	}
	if err := tw.Close(); err != nil {
		t.Fatal(err)
	}
	if err := gz.Close(); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, buf.Bytes(), 0o644); err != nil {
		t.Fatal(err)
	}
}

func sortedCopy(ss []string) []string {
	out := slices.Clone(ss)
	slices.Sort(out)
	return out
}

// skopeoInspect reads a cached entry the way another tool would:
// `skopeo inspect --raw oci:CACHE:REF` must print kiln's index of it.
func skopeoInspect(t *testing.T, cache, ref string, plats []string) {
	t.Helper()
	if _, err := exec.LookPath("skopeo"); err != nil {
		t.Log("skopeo not installed: skipping the skopeo check")
		return
	}
	out, err := exec.CommandContext(t.Context(), "skopeo", "inspect", "--raw", "oci:"+cache+":"+ref).CombinedOutput()
	if err != nil {
		t.Fatalf("skopeo inspect --raw oci:%s:%s: %v\n%s", cache, ref, err, out)
	}
	var idx v1.IndexManifest
	if err := json.Unmarshal(out, &idx); err != nil {
		t.Fatalf("skopeo printed no index: %v\n%s", err, out)
	}
	if !idx.MediaType.IsIndex() {
		t.Errorf("skopeo printed a %q, want an image index", idx.MediaType)
	}
	var got []string
	for _, m := range idx.Manifests {
		if m.Platform != nil {
			got = append(got, m.Platform.String())
		}
	}
	slices.Sort(got)
	if !slices.Equal(got, plats) {
		t.Errorf("skopeo: index platforms %v, want %v", got, plats)
	}
}

// TestWarmCacheDirSetting: cache.dir in build.toml is relative to the
// file's folder, KILN_CACHE_DIR overrides it, and --cache-dir overrides both.
func TestWarmCacheDirSetting(t *testing.T) {
	t.Parallel()
	reg := harness.NewRegistry(t)
	ref := reg.Ref("cachedir/app:1")
	pushIndex(t, ref, harness.ImageSpec{Platform: "linux/amd64", Layers: layers(12001, 1, 32<<10)})
	cfgDir := t.TempDir()
	writeFiles(t, cfgDir, map[string]string{"sub/build.toml": "[cache]\ndir = \"../relcache\"\n[warm]\nplatforms = [\"linux/amd64\"]\nextra = [\"" + ref + "\"]\n"})
	cfg := filepath.Join(cfgDir, "sub", "build.toml")
	env, flag := filepath.Join(t.TempDir(), "from-env"), filepath.Join(t.TempDir(), "from-flag")

	tests := []struct {
		name string
		env  []string
		args []string
		want string
	}{
		{name: "build.toml", want: filepath.Join(cfgDir, "relcache")},
		{name: "KILN_CACHE_DIR", env: []string{"KILN_CACHE_DIR=" + env}, want: env},
		{name: "--cache-dir", env: []string{"KILN_CACHE_DIR=" + env}, args: []string{"--cache-dir", flag}, want: flag},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			before := map[string]bool{}
			for _, d := range []string{filepath.Join(cfgDir, "relcache"), env, flag} {
				_, err := os.Stat(filepath.Join(d, "index.json"))
				before[d] = err == nil
			}
			r := runKilnOpts(t, runOpts{env: tc.env}, append([]string{"warm", "--config", cfg}, tc.args...)...)
			mustExit(t, r, 0)
			if _, ok := entry(t, tc.want, ref); !ok {
				t.Errorf("no entry for %s in %s", ref, tc.want)
			}
			for d, had := range before {
				if _, err := os.Stat(filepath.Join(d, "index.json")); d != tc.want && err == nil && !had {
					t.Errorf("warm also wrote a cache in %s", d)
				}
			}
			verifyCache(t, tc.want)
		})
	}
}
