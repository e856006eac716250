package layercache_test

import (
	"bytes"
	"context"
	"errors"
	"io"
	"log"
	"log/slog"
	"net/http/httptest"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/registry"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/random"

	"kiln/builder/layercache"
	"kiln/manifest"
)

func TestKeysAreFieldExact(t *testing.T) {
	a := layercache.NewBuilder("step").Add("x", "ab").Add("y", "c").Sum()
	b := layercache.NewBuilder("step").Add("x", "a").Add("y", "bc").Sum()
	c := layercache.NewBuilder("state").Add("x", "ab").Add("y", "c").Sum()
	if a == b || a == c {
		t.Fatal("keys of different fields or kinds collide")
	}
	if again := layercache.NewBuilder("step").Add("x", "ab").Add("y", "c").Sum(); again != a {
		t.Fatal("the same fields give different keys")
	}
	if l1, l2 := layercache.NewBuilder("k").AddList("l", []string{"a", "b"}).Sum(), layercache.NewBuilder("k").AddList("l", []string{"ab"}).Sum(); l1 == l2 {
		t.Fatal("lists collide")
	}
	k, err := layercache.ParseKey(a.String())
	if err != nil || k != a || len(a.Short()) != 12 {
		t.Fatalf("ParseKey(String()) = %v, %v", k, err)
	}
	if _, err := layercache.ParseKey("zz"); err == nil {
		t.Fatal("a bad key parsed")
	}
}

func TestFilesIgnoreNothingButTime(t *testing.T) {
	sum := func(f layercache.File, content string) layercache.Key {
		fs := layercache.NewFiles()
		if err := fs.Add(f, strings.NewReader(content)); err != nil {
			t.Fatal(err)
		}
		return fs.Sum()
	}
	base := layercache.File{Path: "a", Mode: 0o644, Size: 2}
	k := sum(base, "hi")
	for name, f := range map[string]layercache.File{
		"path":  {Path: "b", Mode: 0o644, Size: 2},
		"mode":  {Path: "a", Mode: 0o755, Size: 2},
		"owner": {Path: "a", Mode: 0o644, UID: 1, Size: 2},
	} {
		if sum(f, "hi") == k {
			t.Errorf("%s does not change the digest", name)
		}
	}
	if sum(base, "ho") == k {
		t.Error("content does not change the digest")
	}
	fs := layercache.NewFiles()
	if err := fs.Add(layercache.File{Path: "a", Mode: 0o644, Size: 5}, strings.NewReader("hi")); err == nil {
		t.Error("a short read is not an error")
	}
}

// stores are the two implementations, fresh.
func stores(t *testing.T) map[string]layercache.Store {
	t.Helper()
	srv := httptest.NewServer(registry.New(registry.Logger(log.New(io.Discard, "", 0))))
	t.Cleanup(srv.Close)
	host := strings.TrimPrefix(srv.URL, "http://")
	client, err := manifest.NewClient(manifest.WithRegistries(map[string]manifest.RegistryConfig{host: {Insecure: true}}))
	if err != nil {
		t.Fatal(err)
	}
	repo, err := name.NewRepository(host + "/cache")
	if err != nil {
		t.Fatal(err)
	}
	l, err := manifest.OpenLayout(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	local := layercache.NewLocal(l)
	t.Cleanup(func() { local.Close() })
	return map[string]layercache.Store{"registry": layercache.NewRegistry(client, repo), "local": local}
}

func layerBytes(t *testing.T, l v1.Layer) []byte {
	t.Helper()
	rc, err := l.Compressed()
	if err != nil {
		t.Fatal(err)
	}
	defer rc.Close()
	b, err := io.ReadAll(rc)
	if err != nil {
		t.Fatal(err)
	}
	if err := rc.Close(); err != nil {
		t.Fatal(err)
	}
	return b
}

func TestStoresRoundTrip(t *testing.T) {
	ctx := context.Background()
	for storeName, s := range stores(t) {
		t.Run(storeName, func(t *testing.T) {
			layer, err := random.Layer(4096, "application/vnd.oci.image.layer.v1.tar+gzip")
			if err != nil {
				t.Fatal(err)
			}
			key := layercache.NewBuilder("step").Add("n", storeName).Sum()
			if _, err := s.Get(ctx, key); !errors.Is(err, layercache.ErrMiss) {
				t.Fatalf("empty store: %v, want ErrMiss", err)
			}
			now := time.Now().Truncate(time.Second)
			if err := s.Put(ctx, key, &layercache.Entry{Layer: layer, Step: "RUN make", Created: now}); err != nil {
				t.Fatal(err)
			}
			e, err := s.Get(ctx, key)
			if err != nil {
				t.Fatal(err)
			}
			want, _ := layer.Digest()
			got, _ := e.Layer.Digest()
			wantDiff, _ := layer.DiffID()
			gotDiff, _ := e.Layer.DiffID()
			if got != want || gotDiff != wantDiff || e.Step != "RUN make" || !e.Created.Equal(now) {
				t.Fatalf("got %v %v %q %v, want %v %v", got, gotDiff, e.Step, e.Created, want, wantDiff)
			}
			if !bytes.Equal(layerBytes(t, e.Layer), layerBytes(t, layer)) {
				t.Fatal("the stored layer's bytes differ")
			}
			// An empty step and a value.
			empty := layercache.NewBuilder("step").Add("empty", storeName).Sum()
			if err := s.Put(ctx, empty, &layercache.Entry{Step: "RUN true", Created: now}); err != nil {
				t.Fatal(err)
			}
			if e, err := s.Get(ctx, empty); err != nil || e.Layer != nil || e.Value != "" {
				t.Fatalf("empty entry: %+v, %v", e, err)
			}
			val := layercache.NewBuilder("selection").Add("v", storeName).Sum()
			if err := s.Put(ctx, val, &layercache.Entry{Value: key.String(), Created: now}); err != nil {
				t.Fatal(err)
			}
			if e, err := s.Get(ctx, val); err != nil || e.Value != key.String() {
				t.Fatalf("value entry: %+v, %v", e, err)
			}
		})
	}
}

func TestCacheTTLAndFailures(t *testing.T) {
	ctx := context.Background()
	s := stores(t)["local"]
	key := layercache.NewBuilder("step").Add("ttl", "1").Sum()
	old := time.Now().Add(-48 * time.Hour)
	if err := s.Put(ctx, key, &layercache.Entry{Step: "RUN old", Created: old}); err != nil {
		t.Fatal(err)
	}
	c := layercache.New([]layercache.Store{s}, layercache.Options{TTL: 24 * time.Hour})
	if _, ok := c.Get(ctx, key); ok {
		t.Fatal("an entry past the TTL was a hit")
	}
	c = layercache.New([]layercache.Store{s}, layercache.Options{TTL: 72 * time.Hour})
	if _, ok := c.Get(ctx, key); !ok {
		t.Fatal("an entry within the TTL was a miss")
	}
	// A registry nobody listens on: a warning and a miss, then not asked again.
	client, _ := manifest.NewClient(manifest.WithRegistries(map[string]manifest.RegistryConfig{"127.0.0.1:1": {Insecure: true}}))
	repo, _ := name.NewRepository("127.0.0.1:1/cache")
	var logs bytes.Buffer
	c = layercache.New([]layercache.Store{layercache.NewRegistry(client, repo), s}, layercache.Options{TTL: 72 * time.Hour, Log: slog.New(slog.NewTextHandler(&logs, nil))})
	if _, ok := c.Get(ctx, key); !ok {
		t.Fatal("the second store was not asked after the first failed")
	}
	c.Put(key, &layercache.Entry{Step: "RUN x", Created: time.Now()})
	c.Wait(ctx)
	if _, failed := c.Stored(); failed > 1 {
		t.Fatalf("%d failed puts: the failed store must not be tried again", failed)
	}
	if n := strings.Count(logs.String(), "level=WARN"); n != 1 {
		t.Fatalf("%d warnings, want one:\n%s", n, logs.String())
	}
}

func TestLocalDropsDamagedEntry(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	l, err := manifest.OpenLayout(dir)
	if err != nil {
		t.Fatal(err)
	}
	s := layercache.NewLocal(l)
	defer s.Close()
	layer, _ := random.Layer(2048, "application/vnd.oci.image.layer.v1.tar+gzip")
	key := layercache.NewBuilder("step").Add("damaged", "1").Sum()
	if err := s.Put(ctx, key, &layercache.Entry{Layer: layer, Step: "RUN x", Created: time.Now()}); err != nil {
		t.Fatal(err)
	}
	h, _ := layer.Digest()
	p := l.BlobPath(h)
	data, err := os.ReadFile(p)
	if err != nil {
		t.Fatal(err)
	}
	data[len(data)/2] ^= 0xff
	_ = os.Chmod(p, 0o644)
	if err := os.WriteFile(p, data, 0o444); err != nil {
		t.Fatal(err)
	}
	// A fresh store (another build): the blob is rehashed before use.
	s2 := layercache.NewLocal(l)
	defer s2.Close()
	if _, err := s2.Get(ctx, key); !errors.Is(err, layercache.ErrMiss) {
		t.Fatalf("damaged entry: %v, want a miss", err)
	}
	idx, err := l.ReadIndex()
	if err != nil {
		t.Fatal(err)
	}
	for _, d := range idx.Manifests {
		if d.Annotations[layercache.AnnotationKey] == key.String() {
			t.Fatal("the damaged entry is still in index.json")
		}
	}
}
