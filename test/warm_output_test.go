package test

import (
	"encoding/json"
	"path/filepath"
	"strings"
	"testing"

	"kiln/test/harness"
)

// TestWarmOutput: the live display (forced with --progress tty) and JSON
// log lines, besides the summary table on stdout.
func TestWarmOutput(t *testing.T) {
	t.Parallel()
	reg := harness.NewRegistry(t)
	ref := reg.Ref("output/app:1")
	pushIndex(t, ref,
		harness.ImageSpec{Platform: "linux/amd64", Layers: layers(11001, 2, 256<<10)},
		harness.ImageSpec{Platform: "linux/arm64", Layers: layers(11011, 2, 256<<10)})
	missing := reg.Ref("output/missing:1")

	t.Run("live display", func(t *testing.T) {
		cache := filepath.Join(t.TempDir(), "cache")
		r := runKiln(t, "warm", "--cache-dir", cache, "--progress", "tty", "--image", ref, "--platform", "linux/amd64,linux/arm64")
		mustExit(t, r, 0)
		if !strings.Contains(r.stderr, "✔") || !strings.Contains(r.stderr, ref) {
			t.Errorf("no final display line with ✔ for %s on stderr:\n%s", ref, r)
		}
		if !strings.Contains(r.stdout, "IMAGE") || strings.Count(r.stdout, ref) != 2 {
			t.Errorf("stdout should hold the summary table, one row per platform:\n%s", r)
		}
		verifyCache(t, cache)
	})

	t.Run("json logs", func(t *testing.T) {
		cache := filepath.Join(t.TempDir(), "cache")
		r := runKiln(t, "warm", "--cache-dir", cache, "--progress", "plain", "--log-format", "json",
			"--image", ref, "--image", missing, "--platform", "linux/amd64")
		mustExit(t, r, 1)
		msgs := map[string]int{}
		for _, line := range strings.Split(strings.TrimSpace(r.stderr), "\n") {
			if strings.HasPrefix(line, "kiln: ") {
				continue // the final error, for people
			}
			var rec map[string]any
			if err := json.Unmarshal([]byte(line), &rec); err != nil {
				t.Errorf("stderr line is not JSON: %q", line)
				continue
			}
			msg, _ := rec["msg"].(string)
			msgs[msg]++
		}
		if msgs["warmed"] != 1 || msgs["warm failed"] != 1 {
			t.Errorf("want one \"warmed\" and one \"warm failed\" record, got %v:\n%s", msgs, r)
		}
		verifyCache(t, cache)
	})
}
