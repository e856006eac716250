package test

import (
	"encoding/base64"
	"encoding/json"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"github.com/google/go-containerregistry/pkg/authn"

	"kiln/test/harness"
)

// TestWarmCredentials pulls from a registry that needs a password, with the
// credentials in a Docker config.json found through DOCKER_CONFIG (the file
// a Kubernetes dockerconfigjson secret mounts). Without them, or with a
// wrong password, warm fails with an authentication error and does not
// retry the 401.
func TestWarmCredentials(t *testing.T) {
	t.Parallel()
	const user, pass = "kiln", "s3cret-Passw0rd"
	reg := harness.NewRegistryWithAuth(t, user, pass)
	basic := &authn.Basic{Username: user, Password: pass}
	if _, err := harness.PushIndexWithAuth(t.Context(), reg.Ref("private/app:1"), []harness.ImageSpec{
		{Platform: "linux/amd64", Layers: layers(8001, 2, 64<<10)},
		{Platform: "linux/arm64", Layers: layers(8011, 2, 64<<10)},
	}, basic); err != nil {
		t.Fatal(err)
	}
	proxy, log := newCountingProxy(t, reg.Addr)
	ref := proxy.Addr + "/private/app:1"
	dockerConfig := func(user, pass string) string {
		dir := t.TempDir()
		cfg := map[string]any{"auths": map[string]any{
			proxy.Addr: map[string]string{"auth": base64.StdEncoding.EncodeToString([]byte(user + ":" + pass))},
		}}
		data, err := json.Marshal(cfg)
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(dir, "config.json"), data, 0o600); err != nil {
			t.Fatal(err)
		}
		return dir
	}
	warm := func(t *testing.T, dockerDir string) (result, string) {
		cache := filepath.Join(t.TempDir(), "cache")
		rep := filepath.Join(t.TempDir(), "report.json")
		r := runKilnOpts(t, runOpts{env: []string{"DOCKER_CONFIG=" + dockerDir}},
			"warm", "--cache-dir", cache, "--image", ref, "--platform", "linux/amd64,linux/arm64", "--report", rep)
		return r, cache
	}

	t.Run("with credentials", func(t *testing.T) {
		log.reset()
		r, cache := warm(t, dockerConfig(user, pass))
		mustExit(t, r, 0)
		verifyCache(t, cache)
		validateCache(t, cache)
		if n := log.count(http.MethodGet, anyBlob); n < 4 {
			t.Errorf("only %d blob GETs through the proxy: did kiln go around it?", n)
		}
	})

	authError := regexp.MustCompile(`(?i)unauthori[sz]ed|authentication required|401`)
	for _, tc := range []struct {
		name      string
		dockerDir func() string
	}{
		{"without credentials", func() string { return t.TempDir() }},
		{"with a wrong password", func() string { return dockerConfig(user, "wrong") }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			log.reset()
			r, cache := warm(t, tc.dockerDir())
			mustExit(t, r, 1)
			if !authError.MatchString(r.output()) {
				t.Errorf("no authentication error in the output:\n%s", r)
			}
			manifests := log.count(http.MethodGet, `^/v2/private/app/manifests/1$`) + log.count(http.MethodHead, `^/v2/private/app/manifests/1$`)
			if manifests != 1 {
				t.Errorf("%d requests for the manifest, want 1: a 401 is not retried; requests: %v", manifests, log.all())
			}
			if n := len(log.all()); n > 4 {
				t.Errorf("%d requests in all for one refused image, want a handful: %v", n, log.all())
			}
			verifyCache(t, cache)
		})
	}

	// Credentials that expire after the cache was filled: a refresh cannot
	// check the tag, but what is cached stays cached and usable, and exit 0
	// means "every (image, platform) is in the cache".
	t.Run("refresh after the credentials went away", func(t *testing.T) {
		cache := filepath.Join(t.TempDir(), "cache")
		args := []string{"warm", "--cache-dir", cache, "--image", ref, "--platform", "linux/amd64"}
		mustExit(t, runKilnOpts(t, runOpts{env: []string{"DOCKER_CONFIG=" + dockerConfig(user, pass)}}, args...), 0)
		before := snapshot(t, cache)
		rep := filepath.Join(t.TempDir(), "report.json")
		r := runKilnOpts(t, runOpts{env: []string{"DOCKER_CONFIG=" + t.TempDir()}}, append(args, "--refresh", "--max-age", "0s", "--report", rep)...)
		res := readReport(t, rep).byPair()[ref+" linux/amd64"]
		if r.code != 0 || res.Status != "fresh" {
			t.Errorf("refresh that cannot reach the tag: exit %d, status %q (error %q); want exit 0 and fresh: the image is in the cache\n%s", r.code, res.Status, res.Error, r)
		}
		if _, ok := entry(t, cache, ref); !ok {
			t.Fatalf("a failed refresh dropped the cached entry")
		}
		verifyCache(t, cache)
		for f := range before {
			if !strings.HasPrefix(f, "blobs/") {
				continue
			}
			if _, ok := snapshot(t, cache)[f]; !ok {
				t.Errorf("a failed refresh deleted %s", f)
			}
		}
		rep2 := filepath.Join(t.TempDir(), "report.json")
		mustExit(t, runKiln(t, append(args, "--report", rep2)...), 0)
		wantStatuses(t, readReport(t, rep2), map[string]string{ref + " linux/amd64": "fresh"})
	})
}
