package manifest

import (
	"context"
	"slices"
	"strings"
	"testing"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/layout"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/validate"
)

func TestPlatformRefName(t *testing.T) {
	amd64 := v1.Platform{OS: "linux", Architecture: "amd64"}
	tests := []struct {
		name    string
		refName string
		p       v1.Platform
		want    string
	}{
		{name: "plain name", refName: "hello", p: amd64, want: "hello-linux-amd64"},
		{name: "variant", refName: "hello", p: v1.Platform{OS: "linux", Architecture: "arm64", Variant: "v8"}, want: "hello-linux-arm64-v8"},
		{name: "os.version", refName: "app", p: v1.Platform{OS: "windows", Architecture: "amd64", OSVersion: "10.0.17763.1234"}, want: "app-windows-amd64-10.0.17763.1234"},
		{name: "a tag", refName: "registry.example.com:5000/acme/app:1.0", p: amd64, want: "registry.example.com:5000/acme/app:1.0-linux-amd64"},
		{name: "a digest", refName: "example.com/app@sha256:abc", p: amd64, want: "example.com/app@sha256:abc-linux-amd64"},
		{name: "double dash kept", refName: "a--b", p: amd64, want: "a--b-linux-amd64"},
		{name: "underscore in a tag", refName: "app:v1_2", p: amd64, want: "app:v1_2-linux-amd64"},
		{name: "double underscore in a repository", refName: "my__repo", p: amd64, want: "my-repo-linux-amd64"},
		{name: "separator run", refName: "a.-b", p: amd64, want: "a-b-linux-amd64"},
		{name: "trailing and leading separators", refName: "-/app/-", p: amd64, want: "app-linux-amd64"},
		{name: "slash next to a separator", refName: "a-/b", p: amd64, want: "a/b-linux-amd64"},
		{name: "spaces and unicode", refName: "my app é", p: amd64, want: "my-app-linux-amd64"},
		{name: "no name", refName: "", p: amd64, want: "linux-amd64"},
		{name: "odd platform fields", refName: "x", p: v1.Platform{OS: "linux ", Architecture: "arm/64", Variant: "_v7_"}, want: "x-linux-arm-64-v7"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := PlatformRefName(tt.refName, tt.p)
			if got != tt.want {
				t.Errorf("PlatformRefName(%q, %v) = %q, want %q", tt.refName, tt.p, got, tt.want)
			}
			if !ValidRefName(got) {
				t.Errorf("%q does not follow the ref.name grammar", got)
			}
		})
	}
}

func TestValidRefName(t *testing.T) {
	tests := []struct {
		name string
		want bool
	}{
		{"hello", true}, {"hello-linux-amd64", true}, {"reg.io:5000/a/b:1.0", true}, {"a--b", true},
		{"a@sha256:0f", true}, {"v1.0+build", true},
		{"a_b", true},
		{"", false}, {"-a", false}, {"a-", false}, {"a__b", false}, {"a---b", false}, {"a//b", false},
		{"/a", false}, {"a b", false}, {"a..b", false},
	}
	for _, tt := range tests {
		if got := ValidRefName(tt.name); got != tt.want {
			t.Errorf("ValidRefName(%q) = %v, want %v", tt.name, got, tt.want)
		}
	}
}

// layoutNames lists index.json's entries as "name=digest".
func layoutNames(t *testing.T, l *Layout) map[string]v1.Hash {
	t.Helper()
	idx, err := l.ReadIndex()
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]v1.Hash{}
	for _, d := range idx.Manifests {
		n := d.Annotations[AnnotationRefName]
		if _, dup := out[n]; dup {
			t.Errorf("two entries named %q", n)
		}
		out[n] = d.Digest
	}
	return out
}

func testIndex(t *testing.T, plats ...string) (v1.ImageIndex, map[string]v1.Hash) {
	t.Helper()
	var adds []mutate.IndexAddendum
	digests := map[string]v1.Hash{}
	for _, s := range plats {
		f := append(strings.Split(s, "/"), "")
		img := randomImage(t, s)
		adds = append(adds, mutate.IndexAddendum{Add: img, Descriptor: v1.Descriptor{
			Platform: &v1.Platform{OS: f[0], Architecture: f[1], Variant: f[2]}}})
		digests[s], _ = img.Digest()
	}
	return mutate.AppendManifests(empty.Index, adds...), digests
}

// TestWriteIndexPlatformRefs: the index is filed under its name and each
// platform image under its own; writing the name again with fewer
// platforms leaves no stale platform name, and other names stay.
func TestWriteIndexPlatformRefs(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	l, err := OpenLayout(dir)
	if err != nil {
		t.Fatal(err)
	}
	other := randomImage(t, "linux/s390x")
	if _, err := l.WriteImage(ctx, other, "other"); err != nil {
		t.Fatal(err)
	}
	idx, digests := testIndex(t, "linux/amd64", "linux/arm64/v8", "linux/arm/v7")
	desc, err := l.WriteIndex(ctx, idx, "hello")
	if err != nil {
		t.Fatal(err)
	}
	otherDigest, _ := other.Digest()
	want := map[string]v1.Hash{
		"other": otherDigest, "other-linux-s390x": otherDigest,
		"hello": desc.Digest, "hello-linux-amd64": digests["linux/amd64"],
		"hello-linux-arm64-v8": digests["linux/arm64/v8"], "hello-linux-arm-v7": digests["linux/arm/v7"],
	}
	if got := layoutNames(t, l); !mapsEqual(got, want) {
		t.Errorf("entries %v, want %v", got, want)
	}
	names, err := l.PlatformRefNames("hello")
	if err != nil || !slices.Equal(names, []string{"hello-linux-amd64", "hello-linux-arm64-v8", "hello-linux-arm-v7"}) {
		t.Errorf("PlatformRefNames = %q, %v", names, err)
	}
	// Each name opens with go-containerregistry's reader: the index as an
	// index, each platform name as a valid image.
	p, err := layout.FromPath(dir)
	if err != nil {
		t.Fatal(err)
	}
	for n, h := range want {
		if n == "hello" {
			if _, err := p.ImageIndex(); err != nil {
				t.Fatal(err)
			}
			continue
		}
		img, err := p.Image(h)
		if err != nil {
			t.Fatalf("%s: %v", n, err)
		}
		if err := validate.Image(img); err != nil {
			t.Errorf("%s: %v", n, err)
		}
	}

	idx2, digests2 := testIndex(t, "linux/amd64")
	desc2, err := l.WriteIndex(ctx, idx2, "hello")
	if err != nil {
		t.Fatal(err)
	}
	want = map[string]v1.Hash{"other": otherDigest, "other-linux-s390x": otherDigest,
		"hello": desc2.Digest, "hello-linux-amd64": digests2["linux/amd64"]}
	if got := layoutNames(t, l); !mapsEqual(got, want) {
		t.Errorf("after a rewrite with one platform: entries %v, want %v", got, want)
	}
	top, _ := l.ReadIndex()
	if top.Manifests[len(top.Manifests)-2].Annotations[AnnotationRefName] != "hello" {
		t.Errorf("the index should come before its platform names: %v", top.Manifests)
	}
}

// TestWriteIndexPlatformRefsSkipped: children without a platform, for the
// "unknown" platform (attestations) or sharing one get no name, or a
// distinct one.
func TestWriteIndexPlatformRefsSkipped(t *testing.T) {
	ctx := context.Background()
	l, err := OpenLayout(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	a, b, att, bare := randomImage(t), randomImage(t), randomImage(t), randomImage(t)
	amd64 := &v1.Platform{OS: "linux", Architecture: "amd64"}
	idx := mutate.AppendManifests(empty.Index,
		mutate.IndexAddendum{Add: a, Descriptor: v1.Descriptor{Platform: amd64}},
		mutate.IndexAddendum{Add: b, Descriptor: v1.Descriptor{Platform: amd64}},
		mutate.IndexAddendum{Add: att, Descriptor: v1.Descriptor{Platform: &v1.Platform{OS: "unknown", Architecture: "unknown"}}},
		mutate.IndexAddendum{Add: bare},
	)
	if _, err := l.WriteIndex(ctx, idx, "x"); err != nil {
		t.Fatal(err)
	}
	da, _ := a.Digest()
	db, _ := b.Digest()
	dbare, _ := bare.Digest()
	got := layoutNames(t, l)
	if got["x-linux-amd64"] != da || got["x-linux-amd64-"+db.Hex[:12]] != db {
		t.Errorf("entries %v: want x-linux-amd64 for the first amd64 child and a digest-suffixed name for the second", got)
	}
	// The child with no platform in the index has one in its config.
	if got["x-linux-amd64-"+dbare.Hex[:12]] != dbare {
		t.Errorf("entries %v: the child without a platform should be named from its config", got)
	}
	if len(got) != 4 {
		t.Errorf("entries %v: the attestation child should have no name", got)
	}
}

func mapsEqual(a, b map[string]v1.Hash) bool {
	if len(a) != len(b) {
		return false
	}
	for k, v := range a {
		if w, ok := b[k]; !ok || w != v {
			return false
		}
	}
	return true
}
