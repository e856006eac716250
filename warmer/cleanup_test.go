package warmer

import (
	"bytes"
	"context"
	"io"
	"log"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/go-containerregistry/pkg/registry"
	v1 "github.com/google/go-containerregistry/pkg/v1"

	"kiln/manifest"
)

// hookRegistry is an in-process registry whose blob GETs go through hook
// first; hook returns true if it answered the request itself.
func hookRegistry(t *testing.T, hook func(w http.ResponseWriter, r *http.Request, digest string) bool) string {
	t.Helper()
	inner := registry.New(registry.Logger(log.New(io.Discard, "", 0)))
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if i := strings.Index(r.URL.Path, "/blobs/sha256:"); i >= 0 && r.Method == http.MethodGet {
			if hook(w, r, r.URL.Path[i+len("/blobs/"):]) {
				return
			}
		}
		inner.ServeHTTP(w, r)
	}))
	t.Cleanup(srv.Close)
	return strings.TrimPrefix(srv.URL, "http://")
}

// stallHalfway answers a blob GET with the headers and the first half of
// the body, then nothing until the client goes away.
func stallHalfway(w http.ResponseWriter, r *http.Request, body []byte) {
	w.Header().Set("Content-Length", strconv.Itoa(len(body)))
	w.WriteHeader(http.StatusOK)
	w.Write(body[:len(body)/2])
	http.NewResponseController(w).Flush()
	<-r.Context().Done()
}

func layerBytes(t *testing.T, l v1.Layer) (string, []byte) {
	t.Helper()
	d, err := l.Digest()
	if err != nil {
		t.Fatal(err)
	}
	rc, err := l.Compressed()
	if err != nil {
		t.Fatal(err)
	}
	defer rc.Close()
	data, err := io.ReadAll(rc)
	if err != nil {
		t.Fatal(err)
	}
	return d.String(), data
}

// temps lists the temp files anywhere in the cache.
func temps(t *testing.T, dir string) []string {
	t.Helper()
	var out []string
	for _, d := range []string{dir, filepath.Join(dir, "blobs", "sha256")} {
		es, err := os.ReadDir(d)
		if err != nil && !os.IsNotExist(err) {
			t.Fatal(err)
		}
		for _, e := range es {
			if strings.HasPrefix(e.Name(), ".tmp-") {
				out = append(out, filepath.Join(d, e.Name()))
			}
		}
	}
	return out
}

// warmAsync runs Warm in the background; ok arrives on the channel.
func warmAsync(ctx context.Context, w *Warmer, its []Item) <-chan bool {
	done := make(chan bool, 1)
	go func() {
		rep, err := w.Warm(ctx, its)
		done <- err == nil && rep.OK()
	}()
	return done
}

// TestWarmCancelledRemovesItsTemps: a warm cancelled mid-download (SIGTERM
// in the CLI) returns only once its partial files are gone.
func TestWarmCancelledRemovesItsTemps(t *testing.T) {
	l1, l2 := layer(t), layer(t)
	d1, body1 := layerBytes(t, l1)
	var serving atomic.Bool
	var stalled atomic.Int32
	host := hookRegistry(t, func(w http.ResponseWriter, r *http.Request, digest string) bool {
		if digest != d1 || !serving.Load() {
			return false
		}
		stalled.Add(1)
		stallHalfway(w, r, body1)
		return true
	})
	ref := host + "/cancel/app:1"
	pushImage(t, ref, platformImage(t, "linux/amd64", l1, l2))
	serving.Store(true)
	dir := t.TempDir()

	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	done := warmAsync(ctx, newWarmer(t, dir), items(ref, "linux/amd64"))
	waitFor(t, "a partial blob", func() bool { return stalled.Load() > 0 && len(temps(t, dir)) > 0 })
	cancel()
	select {
	case ok := <-done:
		if ok {
			t.Fatal("a cancelled warm succeeded")
		}
	case <-time.After(20 * time.Second):
		t.Fatal("Warm did not return after its context was cancelled")
	}
	if left := temps(t, dir); len(left) > 0 {
		t.Errorf("cancelled warm left %v", left)
	}
}

// TestWarmFailedImageStopsItsDownloads: when one layer of an image fails,
// its other layers' downloads are cancelled (nobody else waits for them),
// and the warm returns with their partial files removed, instead of
// leaving them to fill the disk.
func TestWarmFailedImageStopsItsDownloads(t *testing.T) {
	l1, l2 := layer(t), layer(t)
	d1, body1 := layerBytes(t, l1)
	d2, _ := layerBytes(t, l2)
	var serving atomic.Bool
	var stalled atomic.Int32
	host := hookRegistry(t, func(w http.ResponseWriter, r *http.Request, digest string) bool {
		switch {
		case !serving.Load():
			return false
		case digest == d1:
			stalled.Add(1)
			stallHalfway(w, r, body1)
			return true
		case digest == d2:
			// Fail only once the other layer is midway.
			for stalled.Load() == 0 && r.Context().Err() == nil {
				time.Sleep(5 * time.Millisecond)
			}
			http.Error(w, `{"errors":[{"code":"BLOB_UNKNOWN"}]}`, http.StatusNotFound)
			return true
		}
		return false
	})
	ref := host + "/fails/app:1"
	pushImage(t, ref, platformImage(t, "linux/amd64", l1, l2))
	serving.Store(true)
	dir := t.TempDir()

	start := time.Now()
	select {
	case ok := <-warmAsync(context.Background(), newWarmer(t, dir), items(ref, "linux/amd64")):
		if ok {
			t.Fatal("warm of an image with a missing layer succeeded")
		}
	case <-time.After(20 * time.Second):
		t.Fatal("warm still waits for a download no image wants")
	}
	t.Logf("failed in %v", time.Since(start).Round(time.Millisecond))
	if left := temps(t, dir); len(left) > 0 {
		t.Errorf("failed warm left %v", left)
	}
}

// TestWarmRemovesDeadTempsFirst: the leftovers of killed writes are gone
// before the first download starts, whatever their age; a live writer's
// temp file is not touched.
func TestWarmRemovesDeadTempsFirst(t *testing.T) {
	dir := t.TempDir()
	l, err := manifest.OpenLayout(dir)
	if err != nil {
		t.Fatal(err)
	}
	dead := []string{
		filepath.Join(dir, "blobs", "sha256", ".tmp-0123456789ab-1"),
		filepath.Join(dir, ".tmp-index.json-2"),
	}
	for _, p := range dead {
		if err := os.WriteFile(p, bytes.Repeat([]byte("x"), 4096), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	live, err := l.NewBlobWriter(v1.Hash{Algorithm: "sha256", Hex: strings.Repeat("ab", 32)}, -1)
	if err != nil {
		t.Fatal(err)
	}
	defer live.Abort()
	live.Write([]byte("in progress"))

	var leftAtFirstGET atomic.Int32
	leftAtFirstGET.Store(-1)
	host := hookRegistry(t, func(http.ResponseWriter, *http.Request, string) bool {
		n := 0
		for _, p := range dead {
			if _, err := os.Stat(p); err == nil {
				n++
			}
		}
		leftAtFirstGET.CompareAndSwap(-1, int32(n))
		return false
	})
	ref := host + "/sweep/app:1"
	pushImage(t, ref, platformImage(t, "linux/amd64", layer(t)))
	leftAtFirstGET.Store(-1)
	rep, err := newWarmer(t, dir).Warm(context.Background(), items(ref, "linux/amd64"))
	if err != nil || !rep.OK() {
		t.Fatalf("warm: %v %+v", err, rep)
	}
	if n := leftAtFirstGET.Load(); n != 0 {
		t.Errorf("%d dead temp files were still there at the first blob download", n)
	}
	left := temps(t, dir)
	if len(left) != 1 || !strings.Contains(left[0], ".tmp-abababababab-") {
		t.Errorf("temp files after the warm: %v, want only the live writer's", left)
	}
	vr, err := newWarmer(t, dir).Verify(context.Background())
	if err != nil || !vr.OK() || vr.Temps != 0 || vr.Writing != 1 {
		t.Errorf("verify: %v %+v, want no leftovers and 1 write in progress", err, vr)
	}
}

func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}
