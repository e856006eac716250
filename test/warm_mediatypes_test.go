package test

import (
	"path/filepath"
	"slices"
	"testing"

	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/random"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/google/go-containerregistry/pkg/v1/types"

	"kiln/test/harness"
)

// TestWarmRealWorldIndexes warms the shapes public registries serve besides
// plain OCI: a Docker manifest list of schema 2 images whose arm64 entry
// carries variant v8, and a buildx-style OCI index with attestation
// manifests (platform unknown/unknown) next to the images.
func TestWarmRealWorldIndexes(t *testing.T) {
	t.Parallel()
	reg := harness.NewRegistry(t)
	list := reg.Ref("docker/list:1")
	pushRawIndex(t, list, types.DockerManifestList, types.DockerManifestSchema2, types.DockerConfigJSON, types.DockerLayer,
		[]v1.Platform{{OS: "linux", Architecture: "amd64"}, {OS: "linux", Architecture: "arm64", Variant: "v8"}, {OS: "linux", Architecture: "arm", Variant: "v7"}}, false)
	attest := reg.Ref("buildx/attest:1")
	pushRawIndex(t, attest, types.OCIImageIndex, types.OCIManifestSchema1, types.OCIConfigJSON, types.OCILayer,
		[]v1.Platform{{OS: "linux", Architecture: "amd64"}, {OS: "linux", Architecture: "arm64"}}, true)

	cache := filepath.Join(t.TempDir(), "cache")
	rep := filepath.Join(t.TempDir(), "report.json")
	plats := []string{"linux/amd64", "linux/arm64"}
	mustExit(t, runKiln(t, "warm", "--cache-dir", cache, "--report", rep, "--image", list, "--image", attest, "--platform", "linux/amd64,linux/arm64"), 0)
	wantStatuses(t, readReport(t, rep), statuses(pairs([]string{list, attest}, plats), "pulled"))
	for _, ref := range []string{list, attest} {
		var got []string
		for p := range entryManifests(t, cache, ref) {
			got = append(got, p)
		}
		slices.Sort(got)
		if len(got) != 2 || got[0] != "linux/amd64" || !slices.Contains([]string{"linux/arm64", "linux/arm64/v8"}, got[1]) {
			t.Errorf("%s: cached platforms %v, want amd64 and arm64 only", ref, got)
		}
	}
	validateCache(t, cache)
	skopeoInspect(t, cache, attest, plats)
	verifyCache(t, cache)

	rep2 := filepath.Join(t.TempDir(), "report.json")
	mustExit(t, runKiln(t, "warm", "--cache-dir", cache, "--report", rep2, "--image", list, "--platform", "linux/arm/v7"), 0)
	wantStatuses(t, readReport(t, rep2), map[string]string{list + " linux/arm/v7": "pulled"})
	if n := len(entryManifests(t, cache, list)); n != 3 {
		t.Errorf("%s: %d platforms cached after adding arm/v7, want 3", list, n)
	}
	validateCache(t, cache)
	verifyCache(t, cache)
}

// pushRawIndex pushes an index of the given media types with one small
// random image per platform; attestations adds a buildx attestation
// manifest for each image.
func pushRawIndex(t *testing.T, ref string, indexType, manifestType, configType, layerType types.MediaType, plats []v1.Platform, attestations bool) {
	t.Helper()
	idx := mutate.IndexMediaType(empty.Index, indexType)
	for _, p := range plats {
		img := rawImage(t, manifestType, configType, layerType, p)
		idx = mutate.AppendManifests(idx, mutate.IndexAddendum{Add: img, Descriptor: v1.Descriptor{Platform: &p}})
		if !attestations {
			continue
		}
		d, err := img.Digest()
		if err != nil {
			t.Fatal(err)
		}
		att := rawImage(t, manifestType, configType, "application/vnd.in-toto+json", v1.Platform{OS: "unknown", Architecture: "unknown"})
		idx = mutate.AppendManifests(idx, mutate.IndexAddendum{Add: att, Descriptor: v1.Descriptor{
			Platform:    &v1.Platform{OS: "unknown", Architecture: "unknown"},
			Annotations: map[string]string{"vnd.docker.reference.digest": d.String(), "vnd.docker.reference.type": "attestation-manifest"},
		}})
	}
	r, err := name.ParseReference(ref, name.Insecure)
	if err != nil {
		t.Fatal(err)
	}
	if err := remote.WriteIndex(r, idx, remote.WithContext(t.Context())); err != nil {
		t.Fatalf("pushing %s: %v", ref, err)
	}
}

func rawImage(t *testing.T, manifestType, configType, layerType types.MediaType, p v1.Platform) v1.Image {
	t.Helper()
	img := mutate.MediaType(empty.Image, manifestType)
	img = mutate.ConfigMediaType(img, configType)
	img, err := mutate.ConfigFile(img, &v1.ConfigFile{OS: p.OS, Architecture: p.Architecture, Variant: p.Variant, RootFS: v1.RootFS{Type: "layers"}})
	if err != nil {
		t.Fatal(err)
	}
	l, err := random.Layer(32<<10, layerType)
	if err != nil {
		t.Fatal(err)
	}
	img, err = mutate.AppendLayers(img, l)
	if err != nil {
		t.Fatal(err)
	}
	return img
}
