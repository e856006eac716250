package test

import (
	"net/http"
	"path/filepath"
	"testing"
	"time"

	"kiln/test/harness"
)

// TestWarmFailureIsolation: one image that cannot be pulled (a layer the
// registry lost) must not fail another image that shares a layer with it
// and is otherwise fine. Both are warmed at once several times, so that
// either may be the one downloading the shared layer when the other fails.
func TestWarmFailureIsolation(t *testing.T) {
	t.Parallel()
	reg := harness.NewRegistry(t)
	shared := harness.LayerSpec{Seed: 13001, Size: 4 << 20, Files: 2}
	lost := harness.LayerSpec{Seed: 13002, Size: 16 << 10}
	broken, fine := reg.Ref("iso/broken:1"), reg.Ref("iso/fine:1")
	pushIndex(t, broken, harness.ImageSpec{Platform: "linux/amd64", Layers: []harness.LayerSpec{shared, lost}})
	pushIndex(t, fine, harness.ImageSpec{Platform: "linux/amd64", Layers: []harness.LayerSpec{shared, {Seed: 13003, Size: 16 << 10}}})
	deleteBlob(t, reg.Addr, "iso/broken", lost)
	// Every blob body pauses midway, so the shared layer is still in flight
	// when the lost one is reported missing.
	slow := harness.NewFaultProxy(t, reg.Addr, harness.Faults{Stall: 1, StallFor: 300 * time.Millisecond, MaxFaultsPerPath: 1 << 30})
	broken, fine = slow.Addr+"/iso/broken:1", slow.Addr+"/iso/fine:1"

	for trial := range 6 {
		for _, order := range [][]string{{broken, fine}, {fine, broken}} {
			cache := filepath.Join(t.TempDir(), "cache")
			rep := filepath.Join(t.TempDir(), "report.json")
			r := runKiln(t, "warm", "--cache-dir", cache, "--platform", "linux/amd64", "--report", rep, "--image", order[0], "--image", order[1])
			mustExit(t, r, 1)
			got := readReport(t, rep).byPair()
			if res := got[broken+" linux/amd64"]; res.Status != "failed" {
				t.Errorf("trial %d: the image with a lost layer is %q", trial, res.Status)
			}
			if res := got[fine+" linux/amd64"]; res.Status != "pulled" {
				t.Fatalf("trial %d (order %v): the image that shares a layer with a broken one is %q: %s\n%s", trial, order, res.Status, res.Error, r)
			}
			verifyCache(t, cache)
		}
	}
}

// deleteBlob makes the registry forget a layer of repo, as a registry's
// garbage collection gone wrong would.
func deleteBlob(t *testing.T, addr, repo string, spec harness.LayerSpec) {
	t.Helper()
	l, err := harness.Layer(spec)
	if err != nil {
		t.Fatal(err)
	}
	d, err := l.Digest()
	if err != nil {
		t.Fatal(err)
	}
	req, err := http.NewRequestWithContext(t.Context(), http.MethodDelete, "http://"+addr+"/v2/"+repo+"/blobs/"+d.String(), nil)
	if err != nil {
		t.Fatal(err)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusAccepted {
		t.Fatalf("DELETE blob %s of %s: %s", d, repo, resp.Status)
	}
}
