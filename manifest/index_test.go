package manifest

import (
	"context"
	"errors"
	"math/rand"
	"net/http"
	"strings"
	"testing"

	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/random"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/google/go-containerregistry/pkg/v1/types"
	"github.com/google/go-containerregistry/pkg/v1/validate"
	specs "github.com/opencontainers/image-spec/specs-go/v1"

	"kiln/platform"
)

// idxImage is a small random image whose config says plat ("os/arch[/variant]"
// as written, not normalised) with manifest media type mt; edit, if given,
// changes the config further.
func idxImage(t *testing.T, plat string, mt types.MediaType, edit ...func(*v1.ConfigFile)) v1.Image {
	t.Helper()
	layerType, configType := types.OCILayer, types.OCIConfigJSON
	if mt == types.DockerManifestSchema2 {
		layerType, configType = types.DockerLayer, types.DockerConfigJSON
	}
	l, err := random.Layer(256, layerType)
	if err != nil {
		t.Fatal(err)
	}
	img := mutate.ConfigMediaType(mutate.MediaType(empty.Image, mt), configType)
	cf := &v1.ConfigFile{RootFS: v1.RootFS{Type: "layers"}}
	if plat != "" {
		parts := strings.Split(plat, "/")
		cf.OS, cf.Architecture = parts[0], parts[1]
		if len(parts) > 2 {
			cf.Variant = parts[2]
		}
	}
	for _, e := range edit {
		e(cf)
	}
	if img, err = mutate.ConfigFile(img, cf); err != nil {
		t.Fatal(err)
	}
	if img, err = mutate.AppendLayers(img, l); err != nil {
		t.Fatal(err)
	}
	return img
}

func idxEntry(t *testing.T, plat string, mt types.MediaType) IndexEntry {
	t.Helper()
	return IndexEntry{Image: idxImage(t, plat, mt), Source: plat}
}

// asked sets the platform an entry is asked to be.
func asked(e IndexEntry, p string) IndexEntry {
	pl := platform.MustParse(p)
	e.Platform = &pl
	return e
}

func annotated(e IndexEntry, kv ...string) IndexEntry {
	e.Annotations = map[string]string{}
	for i := 0; i+1 < len(kv); i += 2 {
		e.Annotations[kv[i]] = kv[i+1]
	}
	return e
}

// childPlatforms lists the index's children as "os/arch[/variant] mediatype".
func childPlatforms(t *testing.T, idx v1.ImageIndex) []string {
	t.Helper()
	im, err := idx.IndexManifest()
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, d := range im.Manifests {
		out = append(out, d.Platform.String())
	}
	return out
}

func TestBuildIndex(t *testing.T) {
	const oci, docker = types.OCIManifestSchema1, types.DockerManifestSchema2
	win := func(version string) IndexEntry {
		return IndexEntry{Source: "windows " + version, Image: idxImage(t, "windows/amd64", docker, func(cf *v1.ConfigFile) { cf.OSVersion = version })}
	}
	tests := []struct {
		name        string
		entries     []IndexEntry
		format      IndexFormat
		annotations map[string]string
		wantErr     error  // checked with errors.Is when set
		wantMsg     string // a substring of the error when set
		wantType    types.MediaType
		wantPlats   []string // children in order, as the descriptors spell them
		check       func(t *testing.T, im *v1.IndexManifest)
	}{
		{
			name:      "oci index sorted by platform",
			entries:   []IndexEntry{idxEntry(t, "linux/arm64", oci), idxEntry(t, "linux/amd64", oci)},
			format:    FormatOCI,
			wantType:  types.OCIImageIndex,
			wantPlats: []string{"linux/amd64", "linux/arm64"},
		},
		{
			name:      "empty format means oci",
			entries:   []IndexEntry{idxEntry(t, "linux/amd64", oci)},
			wantType:  types.OCIImageIndex,
			wantPlats: []string{"linux/amd64"},
		},
		{
			name:      "docker manifest list of docker images",
			entries:   []IndexEntry{idxEntry(t, "linux/arm64", docker), idxEntry(t, "linux/amd64", docker)},
			format:    FormatDocker,
			wantType:  types.DockerManifestList,
			wantPlats: []string{"linux/amd64", "linux/arm64"},
			check: func(t *testing.T, im *v1.IndexManifest) {
				for _, d := range im.Manifests {
					if d.MediaType != types.DockerManifestSchema2 {
						t.Errorf("child %s: media type %s", d.Platform, d.MediaType)
					}
				}
			},
		},
		{
			name:    "docker manifest list refuses an oci image",
			entries: []IndexEntry{idxEntry(t, "linux/amd64", docker), idxEntry(t, "linux/arm64", oci)},
			format:  FormatDocker,
			wantErr: ErrIndexFormat,
			wantMsg: "linux/arm64 is an OCI image manifest",
		},
		{
			name:        "docker manifest list refuses index annotations",
			entries:     []IndexEntry{idxEntry(t, "linux/amd64", docker)},
			format:      FormatDocker,
			annotations: map[string]string{"a": "b"},
			wantErr:     ErrIndexFormat,
		},
		{
			name:    "docker manifest list refuses descriptor annotations",
			entries: []IndexEntry{annotated(idxEntry(t, "linux/amd64", docker), "a", "b")},
			format:  FormatDocker,
			wantErr: ErrIndexFormat,
		},
		{
			name:      "oci index takes docker and oci images together",
			entries:   []IndexEntry{idxEntry(t, "linux/amd64", docker), idxEntry(t, "linux/arm64", oci)},
			format:    FormatOCI,
			wantType:  types.OCIImageIndex,
			wantPlats: []string{"linux/amd64", "linux/arm64"},
		},
		{
			name:    "unknown format",
			entries: []IndexEntry{idxEntry(t, "linux/amd64", oci)},
			format:  "zip",
			wantMsg: `index format "zip"`,
		},
		{
			name:    "no entries",
			format:  FormatOCI,
			wantMsg: "at least one image",
		},
		{
			name:    "entry without image",
			entries: []IndexEntry{{Source: "ghost"}},
			wantMsg: "ghost: no image",
		},
		{
			name:    "config without platform",
			entries: []IndexEntry{{Source: "blank", Image: idxImage(t, "", oci)}},
			wantMsg: "blank: its config names no os and architecture",
		},
		{
			name:    "platform mismatch names both",
			entries: []IndexEntry{asked(idxEntry(t, "linux/arm64", oci), "linux/amd64")},
			wantErr: ErrPlatformMismatch,
			wantMsg: "asked to be linux/amd64 but its config says linux/arm64",
		},
		{
			name:    "arm/v7 is not arm64",
			entries: []IndexEntry{asked(idxEntry(t, "linux/arm/v7", oci), "linux/arm64")},
			wantErr: ErrPlatformMismatch,
			wantMsg: "its config says linux/arm/v7",
		},
		{
			name:    "arm/v6 is not arm/v7",
			entries: []IndexEntry{asked(idxEntry(t, "linux/arm/v6", oci), "linux/arm/v7")},
			wantErr: ErrPlatformMismatch,
		},
		{
			name: "variants normalised: arm64/v8 is arm64, arm is arm/v7",
			entries: []IndexEntry{
				asked(idxEntry(t, "linux/arm64/v8", oci), "linux/arm64"),
				asked(idxEntry(t, "linux/arm", oci), "linux/arm/v7"),
				asked(idxEntry(t, "linux/amd64", oci), "amd64"),
			},
			wantType: types.OCIImageIndex,
			// The descriptors keep the configs' spelling (validate.Index
			// compares them byte for byte); the order is by normalised name.
			wantPlats: []string{"linux/amd64", "linux/arm", "linux/arm64/v8"},
		},
		{
			name:      "arm/v7 and arm64 side by side",
			entries:   []IndexEntry{idxEntry(t, "linux/arm64", oci), idxEntry(t, "linux/arm/v7", oci), idxEntry(t, "linux/arm/v6", oci)},
			wantType:  types.OCIImageIndex,
			wantPlats: []string{"linux/arm/v6", "linux/arm/v7", "linux/arm64"},
		},
		{
			name:    "duplicate platform",
			entries: []IndexEntry{idxEntry(t, "linux/amd64", oci), idxEntry(t, "linux/arm64", oci), {Source: "other amd64", Image: idxImage(t, "linux/amd64", oci)}},
			wantErr: ErrDuplicatePlatform,
			wantMsg: "are both linux/amd64", // the two sources, in digest order
		},
		{
			name:    "duplicate after normalisation",
			entries: []IndexEntry{idxEntry(t, "linux/arm64", oci), idxEntry(t, "linux/arm64/v8", oci)},
			wantErr: ErrDuplicatePlatform,
		},
		{
			name:    "the same image twice",
			entries: func() []IndexEntry { e := idxEntry(t, "linux/amd64", oci); return []IndexEntry{e, e} }(),
			wantErr: ErrDuplicatePlatform,
		},
		{
			name:      "windows images of different os.version are different platforms",
			entries:   []IndexEntry{win("10.0.20348.2113"), win("10.0.17763.5122")},
			wantType:  types.OCIImageIndex,
			wantPlats: []string{"windows/amd64:10.0.17763.5122", "windows/amd64:10.0.20348.2113"},
		},
		{
			name: "os.version checked when both name one",
			entries: []IndexEntry{func() IndexEntry {
				e := win("10.0.20348.2113")
				e.Platform = &specs.Platform{OS: "windows", Architecture: "amd64", OSVersion: "10.0.17763.5122"}
				return e
			}()},
			wantErr: ErrPlatformMismatch,
			wantMsg: "os.version 10.0.17763.5122",
		},
		{
			name: "annotations at both levels",
			entries: []IndexEntry{
				annotated(idxEntry(t, "linux/amd64", oci), "org.opencontainers.image.description", "for amd64"),
				idxEntry(t, "linux/arm64", oci),
			},
			annotations: map[string]string{"org.opencontainers.image.source": "https://example.com/app", "org.opencontainers.image.version": "1.2"},
			wantType:    types.OCIImageIndex,
			wantPlats:   []string{"linux/amd64", "linux/arm64"},
			check: func(t *testing.T, im *v1.IndexManifest) {
				if got := im.Annotations["org.opencontainers.image.source"]; got != "https://example.com/app" || len(im.Annotations) != 2 {
					t.Errorf("index annotations %v", im.Annotations)
				}
				if got := im.Manifests[0].Annotations; len(got) != 1 || got["org.opencontainers.image.description"] != "for amd64" {
					t.Errorf("amd64 descriptor annotations %v", got)
				}
				if got := im.Manifests[1].Annotations; got != nil {
					t.Errorf("arm64 descriptor annotations %v, want none", got)
				}
			},
		},
		{
			name:        "empty annotation key",
			entries:     []IndexEntry{idxEntry(t, "linux/amd64", oci)},
			annotations: map[string]string{"": "x"},
			wantMsg:     "empty key",
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			idx, err := BuildIndex(tt.entries, tt.format, tt.annotations)
			if tt.wantErr != nil || tt.wantMsg != "" {
				if err == nil {
					t.Fatalf("no error, want %v %q", tt.wantErr, tt.wantMsg)
				}
				if tt.wantErr != nil && !errors.Is(err, tt.wantErr) {
					t.Errorf("error %q is not %v", err, tt.wantErr)
				}
				if !strings.Contains(err.Error(), tt.wantMsg) {
					t.Errorf("error %q does not say %q", err, tt.wantMsg)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if err := validate.Index(idx); err != nil {
				t.Errorf("validate.Index: %v", err)
			}
			im, err := idx.IndexManifest()
			if err != nil {
				t.Fatal(err)
			}
			if mt, _ := idx.MediaType(); mt != tt.wantType || im.MediaType != tt.wantType || im.SchemaVersion != 2 {
				t.Errorf("media type %s (manifest says %s, schema %d), want %s", mt, im.MediaType, im.SchemaVersion, tt.wantType)
			}
			if got := childPlatforms(t, idx); strings.Join(got, " ") != strings.Join(tt.wantPlats, " ") {
				t.Errorf("children %v, want %v", got, tt.wantPlats)
			}
			if tt.check != nil {
				tt.check(t, im)
			}
		})
	}
}

// TestBuildIndexDeterministic: the same images and annotations, in any
// order, give one digest; a different annotation gives another.
func TestBuildIndexDeterministic(t *testing.T) {
	entries := []IndexEntry{
		idxEntry(t, "linux/amd64", types.OCIManifestSchema1),
		annotated(idxEntry(t, "linux/arm64", types.OCIManifestSchema1), "k1", "v1", "k2", "v2"),
		idxEntry(t, "linux/arm/v7", types.OCIManifestSchema1),
		idxEntry(t, "linux/s390x", types.OCIManifestSchema1),
		idxEntry(t, "linux/ppc64le", types.OCIManifestSchema1),
	}
	anns := func() map[string]string {
		m := map[string]string{}
		for _, k := range rand.Perm(8) {
			m[string(rune('a'+k))] = "v"
		}
		return m
	}
	first, err := BuildIndex(entries, FormatOCI, anns())
	if err != nil {
		t.Fatal(err)
	}
	want, _ := first.Digest()
	rng := rand.New(rand.NewSource(1))
	for i := range 20 {
		shuffled := append([]IndexEntry(nil), entries...)
		rng.Shuffle(len(shuffled), func(a, b int) { shuffled[a], shuffled[b] = shuffled[b], shuffled[a] })
		idx, err := BuildIndex(shuffled, FormatOCI, anns())
		if err != nil {
			t.Fatal(err)
		}
		if got, _ := idx.Digest(); got != want {
			raw1, _ := first.RawManifest()
			raw2, _ := idx.RawManifest()
			t.Fatalf("shuffle %d: digest %s, want %s\n%s\n%s", i, got, want, raw1, raw2)
		}
	}
	changed := anns()
	changed["a"] = "other"
	idx, err := BuildIndex(entries, FormatOCI, changed)
	if err != nil {
		t.Fatal(err)
	}
	if got, _ := idx.Digest(); got == want {
		t.Errorf("a different annotation gave the same digest %s", got)
	}
}

func TestParseIndexFormat(t *testing.T) {
	for _, tt := range []struct {
		in      string
		want    IndexFormat
		wantErr bool
	}{
		{in: "oci", want: FormatOCI},
		{in: "docker", want: FormatDocker},
		{in: "OCI", wantErr: true},
		{in: "", wantErr: true},
		{in: "v2s2", wantErr: true},
	} {
		got, err := ParseIndexFormat(tt.in)
		if (err != nil) != tt.wantErr || got != tt.want {
			t.Errorf("ParseIndexFormat(%q) = %q, %v", tt.in, got, err)
		}
	}
}

// pushTo writes img or idx to host/repoTag on the in-process registry.
func pushTo(t *testing.T, host, repoTag string, what remote.Taggable) name.Reference {
	t.Helper()
	ref, err := name.ParseReference(host+"/"+repoTag, name.Insecure)
	if err != nil {
		t.Fatal(err)
	}
	switch w := what.(type) {
	case v1.Image:
		err = remote.Write(ref, w)
	case v1.ImageIndex:
		err = remote.WriteIndex(ref, w)
	}
	if err != nil {
		t.Fatalf("pushing %s: %v", ref, err)
	}
	return ref
}

func digestOf(t *testing.T, d interface{ Digest() (v1.Hash, error) }) v1.Hash {
	t.Helper()
	h, err := d.Digest()
	if err != nil {
		t.Fatal(err)
	}
	return h
}

// TestIndexFromRegistry resolves sources in several repositories (a plain
// image by tag, one by digest, an index with an attestation), builds the
// index, pushes it to two tags and reads it back.
func TestIndexFromRegistry(t *testing.T) {
	reg := newTestRegistry(t)
	c := newTestClient(t, insecure(reg.host))
	ctx := context.Background()

	amd := idxImage(t, "linux/amd64", types.OCIManifestSchema1)
	arm64 := idxImage(t, "linux/arm64", types.OCIManifestSchema1)
	armv7 := idxImage(t, "linux/arm/v7", types.OCIManifestSchema1)
	s390x := idxImage(t, "linux/s390x", types.OCIManifestSchema1)
	att := idxImage(t, "unknown/unknown", types.OCIManifestSchema1)
	src := mutate.AppendManifests(empty.Index,
		mutate.IndexAddendum{Add: armv7, Descriptor: v1.Descriptor{Platform: &v1.Platform{OS: "linux", Architecture: "arm", Variant: "v7"}}},
		mutate.IndexAddendum{Add: s390x, Descriptor: v1.Descriptor{Platform: &v1.Platform{OS: "linux", Architecture: "s390x"}}},
		mutate.IndexAddendum{Add: att, Descriptor: v1.Descriptor{
			Platform:    &v1.Platform{OS: "unknown", Architecture: "unknown"},
			Annotations: map[string]string{"vnd.docker.reference.type": "attestation-manifest"},
		}},
	)
	pushTo(t, reg.host, "team-a/app:amd64", amd)
	armRef := pushTo(t, reg.host, "team-b/app:arm64", arm64)
	pushTo(t, reg.host, "team-c/multi:1", src)

	var refs []name.Reference
	for _, s := range []string{
		reg.host + "/team-a/app:amd64",
		armRef.Context().Digest(digestOf(t, arm64).String()).String(),
		reg.host + "/team-c/multi:1",
	} {
		refs = append(refs, parseRef(t, c, s))
	}
	entries, err := c.IndexEntries(ctx, refs...)
	if err != nil {
		t.Fatal(err)
	}
	if len(entries) != 4 {
		t.Fatalf("%d entries, want 4 (the attestation left out)", len(entries))
	}
	for _, e := range entries[2:] {
		if e.Platform == nil || e.Source != refs[2].String() {
			t.Errorf("entry from the index: platform %v, source %q", e.Platform, e.Source)
		}
	}
	idx, err := BuildIndex(entries, FormatOCI, map[string]string{"org.opencontainers.image.version": "1"})
	if err != nil {
		t.Fatal(err)
	}
	tags := []name.Reference{parseRef(t, c, reg.host+"/release/app:1"), parseRef(t, c, reg.host+"/release/app:latest"), parseRef(t, c, reg.host+"/mirror/app:1")}
	h, err := c.PushIndex(ctx, idx, tags)
	if err != nil {
		t.Fatal(err)
	}
	for _, tag := range tags {
		got, err := remote.Index(tag)
		if err != nil {
			t.Fatalf("%s: %v", tag, err)
		}
		if d := digestOf(t, got); d != h {
			t.Errorf("%s is %s, want %s", tag, d, h)
		}
		if err := validate.Index(got); err != nil {
			t.Errorf("%s: validate.Index: %v", tag, err)
		}
		if p := childPlatforms(t, got); strings.Join(p, " ") != "linux/amd64 linux/arm/v7 linux/arm64 linux/s390x" {
			t.Errorf("%s: children %v", tag, p)
		}
	}
	// The children are in the tag's repository by digest.
	for _, img := range []v1.Image{amd, arm64, armv7, s390x} {
		ref := tags[0].Context().Digest(digestOf(t, img).String())
		if _, err := remote.Head(ref); err != nil {
			t.Errorf("child %s: %v", ref, err)
		}
	}
}

// TestIndexEntriesFromLyingIndex: an index whose descriptor claims a
// platform its image's config denies is caught by BuildIndex.
func TestIndexEntriesFromLyingIndex(t *testing.T) {
	reg := newTestRegistry(t)
	c := newTestClient(t, insecure(reg.host))
	src := mutate.AppendManifests(empty.Index,
		mutate.IndexAddendum{Add: idxImage(t, "linux/amd64", types.OCIManifestSchema1), Descriptor: v1.Descriptor{Platform: &v1.Platform{OS: "linux", Architecture: "arm64"}}},
	)
	pushTo(t, reg.host, "liar:1", src)
	entries, err := c.IndexEntries(context.Background(), parseRef(t, c, reg.host+"/liar:1"))
	if err != nil {
		t.Fatal(err)
	}
	_, err = BuildIndex(entries, FormatOCI, nil)
	if !errors.Is(err, ErrPlatformMismatch) || !strings.Contains(err.Error(), "liar:1 was asked to be linux/arm64 but its config says linux/amd64") {
		t.Errorf("error %v, want a platform mismatch naming the source", err)
	}
}

func TestIndexEntriesErrors(t *testing.T) {
	reg := newTestRegistry(t)
	c := newTestClient(t, insecure(reg.host))
	inner := mutate.AppendManifests(empty.Index, mutate.IndexAddendum{Add: idxImage(t, "linux/amd64", types.OCIManifestSchema1)})
	pushTo(t, reg.host, "nested:1", mutate.AppendManifests(empty.Index, mutate.IndexAddendum{Add: inner}))
	onlyAtt := mutate.AppendManifests(empty.Index, mutate.IndexAddendum{
		Add:        idxImage(t, "unknown/unknown", types.OCIManifestSchema1),
		Descriptor: v1.Descriptor{Platform: &v1.Platform{OS: "unknown", Architecture: "unknown"}},
	})
	pushTo(t, reg.host, "attonly:1", onlyAtt)
	tests := []struct {
		name    string
		ref     string
		wantMsg string
		notFnd  bool
	}{
		{name: "missing", ref: "nothing:here", notFnd: true},
		{name: "index of indexes", ref: "nested:1", wantMsg: "holds another index"},
		{name: "no platform images", ref: "attonly:1", wantMsg: "no platform images"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := c.IndexEntries(context.Background(), parseRef(t, c, reg.host+"/"+tt.ref))
			if err == nil {
				t.Fatal("no error")
			}
			if tt.notFnd && !IsNotFound(err) {
				t.Errorf("error %v is not a not-found", err)
			}
			if !strings.Contains(err.Error(), tt.wantMsg) || !strings.Contains(err.Error(), tt.ref) {
				t.Errorf("error %q does not say %q and name %s", err, tt.wantMsg, tt.ref)
			}
		})
	}
	if n := reg.count(http.MethodGet + " manifests"); n == 0 {
		t.Error("no manifest was fetched")
	}
}
