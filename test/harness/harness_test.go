package harness

import (
	"archive/tar"
	"errors"
	"io"
	"maps"
	"net"
	"net/http"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/remote"
)

func TestLayerIsDeterministic(t *testing.T) {
	tests := []struct {
		name      string
		spec      LayerSpec
		wantFiles int
		wantErr   bool
	}{
		{name: "one file", spec: LayerSpec{Seed: 1, Size: 1000}, wantFiles: 1},
		{name: "uneven split", spec: LayerSpec{Seed: 2, Size: 1001, Files: 3}, wantFiles: 3},
		{name: "empty", spec: LayerSpec{Seed: 3}, wantFiles: 1},
		{name: "negative size", spec: LayerSpec{Seed: 4, Size: -1}, wantErr: true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			a, err := Layer(tc.spec)
			if (err != nil) != tc.wantErr {
				t.Fatalf("Layer: err = %v, wantErr %v", err, tc.wantErr)
			}
			if tc.wantErr {
				return
			}
			b, err := Layer(tc.spec)
			if err != nil {
				t.Fatal(err)
			}
			if mustDigest(t, a) != mustDigest(t, b) {
				t.Errorf("same spec, different digests")
			}
			files, total := tarFiles(t, a)
			if files != tc.wantFiles || total != tc.spec.Size {
				t.Errorf("got %d files, %d bytes; want %d files, %d bytes", files, total, tc.wantFiles, tc.spec.Size)
			}
		})
	}
}

func TestDifferentSeedsDifferentBlobs(t *testing.T) {
	a, err := Layer(LayerSpec{Seed: 1})
	if err != nil {
		t.Fatal(err)
	}
	b, err := Layer(LayerSpec{Seed: 2})
	if err != nil {
		t.Fatal(err)
	}
	if mustDigest(t, a) == mustDigest(t, b) {
		t.Error("empty layers with different seeds share a digest")
	}
}

func TestImageIsDeterministic(t *testing.T) {
	spec := ImageSpec{Platform: "linux/arm/v7", Layers: []LayerSpec{{Seed: 5, Size: 4096}}, Env: []string{"A=b"}}
	a, err := Image(spec)
	if err != nil {
		t.Fatal(err)
	}
	b, err := Image(spec)
	if err != nil {
		t.Fatal(err)
	}
	if mustDigest(t, a) != mustDigest(t, b) {
		t.Error("same spec, different image digests")
	}
	cfg, err := a.ConfigFile()
	if err != nil {
		t.Fatal(err)
	}
	if got := cfg.Platform().String(); got != "linux/arm/v7" {
		t.Errorf("config platform = %s, want linux/arm/v7", got)
	}
	if _, err := Image(ImageSpec{Platform: "linux/amd64/v1/x"}); err == nil {
		t.Error("bad platform: want error")
	}
}

func TestStandardFixtures(t *testing.T) {
	reg := NewRegistry(t)
	fixtures, err := PushStandardFixtures(t.Context(), reg.Addr)
	if err != nil {
		t.Fatal(err)
	}
	want := map[string][]string{
		reg.Ref("base/multi:1"):  {"linux/amd64", "linux/arm64"},
		reg.Ref("base/single:1"): {"linux/amd64"},
		reg.Ref("app/shares:1"):  {"linux/amd64", "linux/arm64"},
		reg.Ref("base/arm:1"):    {"linux/arm/v7", "linux/arm64"},
	}
	if len(fixtures) != len(want) {
		t.Fatalf("got %d fixtures, want %d", len(fixtures), len(want))
	}
	firstLayers := map[string]v1.Hash{}
	for _, f := range fixtures {
		if !slices.Equal(f.Platforms, want[f.Ref]) {
			t.Errorf("%s: Platforms = %v, want %v", f.Ref, f.Platforms, want[f.Ref])
		}
		if f.Bytes <= 0 {
			t.Errorf("%s: Bytes = %d", f.Ref, f.Bytes)
		}
		for plat, l := range readBack(t, f) {
			firstLayers[f.Ref+" "+plat] = l
		}
	}
	shared := firstLayers[reg.Ref("base/multi:1")+" linux/amd64"]
	for _, key := range []string{"base/multi:1 linux/arm64", "app/shares:1 linux/amd64", "app/shares:1 linux/arm64"} {
		if got := firstLayers[reg.Addr+"/"+key]; got != shared {
			t.Errorf("%s first layer = %s, want shared %s", key, got, shared)
		}
	}
	if mb := float64(fixtures[0].Bytes) / (1 << 20); mb < 1.5 || mb > 3 {
		t.Errorf("base/multi is %.2f MiB, want about 2", mb)
	}
}

// readBack pulls f from the registry, checks its digest and platforms, and
// returns the first layer digest of each platform.
func readBack(t *testing.T, f Fixture) map[string]v1.Hash {
	t.Helper()
	ref, err := name.ParseReference(f.Ref, name.Insecure)
	if err != nil {
		t.Fatal(err)
	}
	desc, err := remote.Get(ref, remote.WithContext(t.Context()))
	if err != nil {
		t.Fatal(err)
	}
	if desc.Digest != f.Digest || desc.MediaType.IsIndex() != f.Multi {
		t.Errorf("%s: got %s (%s), want %s multi=%v", f.Ref, desc.Digest, desc.MediaType, f.Digest, f.Multi)
	}
	if !f.Multi {
		img, err := desc.Image()
		if err != nil {
			t.Fatal(err)
		}
		return map[string]v1.Hash{platformOf(t, img): firstLayer(t, img)}
	}
	idx, err := desc.ImageIndex()
	if err != nil {
		t.Fatal(err)
	}
	return indexFirstLayers(t, f, idx)
}

func indexFirstLayers(t *testing.T, f Fixture, idx v1.ImageIndex) map[string]v1.Hash {
	t.Helper()
	im, err := idx.IndexManifest()
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]v1.Hash{}
	var plats []string
	for _, d := range im.Manifests {
		if d.Platform == nil {
			t.Fatalf("%s: descriptor %s has no platform", f.Ref, d.Digest)
		}
		img, err := idx.Image(d.Digest)
		if err != nil {
			t.Fatal(err)
		}
		if got := platformOf(t, img); got != d.Platform.String() {
			t.Errorf("%s: config says %s, descriptor says %s", f.Ref, got, d.Platform)
		}
		plats = append(plats, d.Platform.String())
		out[d.Platform.String()] = firstLayer(t, img)
	}
	if !slices.Equal(plats, f.Platforms) {
		t.Errorf("%s: index platforms %v, want %v", f.Ref, plats, f.Platforms)
	}
	return out
}

func platformOf(t *testing.T, img v1.Image) string {
	t.Helper()
	cfg, err := img.ConfigFile()
	if err != nil {
		t.Fatal(err)
	}
	return cfg.Platform().String()
}

func firstLayer(t *testing.T, img v1.Image) v1.Hash {
	t.Helper()
	m, err := img.Manifest()
	if err != nil {
		t.Fatal(err)
	}
	if len(m.Layers) == 0 {
		t.Fatal("image has no layers")
	}
	return m.Layers[0].Digest
}

func TestRegistryCloseIsIdempotent(t *testing.T) {
	reg, err := StartRegistry(t.Context(), t.TempDir(), nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := reg.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}
	if err := reg.Close(); err != nil {
		t.Fatalf("second Close: %v", err)
	}
	if _, err := http.Get("http://" + reg.Addr + "/v2/"); err == nil {
		t.Error("registry still answers after Close")
	}
}

func TestRegistryReportsTakenPort(t *testing.T) {
	bin, err := findRegistryBinary()
	if err != nil {
		t.Skip(err)
	}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	_, err = startRegistryAt(t.Context(), bin, t.TempDir(), l.Addr().String(), nil)
	if !errors.Is(err, errPortInUse) {
		t.Errorf("err = %v, want errPortInUse", err)
	}
}

func TestFaultProxyStatus500ThenThrough(t *testing.T) {
	reg := NewRegistry(t)
	p := NewFaultProxy(t, reg.Addr, Faults{Seed: 1, Status500: 1, MaxFaultsPerPath: 2})
	var got []int
	for range 3 {
		resp, err := http.Get("http://" + p.Addr + "/v2/")
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		got = append(got, resp.StatusCode)
	}
	if want := []int{500, 500, 200}; !slices.Equal(got, want) {
		t.Errorf("statuses = %v, want %v", got, want)
	}
	wantCounts(t, p, map[string]int{CountRequests: 3, FaultStatus500: 2})
}

func TestFaultProxyStatus429(t *testing.T) {
	reg := NewRegistry(t)
	p := NewFaultProxy(t, reg.Addr, Faults{Status429: 1, MaxFaultsPerPath: 1})
	resp, err := http.Get("http://" + p.Addr + "/v2/")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusTooManyRequests || resp.Header.Get("Retry-After") != "1" {
		t.Errorf("got %d Retry-After %q, want 429 and 1", resp.StatusCode, resp.Header.Get("Retry-After"))
	}
	wantCounts(t, p, map[string]int{CountRequests: 1, FaultStatus429: 1})
}

func TestFaultProxyReset(t *testing.T) {
	reg := NewRegistry(t)
	p := NewFaultProxy(t, reg.Addr, Faults{Reset: 1})
	// Fresh connections, so net/http does not transparently retry.
	client := &http.Client{Transport: &http.Transport{DisableKeepAlives: true}}
	for i := range defaultMaxFaultsPerPath + 1 {
		resp, err := client.Get("http://" + p.Addr + "/v2/")
		if i < defaultMaxFaultsPerPath {
			if err == nil {
				resp.Body.Close()
				t.Fatalf("request %d: got %d, want a connection error", i, resp.StatusCode)
			}
			continue
		}
		if err != nil {
			t.Fatalf("request %d, past MaxFaultsPerPath: %v", i, err)
		}
		resp.Body.Close()
	}
	wantCounts(t, p, map[string]int{CountRequests: 4, FaultReset: 3})
}

func TestFaultProxyResetMidBody(t *testing.T) {
	reg := NewRegistry(t)
	url := pushBlobFixture(t, reg, 256<<10)
	p := NewFaultProxy(t, reg.Addr, Faults{ResetMidBody: 1, MaxFaultsPerPath: 1})
	resp, err := http.Get(strings.Replace(url, reg.Addr, p.Addr, 1))
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if resp.StatusCode != http.StatusOK || !errors.Is(err, io.ErrUnexpectedEOF) {
		t.Errorf("got %d, %d bytes, err %v; want 200 and unexpected EOF", resp.StatusCode, len(body), err)
	}
	if len(body) == 0 || int64(len(body)) >= resp.ContentLength {
		t.Errorf("got %d of %d bytes, want part of the body", len(body), resp.ContentLength)
	}
	wantCounts(t, p, map[string]int{CountRequests: 1, FaultResetMidBody: 1})
}

func TestFaultProxyStallUntilClientGivesUp(t *testing.T) {
	reg := NewRegistry(t)
	url := pushBlobFixture(t, reg, 256<<10)
	p := NewFaultProxy(t, reg.Addr, Faults{Stall: 1})
	client := &http.Client{Timeout: 500 * time.Millisecond}
	resp, err := client.Get(strings.Replace(url, reg.Addr, p.Addr, 1))
	if err != nil {
		t.Fatal(err) // headers arrive before the stall
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	var netErr net.Error
	if !errors.As(err, &netErr) || !netErr.Timeout() {
		t.Errorf("read error = %v, want a timeout", err)
	}
	if len(body) == 0 || int64(len(body)) >= resp.ContentLength {
		t.Errorf("got %d of %d bytes before the stall, want part", len(body), resp.ContentLength)
	}
	wantCounts(t, p, map[string]int{CountRequests: 1, FaultStall: 1})
}

func TestFaultProxyStallForThenResume(t *testing.T) {
	reg := NewRegistry(t)
	url := pushBlobFixture(t, reg, 256<<10)
	p := NewFaultProxy(t, reg.Addr, Faults{Stall: 1, StallFor: 200 * time.Millisecond})
	start := time.Now()
	resp, err := http.Get(strings.Replace(url, reg.Addr, p.Addr, 1))
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil || int64(len(body)) != resp.ContentLength {
		t.Fatalf("got %d of %d bytes, err %v; want the whole body", len(body), resp.ContentLength, err)
	}
	if d := time.Since(start); d < 200*time.Millisecond {
		t.Errorf("took %v, want at least the stall", d)
	}
	want := url[strings.LastIndex(url, "/")+1:]
	if got, _, _ := v1.SHA256(strings.NewReader(string(body))); got.String() != want {
		t.Errorf("body digest %s, want %s", got, want)
	}
}

func TestFaultProxyForwardsPushAndPull(t *testing.T) {
	reg := NewRegistry(t)
	p := NewFaultProxy(t, reg.Addr, Faults{})
	spec := ImageSpec{Platform: "linux/amd64", Layers: []LayerSpec{{Seed: 7, Size: 64 << 10}}}
	digest, err := PushImage(t.Context(), p.Addr+"/via/proxy:1", spec)
	if err != nil {
		t.Fatal(err)
	}
	ref, _ := name.ParseReference(reg.Ref("via/proxy:1"), name.Insecure)
	desc, err := remote.Get(ref, remote.WithContext(t.Context()))
	if err != nil || desc.Digest != digest {
		t.Fatalf("direct read: %v, digest %v, want %s", err, desc, digest)
	}
	resp, err := http.Post("http://"+p.Addr+"/v2/via/proxy/blobs/uploads/", "", nil)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if loc := resp.Header.Get("Location"); !strings.HasPrefix(loc, "http://"+p.Addr+"/") {
		t.Errorf("upload Location = %q, want it on the proxy %s", loc, p.Addr)
	}
}

func TestFaultProxyIsDeterministic(t *testing.T) {
	reg := NewRegistry(t)
	f := Faults{Seed: 42, Status500: 0.5, MaxFaultsPerPath: 1000}
	a := statuses(t, NewFaultProxy(t, reg.Addr, f), 20)
	b := statuses(t, NewFaultProxy(t, reg.Addr, f), 20)
	if !slices.Equal(a, b) {
		t.Errorf("same seed, different faults:\n%v\n%v", a, b)
	}
	if !slices.Contains(a, 200) || !slices.Contains(a, 500) {
		t.Errorf("statuses %v, want a mix of 200 and 500", a)
	}
}

func TestFaultProxyOnly(t *testing.T) {
	reg := NewRegistry(t)
	only := func(r *http.Request) bool { return r.URL.Path != "/v2/" }
	p := NewFaultProxy(t, reg.Addr, Faults{Status500: 1, Only: only})
	if got := statuses(t, p, 3); !slices.Equal(got, []int{200, 200, 200}) {
		t.Errorf("statuses = %v, want all 200", got)
	}
}

func TestLargeFixture(t *testing.T) {
	if testing.Short() {
		t.Skip("pushes 64 MiB")
	}
	reg := NewRegistry(t)
	start := time.Now()
	f, err := PushLargeFixture(t.Context(), reg.Addr, 64)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("pushed %s (%d bytes) in %v", f.Ref, f.Bytes, time.Since(start))
	if f.Bytes < 64<<20 || f.Multi || !slices.Equal(f.Platforms, []string{"linux/amd64"}) {
		t.Errorf("fixture = %+v", f)
	}
}

func statuses(t *testing.T, p *FaultProxy, n int) []int {
	t.Helper()
	out := make([]int, n)
	for i := range out {
		resp, err := http.Get("http://" + p.Addr + "/v2/")
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		out[i] = resp.StatusCode
	}
	return out
}

// pushBlobFixture pushes a one-layer image and returns the layer's blob URL
// on reg.
func pushBlobFixture(t *testing.T, reg *Registry, size int64) string {
	t.Helper()
	spec := LayerSpec{Seed: 99, Size: size}
	if _, err := PushImage(t.Context(), reg.Ref("blob/src:1"), ImageSpec{Layers: []LayerSpec{spec}}); err != nil {
		t.Fatal(err)
	}
	l, err := Layer(spec)
	if err != nil {
		t.Fatal(err)
	}
	return "http://" + reg.Addr + "/v2/blob/src/blobs/" + mustDigest(t, l).String()
}

func wantCounts(t *testing.T, p *FaultProxy, want map[string]int) {
	t.Helper()
	if got := p.Counts(); !maps.Equal(got, want) {
		t.Errorf("Counts() = %v, want %v", got, want)
	}
}

func mustDigest(t *testing.T, d interface{ Digest() (v1.Hash, error) }) v1.Hash {
	t.Helper()
	h, err := d.Digest()
	if err != nil {
		t.Fatal(err)
	}
	return h
}

func tarFiles(t *testing.T, l v1.Layer) (files int, bytes int64) {
	t.Helper()
	rc, err := l.Uncompressed()
	if err != nil {
		t.Fatal(err)
	}
	defer rc.Close()
	tr := tar.NewReader(rc)
	for {
		h, err := tr.Next()
		if errors.Is(err, io.EOF) {
			return files, bytes
		}
		if err != nil {
			t.Fatal(err)
		}
		if h.Typeflag == tar.TypeReg {
			files++
			bytes += h.Size
		}
	}
}

// TestTLSRegistry: a registry started with TLS and a client CA takes a push
// from a client that trusts the CA and shows the client certificate, and
// refuses one that shows none.
func TestTLSRegistry(t *testing.T) {
	reg, files := NewTLSRegistry(t, true)
	if _, err := PushImageTLS(t.Context(), reg.Ref("tls/app:1"), ImageSpec{Platform: "linux/amd64", Layers: []LayerSpec{{Seed: 7, Size: 100}}}, files); err != nil {
		t.Fatal(err)
	}
	conf, err := files.ClientConfig()
	if err != nil {
		t.Fatal(err)
	}
	conf.Certificates = nil
	client := &http.Client{Transport: &http.Transport{TLSClientConfig: conf}}
	resp, err := client.Get("https://" + reg.Addr + "/v2/")
	if err == nil {
		resp.Body.Close()
		t.Fatalf("a client without a certificate got %s", resp.Status)
	}
	if !strings.Contains(err.Error(), "certificate") {
		t.Errorf("err = %v, want a TLS refusal", err)
	}
}
