package test

import (
	"fmt"
	"net/http"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"kiln/test/harness"
)

// TestWarmSurvivesFaults puts a proxy that injects 500s, 429s, resets
// before and in the middle of bodies, and stalls (until the client gives up)
// in front of the registry. Warm must retry and resume its way to a complete
// cache that verifies clean. Rounds on new caches continue until every kind
// of fault has been injected at least once.
func TestWarmSurvivesFaults(t *testing.T) {
	t.Parallel()
	reg := harness.NewRegistry(t)
	pushStandard(t, reg.Addr)
	const images = 8
	for i := range images {
		seed := int64(5000 + 100*i)
		pushIndex(t, reg.Ref(fmt.Sprintf("flaky/img%d:1", i)),
			harness.ImageSpec{Platform: "linux/amd64", Layers: layers(seed, 4, 160<<10)},
			harness.ImageSpec{Platform: "linux/arm64", Layers: layers(seed+50, 4, 160<<10)})
	}
	log := &requestLog{}
	faulty := harness.NewFaultProxy(t, reg.Addr, harness.Faults{
		Seed:         time.Now().UnixNano(),
		Status500:    0.2,
		Status429:    0.1,
		Reset:        0.1,
		ResetMidBody: 0.2,
		Stall:        0.1,
		StallFor:     0, // until the client gives up
		Only: func(r *http.Request) bool {
			log.record(r)
			return !strings.Contains(r.URL.Path, "/missing/")
		},
	})
	refs := []string{faulty.Addr + "/base/multi:1", faulty.Addr + "/app/shares:1"}
	for i := range images {
		refs = append(refs, fmt.Sprintf("%s/flaky/img%d:1", faulty.Addr, i))
	}
	plats := []string{"linux/amd64", "linux/arm64"}
	kinds := []string{harness.FaultStatus500, harness.FaultStatus429, harness.FaultReset, harness.FaultResetMidBody, harness.FaultStall}

	for round := 1; ; round++ {
		cache := filepath.Join(t.TempDir(), "cache")
		rep := filepath.Join(t.TempDir(), "report.json")
		args := []string{"warm", "--cache-dir", cache, "--stall-timeout", "2s", "--platform", strings.Join(plats, ","), "--report", rep}
		for _, r := range refs {
			args = append(args, "--image", r)
		}
		r := runKiln(t, args...)
		counts := faulty.Counts()
		t.Logf("round %d: faults injected so far: %v", round, counts)
		mustExit(t, r, 0)
		wantStatuses(t, readReport(t, rep), statuses(pairs(refs, plats), "pulled"))
		verifyCache(t, cache)
		validateCache(t, cache)
		missing := ""
		for _, k := range kinds {
			if counts[k] == 0 {
				missing += " " + k
			}
		}
		if missing == "" {
			break
		}
		if round == 3 {
			t.Fatalf("after %d rounds, no fault of kind%s was injected: the test proves less than it says", round, missing)
		}
	}

	// A missing image is an answer, not a failure to retry: one GET only.
	log.reset()
	missing := faulty.Addr + "/missing/image:1"
	rep := filepath.Join(t.TempDir(), "report.json")
	cache := filepath.Join(t.TempDir(), "cache")
	r := runKiln(t, "warm", "--cache-dir", cache, "--platform", "linux/amd64", "--image", missing, "--report", rep)
	mustExit(t, r, 1)
	verifyCache(t, cache)
	res := readReport(t, rep).byPair()[missing+" linux/amd64"]
	if res.Status != "failed" || !strings.Contains(strings.ToLower(res.Error), "unknown") && !strings.Contains(res.Error, "404") {
		t.Errorf("missing image: status %q, error %q; want failed with the registry's 404", res.Status, res.Error)
	}
	gets := log.count(http.MethodGet, `^/v2/missing/image/manifests/1$`)
	heads := log.count(http.MethodHead, `^/v2/missing/image/manifests/1$`)
	if gets+heads != 1 {
		t.Errorf("missing image: %d GETs and %d HEADs of its manifest, want exactly one request (a 404 is not retried); requests: %v", gets, heads, log.all())
	}
}
