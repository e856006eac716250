package test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"runtime"
	"slices"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/layout"
	"github.com/google/go-containerregistry/pkg/v1/validate"

	"kiln/test/harness"
)

// kilnBin is the kiln binary TestMain builds once for every test.
var kilnBin string

// emptyDockerConfig is a DOCKER_CONFIG folder with no credentials, so that
// the tests never read the credentials of whoever runs them.
var emptyDockerConfig string

// defaultTimeout bounds one kiln run; a hang fails the test instead of the
// whole package.
const defaultTimeout = 3 * time.Minute

func TestMain(m *testing.M) {
	os.Exit(runTests(m))
}

func runTests(m *testing.M) int {
	dir, err := os.MkdirTemp("", "kiln-e2e-")
	if err != nil {
		fmt.Fprintln(os.Stderr, "e2e:", err)
		return 1
	}
	defer os.RemoveAll(dir)
	kilnBin = filepath.Join(dir, "kiln")
	emptyDockerConfig = filepath.Join(dir, "docker-config")
	if err := os.Mkdir(emptyDockerConfig, 0o755); err != nil {
		fmt.Fprintln(os.Stderr, "e2e:", err)
		return 1
	}
	// As the Makefile builds it: with its small RUN step init embedded.
	initBuild := exec.Command("sh", "../builder/run/initbin/build.sh", runtime.GOARCH)
	initBuild.Stderr = os.Stderr
	stamp, err := initBuild.Output()
	if err != nil {
		fmt.Fprintln(os.Stderr, "e2e: building kiln's RUN step init:", err)
		return 1
	}
	build := exec.Command("go", "build", "-ldflags", "-X kiln/builder/run.initStamp="+strings.TrimSpace(string(stamp)), "-o", kilnBin, "kiln/cmd/kiln")
	build.Stdout, build.Stderr = os.Stderr, os.Stderr
	build.Env = append(os.Environ(), "CGO_ENABLED=0") // static, as shipped: it also runs chrooted onto an empty tmpfs
	if err := build.Run(); err != nil {
		fmt.Fprintln(os.Stderr, "e2e: building kiln:", err)
		return 1
	}
	return m.Run()
}

// result is what one kiln run did.
type result struct {
	args   []string
	code   int
	stdout string
	stderr string
}

func (r result) String() string {
	return fmt.Sprintf("kiln %s\nexit %d\n--- stdout\n%s--- stderr\n%s", strings.Join(r.args, " "), r.code, r.stdout, r.stderr)
}

// output is stdout and stderr together, for messages that may go to either.
func (r result) output() string { return r.stdout + r.stderr }

// runOpts say how to run kiln besides its arguments.
type runOpts struct {
	env     []string // added to the hermetic base environment (later wins)
	dir     string   // working directory; default: a fresh empty one
	timeout time.Duration
}

// kilnCmd prepares a kiln process: a hermetic environment (no KILN_*
// variables, no proxy, no credentials of the user) and an empty working
// directory, so that no ./build.toml is read by accident.
func kilnCmd(t *testing.T, ctx context.Context, o runOpts, args ...string) (*exec.Cmd, *bytes.Buffer, *bytes.Buffer) {
	t.Helper()
	cmd := exec.CommandContext(ctx, kilnBin, args...)
	cmd.Dir = o.dir
	if cmd.Dir == "" {
		cmd.Dir = t.TempDir()
	}
	cmd.Env = append(baseEnv(), o.env...)
	cmd.WaitDelay = 5 * time.Second
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	return cmd, &stdout, &stderr
}

func baseEnv() []string {
	var env []string
	for _, kv := range os.Environ() {
		k, _, _ := strings.Cut(kv, "=")
		switch {
		case strings.HasPrefix(k, "KILN_"), k == "DOCKER_CONFIG", k == "REGISTRY_AUTH_FILE",
			strings.EqualFold(k, "http_proxy"), strings.EqualFold(k, "https_proxy"), strings.EqualFold(k, "all_proxy"):
			continue
		}
		env = append(env, kv)
	}
	return append(env, "DOCKER_CONFIG="+emptyDockerConfig)
}

// runKilnOpts runs kiln to the end and returns what it did; only a failure
// to start it, or a timeout, fails the test here.
func runKilnOpts(t *testing.T, o runOpts, args ...string) result {
	t.Helper()
	if o.timeout == 0 {
		o.timeout = defaultTimeout
	}
	ctx, cancel := context.WithTimeout(t.Context(), o.timeout)
	defer cancel()
	cmd, stdout, stderr := kilnCmd(t, ctx, o, args...)
	start := time.Now()
	err := cmd.Run()
	res := result{args: args, code: exitCode(err), stdout: stdout.String(), stderr: stderr.String()}
	if ctx.Err() != nil {
		t.Fatalf("kiln did not finish within %s:\n%s", o.timeout, res)
	}
	var ee *exec.ExitError
	if err != nil && !errors.As(err, &ee) {
		t.Fatalf("running kiln: %v", err)
	}
	t.Logf("kiln %s: exit %d in %.1fs", strings.Join(args, " "), res.code, time.Since(start).Seconds())
	return res
}

func runKiln(t *testing.T, args ...string) result {
	t.Helper()
	return runKilnOpts(t, runOpts{}, args...)
}

func exitCode(err error) int {
	if err == nil {
		return 0
	}
	var ee *exec.ExitError
	if errors.As(err, &ee) {
		return ee.ExitCode()
	}
	return -1
}

// mustExit fails the test unless kiln exited with code.
func mustExit(t *testing.T, r result, code int) {
	t.Helper()
	if r.code != code {
		t.Fatalf("want exit %d:\n%s", code, r)
	}
}

// verifyCache runs `kiln warm --verify` on dir and fails the test on damage.
func verifyCache(t *testing.T, dir string) {
	t.Helper()
	r := runKiln(t, "warm", "--verify", "--cache-dir", dir)
	if r.code != 0 {
		t.Fatalf("cache %s does not verify:\n%s", dir, r)
	}
}

// report is the JSON `kiln warm --report` writes (the contract, spelled out
// here rather than imported, as any reader of the file would).
type report struct {
	CacheDir string         `json:"cache_dir"`
	Results  []reportResult `json:"results"`
	Bytes    int64          `json:"bytes"`
	Counts   map[string]int `json:"counts"`
	Pruned   *struct {
		Entries []string `json:"entries"`
		Blobs   int      `json:"blobs"`
		Bytes   int64    `json:"bytes"`
		Temps   int      `json:"temps"`
		Kept    int      `json:"kept"`
	} `json:"pruned"`
}

type reportResult struct {
	Ref         string `json:"ref"`
	Key         string `json:"key"`
	Platform    string `json:"platform"`
	Digest      string `json:"digest"`
	Status      string `json:"status"`
	Revalidated bool   `json:"revalidated"`
	Bytes       int64  `json:"bytes"`
	Size        int64  `json:"size"`
	Error       string `json:"error"`
}

func readReport(t *testing.T, path string) report {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("reading report: %v", err)
	}
	var rep report
	if err := json.Unmarshal(data, &rep); err != nil {
		t.Fatalf("report %s: %v\n%s", path, err, data)
	}
	return rep
}

// byPair indexes a report's results by "ref platform".
func (rep report) byPair() map[string]reportResult {
	out := map[string]reportResult{}
	for _, r := range rep.Results {
		out[r.Ref+" "+r.Platform] = r
	}
	return out
}

// wantStatuses checks the report has exactly the pairs in want ("ref
// platform" → status, or statuses separated by "|").
func wantStatuses(t *testing.T, rep report, want map[string]string) {
	t.Helper()
	got := rep.byPair()
	for pair, status := range want {
		r, ok := got[pair]
		switch {
		case !ok:
			t.Errorf("report has no result for %s", pair)
		case !slices.Contains(strings.Split(status, "|"), r.Status):
			t.Errorf("%s: status %q (error %q), want %q", pair, r.Status, r.Error, status)
		}
	}
	for pair := range got {
		if _, ok := want[pair]; !ok {
			t.Errorf("report has an unexpected result for %s", pair)
		}
	}
	if len(rep.Results) != len(got) {
		t.Errorf("report has %d results for %d pairs: duplicates", len(rep.Results), len(got))
	}
}

// pairs lists "ref platform" for every ref and platform.
func pairs(refs, plats []string) []string {
	var out []string
	for _, r := range refs {
		for _, p := range plats {
			out = append(out, r+" "+p)
		}
	}
	return out
}

func statuses(ps []string, status string) map[string]string {
	out := map[string]string{}
	for _, p := range ps {
		out[p] = status
	}
	return out
}

// readIndex reads the cache's index.json.
func readIndex(t *testing.T, dir string) *v1.IndexManifest {
	t.Helper()
	f, err := os.Open(filepath.Join(dir, "index.json"))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	idx, err := v1.ParseIndexManifest(f)
	if err != nil {
		t.Fatalf("index.json: %v", err)
	}
	return idx
}

const refNameAnnotation = "org.opencontainers.image.ref.name"

// entryKeys lists the ref names index.json files images under.
func entryKeys(t *testing.T, dir string) []string {
	t.Helper()
	var out []string
	for _, d := range readIndex(t, dir).Manifests {
		out = append(out, d.Annotations[refNameAnnotation])
	}
	sort.Strings(out)
	return out
}

// entry finds the index.json entry for key; every key must appear once.
func entry(t *testing.T, dir, key string) (v1.Descriptor, bool) {
	t.Helper()
	var found []v1.Descriptor
	for _, d := range readIndex(t, dir).Manifests {
		if d.Annotations[refNameAnnotation] == key {
			found = append(found, d)
		}
	}
	if len(found) > 1 {
		t.Errorf("index.json has %d entries for %s", len(found), key)
	}
	if len(found) == 0 {
		return v1.Descriptor{}, false
	}
	return found[0], true
}

// entryManifests reads the index an entry points at and returns its
// manifests by platform.
func entryManifests(t *testing.T, dir, key string) map[string]v1.Descriptor {
	t.Helper()
	d, ok := entry(t, dir, key)
	if !ok {
		t.Fatalf("index.json has no entry for %s (has %v)", key, entryKeys(t, dir))
	}
	f, err := os.Open(blobPath(dir, d.Digest))
	if err != nil {
		t.Fatalf("entry %s: %v", key, err)
	}
	defer f.Close()
	idx, err := v1.ParseIndexManifest(f)
	if err != nil {
		t.Fatalf("entry %s: %v", key, err)
	}
	out := map[string]v1.Descriptor{}
	for _, m := range idx.Manifests {
		if m.Platform == nil {
			t.Errorf("entry %s: manifest %s has no platform", key, m.Digest)
			continue
		}
		out[m.Platform.String()] = m
	}
	return out
}

func blobPath(dir string, h v1.Hash) string {
	return filepath.Join(dir, "blobs", h.Algorithm, h.Hex)
}

func hasBlob(dir string, h v1.Hash) bool {
	_, err := os.Stat(blobPath(dir, h))
	return err == nil
}

// imageBlobs returns the manifest, config and layer digests of an image
// stored in the cache.
func imageBlobs(t *testing.T, dir string, manifest v1.Hash) []v1.Hash {
	t.Helper()
	f, err := os.Open(blobPath(dir, manifest))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	m, err := v1.ParseManifest(f)
	if err != nil {
		t.Fatalf("manifest %s: %v", manifest, err)
	}
	out := []v1.Hash{manifest, m.Config.Digest}
	for _, l := range m.Layers {
		out = append(out, l.Digest)
	}
	return out
}

// snapshot is every file of a cache with its size and modification time.
func snapshot(t *testing.T, dir string) map[string]string {
	t.Helper()
	out := map[string]string{}
	err := filepath.WalkDir(dir, func(p string, d os.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.IsDir() {
			return nil
		}
		fi, err := d.Info()
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(dir, p)
		out[rel] = fmt.Sprintf("%d %s", fi.Size(), fi.ModTime().Format(time.RFC3339Nano))
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// validateCache opens the cache with go-containerregistry's layout package,
// as another tool would, and validates every image of every entry: digests,
// sizes, diff IDs, and that the config's platform is the descriptor's. It
// returns the total bytes of the distinct configs and layers.
func validateCache(t *testing.T, dir string) int64 {
	t.Helper()
	top, err := layout.ImageIndexFromPath(dir)
	if err != nil {
		t.Fatalf("layout: %v", err)
	}
	im, err := top.IndexManifest()
	if err != nil {
		t.Fatalf("layout index.json: %v", err)
	}
	seen := map[v1.Hash]bool{}
	var total int64
	for _, e := range im.Manifests {
		key := e.Annotations[refNameAnnotation]
		child, err := top.ImageIndex(e.Digest)
		if err != nil {
			t.Errorf("%s: %v", key, err)
			continue
		}
		cm, err := child.IndexManifest()
		if err != nil {
			t.Errorf("%s: %v", key, err)
			continue
		}
		for _, d := range cm.Manifests {
			img, err := child.Image(d.Digest)
			if err != nil {
				t.Errorf("%s %s: %v", key, d.Platform, err)
				continue
			}
			if err := validate.Image(img); err != nil {
				t.Errorf("%s %s: validate.Image: %v", key, d.Platform, err)
			}
			cf, err := img.ConfigFile()
			if err != nil {
				t.Errorf("%s: %v", key, err)
				continue
			}
			if d.Platform == nil || cf.Platform().String() != d.Platform.String() {
				t.Errorf("%s: descriptor platform %v, config says %s", key, d.Platform, cf.Platform())
			}
			m, err := img.Manifest()
			if err != nil {
				t.Errorf("%s: %v", key, err)
				continue
			}
			for _, b := range append([]v1.Descriptor{m.Config}, m.Layers...) {
				if !seen[b.Digest] {
					seen[b.Digest] = true
					total += b.Size
				}
			}
		}
	}
	return total
}

// requestLog records the requests a fault proxy receives, through
// Faults.Only.
type requestLog struct {
	mu   sync.Mutex
	reqs []string // "METHOD /path"
}

// record notes r; it is meant to be called from Faults.Only.
func (l *requestLog) record(r *http.Request) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.reqs = append(l.reqs, r.Method+" "+r.URL.Path)
}

// noFaults is a Faults.Only that records and injects nothing.
func (l *requestLog) noFaults(r *http.Request) bool {
	l.record(r)
	return false
}

func (l *requestLog) reset() {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.reqs = nil
}

func (l *requestLog) all() []string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return slices.Clone(l.reqs)
}

// count is how many requests had method and a path matching pathRE.
func (l *requestLog) count(method, pathRE string) int {
	re := regexp.MustCompile(pathRE)
	n := 0
	for _, r := range l.all() {
		m, p, _ := strings.Cut(r, " ")
		if m == method && re.MatchString(p) {
			n++
		}
	}
	return n
}

// Path patterns of registry API requests.
const (
	anyManifest = `^/v2/.+/manifests/[^/]+$`
	anyBlob     = `^/v2/.+/blobs/sha256:[0-9a-f]{64}$`
)

// newCountingProxy puts a fault proxy that injects nothing in front of addr
// and records every request.
func newCountingProxy(t *testing.T, addr string) (*harness.FaultProxy, *requestLog) {
	t.Helper()
	log := &requestLog{}
	return harness.NewFaultProxy(t, addr, harness.Faults{Only: log.noFaults}), log
}

// layers returns n layer specs of size bytes each, seeds from seed on.
func layers(seed int64, n int, size int64) []harness.LayerSpec {
	out := make([]harness.LayerSpec, n)
	for i := range out {
		out[i] = harness.LayerSpec{Seed: seed + int64(i), Size: size, Files: 2}
	}
	return out
}

// pushIndex pushes a multi-platform image; each spec's platform must be set.
func pushIndex(t *testing.T, ref string, specs ...harness.ImageSpec) v1.Hash {
	t.Helper()
	h, err := harness.PushIndex(t.Context(), ref, specs)
	if err != nil {
		t.Fatal(err)
	}
	return h
}

func pushImage(t *testing.T, ref string, spec harness.ImageSpec) v1.Hash {
	t.Helper()
	h, err := harness.PushImage(t.Context(), ref, spec)
	if err != nil {
		t.Fatal(err)
	}
	return h
}

func pushStandard(t *testing.T, addr string) []harness.Fixture {
	t.Helper()
	f, err := harness.PushStandardFixtures(t.Context(), addr)
	if err != nil {
		t.Fatal(err)
	}
	return f
}

// writeFiles writes files (slash paths relative to dir → contents) with
// every "REGISTRY" replaced by reg.
func writeFiles(t *testing.T, dir string, files map[string]string, replace ...string) {
	t.Helper()
	r := strings.NewReplacer(replace...)
	for name, content := range files {
		p := filepath.Join(dir, filepath.FromSlash(name))
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte(r.Replace(content)), 0o644); err != nil {
			t.Fatal(err)
		}
	}
}

// copyTestdata copies testdata/src (a folder) to dst, replacing
// placeholders in every file.
func copyTestdata(t *testing.T, src, dst string, replace ...string) {
	t.Helper()
	root := filepath.Join("testdata", src)
	files := map[string]string{}
	err := filepath.WalkDir(root, func(p string, d os.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		data, err := os.ReadFile(p)
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(root, p)
		files[filepath.ToSlash(rel)] = string(data)
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	writeFiles(t, dst, files, replace...)
}
