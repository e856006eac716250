package builder

import (
	"context"
	"errors"
	"io"
	"log"
	"net/http/httptest"
	"path/filepath"
	"strings"
	"testing"

	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/registry"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/layout"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/remote"

	"kiln/manifest"
	"kiln/platform"
)

// fixtureIndex is base:1 for amd64 and arm64 as one index.
func fixtureIndex(t *testing.T) v1.ImageIndex {
	t.Helper()
	bases := fixtures(t)
	idx := v1.ImageIndex(empty.Index)
	for _, p := range []string{"linux/amd64", "linux/arm64"} {
		idx = mutate.AppendManifests(idx, mutate.IndexAddendum{
			Add:        bases["library/base:1@"+p],
			Descriptor: v1.Descriptor{Platform: platform.ToV1(platform.MustParse(p))},
		})
	}
	return idx
}

// cacheWith makes a cache layout holding idx under ref.
func cacheWith(t *testing.T, ref string, idx v1.ImageIndex) *manifest.Layout {
	t.Helper()
	dir := filepath.Join(t.TempDir(), "cache")
	l, err := manifest.OpenLayout(dir)
	if err != nil {
		t.Fatal(err)
	}
	if idx == nil {
		return l
	}
	r, err := name.ParseReference(ref)
	if err != nil {
		t.Fatal(err)
	}
	err = layout.Path(dir).AppendIndex(idx, layout.WithAnnotations(map[string]string{manifest.AnnotationRefName: manifest.CacheKey(r)}))
	if err != nil {
		t.Fatal(err)
	}
	return l
}

// registryWith starts an in-process registry holding idx as repo:tag and
// returns its host.
func registryWith(t *testing.T, repo string, idx v1.ImageIndex) string {
	t.Helper()
	srv := httptest.NewServer(registry.New(registry.Logger(log.New(io.Discard, "", 0))))
	t.Cleanup(srv.Close)
	host := strings.TrimPrefix(srv.URL, "http://")
	ref, err := name.ParseReference(host+"/"+repo, name.Insecure)
	if err != nil {
		t.Fatal(err)
	}
	if err := remote.WriteIndex(ref, idx); err != nil {
		t.Fatal(err)
	}
	return host
}

func TestCacheThenRemote(t *testing.T) {
	idx := fixtureIndex(t)
	host := registryWith(t, "lib/base:1", idx)
	client, err := manifest.NewClient(manifest.WithRegistries(map[string]manifest.RegistryConfig{host: {Insecure: true}}))
	if err != nil {
		t.Fatal(err)
	}
	remoteRef := host + "/lib/base:1"
	tests := []struct {
		name     string
		cached   bool
		client   *manifest.Client
		offline  bool
		ref      string
		platform string
		wantArch string
		wantErr  error
	}{
		{name: "from the cache", cached: true, ref: remoteRef, platform: "linux/arm64", wantArch: "arm64"},
		{name: "cache hit while offline", cached: true, offline: true, ref: remoteRef, platform: "linux/amd64", wantArch: "amd64"},
		{name: "from the registry", client: client, ref: remoteRef, platform: "linux/arm64", wantArch: "arm64"},
		{name: "miss while offline", client: client, offline: true, ref: remoteRef, platform: "linux/amd64", wantErr: ErrOffline},
		{name: "platform missing everywhere", client: client, ref: remoteRef, platform: "linux/s390x", wantErr: platform.ErrNoMatch},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var stored v1.ImageIndex
			if tt.cached {
				stored = idx
			}
			bases := CacheThenRemote(cacheWith(t, tt.ref, stored), tt.client, tt.offline)
			defer bases.Close()
			ref, err := name.ParseReference(tt.ref)
			if err != nil {
				t.Fatal(err)
			}
			img, err := bases.Image(context.Background(), ref, platform.MustParse(tt.platform))
			if tt.wantErr != nil {
				if !errors.Is(err, tt.wantErr) {
					t.Fatalf("err = %v, want %v", err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			cf, err := img.ConfigFile()
			if err != nil {
				t.Fatal(err)
			}
			if cf.Architecture != tt.wantArch {
				t.Errorf("architecture = %s, want %s", cf.Architecture, tt.wantArch)
			}
		})
	}
}

// TestBuildFromRegistry builds for arm64 on a base pulled from a registry.
func TestBuildFromRegistry(t *testing.T) {
	host := registryWith(t, "lib/base:1", fixtureIndex(t))
	client, err := manifest.NewClient(manifest.WithRegistries(map[string]manifest.RegistryConfig{host: {Insecure: true}}))
	if err != nil {
		t.Fatal(err)
	}
	bases := CacheThenRemote(cacheWith(t, "", nil), client, false)
	defer bases.Close()
	dir := writeContext(t, map[string]string{
		"Dockerfile": "ARG REG\nFROM ${REG}/lib/base:1\nCOPY a.txt /\n",
		"a.txt":      "a\n",
	})
	res, err := Build(context.Background(), Request{
		Context: dir, Platform: platform.MustParse("linux/arm64"), BuildArgs: map[string]string{"REG": host},
	}, WithBaseImages(bases), WithWorkDir(t.TempDir()))
	if err != nil {
		t.Fatal(err)
	}
	defer res.Close()
	var arch string
	for _, f := range listFiles(t, res.Image) {
		if f.Path == "/etc/arch" {
			arch = f.SHA256
		}
	}
	want := listFiles(t, fixtures(t)["library/base:1@linux/arm64"])
	for _, f := range want {
		if f.Path == "/etc/arch" && f.SHA256 != arch {
			t.Errorf("/etc/arch is not the arm64 one")
		}
	}
	if res.Platform.Architecture != "arm64" {
		t.Errorf("platform = %v", res.Platform)
	}
}

func TestOfflineRequestRefusesPullingBases(t *testing.T) {
	client, err := manifest.NewClient()
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name    string
		bases   *CachedBases
		wantErr bool
	}{
		{name: "pulling", bases: CacheThenRemote(nil, client, false), wantErr: true},
		{name: "offline", bases: CacheThenRemote(nil, client, true)},
		{name: "no client", bases: CacheThenRemote(nil, nil, false)},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dir := writeContext(t, map[string]string{"Dockerfile": "FROM scratch\n"})
			res, err := Build(context.Background(), Request{Context: dir, Platform: amd64, Offline: true},
				WithBaseImages(tt.bases), WithWorkDir(t.TempDir()))
			if (err != nil) != tt.wantErr {
				t.Fatalf("err = %v, wantErr %v", err, tt.wantErr)
			}
			if err == nil {
				res.Close()
			} else if !errors.Is(err, ErrOffline) {
				t.Errorf("err = %v, want ErrOffline", err)
			}
		})
	}
}
