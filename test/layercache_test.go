package test

import (
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/validate"

	"kiln/test/harness"
)

// The layer cache's correctness suite. Each case is a folder under
// testdata/layercache: a build context whose Dockerfile says, in a comment
// line before each step, what the SECOND build must do with it:
//
//	# want hit            the step is served from the cache
//	# want miss           the step runs (and is stored)
//	# want none           the step is not a cache step (not in the metadata)
//	# want hit empty      served, and the step adds no layer
//
// and an edit in the table below, applied between the two builds. Every
// case runs once with the registry store and once with the local store: a
// build fills an empty cache, the edit is applied, a second build must hit
// and miss as annotated, every hit must bring the very layer (same blob
// digest) the first build made for that step, and the image must be the
// one a build without any cache makes of the edited inputs (--reproducible:
// same digest).

// lcCase is one case of the suite; its folder is testdata/layercache/name.
type lcCase struct {
	name  string
	flags []string // for every build, placeholders expanded (lcRun.expand)
	setup lcEdit   // before the first build
	edit  lcEdit   // between the builds; nil: none
	// same: the edit does not change the image, so the second build must
	// give the first one's digest (which, from an empty cache, is what a
	// build without cache makes). Otherwise a build without cache of the
	// edited inputs is the reference.
	same bool
}

var lcCases = []lcCase{
	{name: "no-edit", same: true},
	{name: "copied-file-edited", edit: lcWrite("a.txt", "A\n")},
	// The content changes, size and mtime do not: only a hash of the
	// content sees it.
	{name: "copied-file-same-size-and-mtime", edit: lcKeepMtime("a.txt", lcWrite("a.txt", "b\n"))},
	{name: "uncopied-file-edited", same: true, edit: lcWrite("other.txt", "changed\n")},
	{name: "mtime-only", same: true, edit: lcTouch("a.txt")},
	{name: "dockerignored-file", same: true, edit: lcWrite("debug.log", "changed\n")},
	{name: "dockerignored-in-copied-dir", same: true, edit: lcWrite("src/x.log", "changed\n")},
	{name: "dockerignore-unignores", edit: lcWrite(".dockerignore", ".dockerignore\n")},
	{name: "glob-new-matching-file", edit: lcWrite("b.txt", "b\n")},
	{name: "glob-new-other-file", same: true, edit: lcWrite("b.md", "b\n")},
	{name: "copied-dir-new-empty-dir", edit: lcMkdir("src/empty")},
	{name: "copied-dir-file-removed", edit: lcRemove("src/b.txt")},
	{name: "copied-file-mode", edit: lcChmod("a.txt", 0o755)},
	{name: "copied-symlink-target", setup: lcSymlink("dir/link", "a.txt"), edit: lcSymlink("dir/link", "b.txt")},
	{name: "build-arg-declared", flags: []string{"--build-arg", "V=one"}, edit: lcFlag("V=one", "V=two")},
	{name: "build-arg-same-as-default", same: true, edit: lcAddFlags("--build-arg", "V=zero")},
	{name: "build-arg-undeclared", same: true, flags: []string{"--build-arg", "UNUSED=one"}, edit: lcFlag("UNUSED=one", "UNUSED=two")},
	{name: "global-arg-not-in-stage", same: true, edit: lcAddFlags("--build-arg", "G=two")},
	{name: "global-arg-redeclared", edit: lcAddFlags("--build-arg", "G=two")},
	{name: "base-tag-moved", setup: lcPushMoving(false), edit: lcPushMoving(true)},
	// arm64 code cannot RUN here: a COPY-only Dockerfile FROM scratch.
	{name: "platform", flags: []string{"--platform", "linux/amd64"}, edit: lcFlag("linux/amd64", "linux/arm64")},
	{name: "source-date-epoch", setup: lcEnv("SOURCE_DATE_EPOCH=1700000000"), edit: lcEnv("SOURCE_DATE_EPOCH=1700000001")},
	{name: "secret-value", same: true, flags: []string{"--secret", "id=s,src={dir}/secret"},
		setup: lcWriteOutside("secret", "first value"), edit: lcWriteOutside("secret", "another, longer value")},
	{name: "bind-source-changed", edit: lcWrite("x.txt", "X\n")},
	{name: "bind-source-unchanged", same: true, edit: lcAll(lcWrite("y.txt", "Y\n"), lcTouch("x.txt"))},
	{name: "bind-dir-source-changed", edit: lcWrite("src/s2.txt", "s2\n")},
	{name: "bind-from-stage-other-file", same: true, edit: lcWrite("h.txt", "H\n")},
	{name: "bind-from-stage-changed", edit: lcWrite("g.txt", "G\n")},
	{name: "cache-mount", same: true, edit: lcWrite("other.txt", "changed\n")},
	{name: "copy-from-copied-changed", edit: lcWrite("src/a.txt", "A\n")},
	{name: "copy-from-uncopied-changed", same: true, edit: lcWrite("src/b.txt", "B\n")},
	{name: "cargo-chef", edit: lcWrite("src/main.rs", "fn main() { println!(\"hi\") }\n")},
	{name: "user-change", edit: lcDockerfile("USER app", "USER nobody")},
	{name: "workdir-change", edit: lcDockerfile("WORKDIR /w1", "WORKDIR /w2")},
	{name: "workdir-existing", same: true, edit: lcWrite("other.txt", "changed\n")},
	{name: "heredoc-run", edit: lcDockerfile("echo one", "echo two")},
	{name: "heredoc-copy", edit: lcDockerfile("hello one", "hello two")},
	{name: "env-change", edit: lcDockerfile("GREETING=hello", "GREETING=hi")},
	{name: "label-only", edit: lcDockerfile("version=1", "version=2")},
	{name: "earlier-step-changed", edit: lcWrite("a.txt", "A\n")},
	{name: "chown-change", edit: lcDockerfile("--chown=1000:1000", "--chown=65534:65534")},
	{name: "chmod-change", edit: lcDockerfile("--chmod=0644", "--chmod=0755")},
	{name: "empty-run", same: true, edit: lcWrite("other.txt", "changed\n")},
	{name: "no-run-layers", same: true, flags: []string{"--cache-run-layers=false"}},
	// A RUN that is not cached still changes what later steps start from:
	// here app's uid, which COPY --chown=app resolves.
	{name: "no-run-layers-run-edited", flags: []string{"--cache-run-layers=false"},
		edit: lcDockerfile("app:x:1000:1000:/'", "app:x:2000:2000:/'")},
	// kaniko's default: COPY not cached. The RUN after it reads the copied
	// file and must see the new one.
	{name: "no-copy-layers-copy-edited", flags: []string{"--cache-copy-layers=false"}, edit: lcWrite("a.txt", "A\n")},
	{name: "ttl", same: true, flags: []string{"--cache-ttl", "1s"}, edit: lcSleep(2 * time.Second)},
	{name: "multistage-final-only", edit: lcWrite("app.txt", "APP\n")},
	{name: "add-archive-edited", setup: lcTar("files.tar", "f.txt", "one\n"), edit: lcTar("files.tar", "f.txt", "two\n")},
	{name: "shell-change", edit: lcDockerfile(`SHELL ["/bin/sh", "-c"]`, `SHELL ["/bin/sh", "-ec"]`)},
	{name: "network-change", edit: lcDockerfile("--network=none", "--network=default")},
	{name: "appended-step", edit: lcAppendDockerfile("# want miss\nRUN echo new > /new.txt\n")},
}

// TestLayerCache runs every case with both stores.
func TestLayerCache(t *testing.T) {
	t.Parallel()
	if os.Geteuid() != 0 {
		t.Skip("RUN with --isolation chroot needs root")
	}
	s := newLCSuite(t)
	checkLCCaseFolders(t)
	for _, c := range lcCases {
		t.Run(c.name, func(t *testing.T) {
			t.Parallel()
			var ref string // the digest a build without cache makes of the edited inputs
			for _, store := range lcStores {
				t.Run(store.name, func(t *testing.T) { ref = s.runCase(t, c, store, ref) })
			}
		})
	}
}

// checkLCCaseFolders fails on a case folder without a table entry and on
// an entry without a folder.
func checkLCCaseFolders(t *testing.T) {
	t.Helper()
	dirs, err := os.ReadDir(filepath.Join("testdata", "layercache"))
	if err != nil {
		t.Fatal(err)
	}
	have := map[string]bool{}
	for _, d := range dirs {
		have[d.Name()] = true
	}
	for _, c := range lcCases {
		if !have[c.name] {
			t.Errorf("case %s has no folder testdata/layercache/%s", c.name, c.name)
		}
		delete(have, c.name)
	}
	for name := range have {
		t.Errorf("testdata/layercache/%s is no case of lcCases", name)
	}
	if len(lcCases) < 30 {
		t.Errorf("%d cases, want at least 30", len(lcCases))
	}
}

// lcSuite is what every case shares: one registry, holding the busybox
// base image, the stores' repositories and the cases' own bases.
type lcSuite struct {
	reg  *harness.Registry
	base string   // library/busybox:1
	bb   v1.Layer // its layer, for bases of our own
}

func newLCSuite(t *testing.T) *lcSuite {
	t.Helper()
	reg := harness.NewRegistry(t)
	base, _ := pushBusyboxBase(t, reg.Addr)
	host := needBusybox(t)
	bin, err := os.ReadFile(host)
	if err != nil {
		t.Fatal(err)
	}
	return &lcSuite{reg: reg, base: base, bb: busyboxLayer(t, bin, busyboxApplets(t, host))}
}

// lcRun is one run of a case with one store: its context, the flags and
// environment of its builds, and a folder outside the context.
type lcRun struct {
	s      *lcSuite
	c      lcCase
	ctx    string
	dir    string
	flags  []string
	env    []string
	moving string // the case's own base, whose tag the edit may move
}

// expand replaces the placeholders of testdata and flags.
func (r *lcRun) expand(s string) string {
	return strings.NewReplacer("{base}", r.s.base, "{moving}", r.moving, "{dir}", r.dir).Replace(s)
}

func (r *lcRun) path(name string) string { return filepath.Join(r.ctx, filepath.FromSlash(name)) }

// lcStore is a layer cache store as the builds of a run are pointed at it.
type lcStore struct {
	name string
	args func(r *lcRun) []string
	// keys lists the full keys the store holds.
	keys func(t *testing.T, r *lcRun) []string
}

var lcStores = []lcStore{
	{
		name: "registry",
		args: func(r *lcRun) []string {
			return []string{"--cache", "--cache-repo", r.s.reg.Addr + "/" + lcRepo(r), "--cache-dir", filepath.Join(r.dir, "bases")}
		},
		keys: func(t *testing.T, r *lcRun) []string { return registryTags(t, r.s.reg.Addr, lcRepo(r)) },
	},
	{
		name: "local",
		args: func(r *lcRun) []string {
			return []string{"--cache", "--cache-dir", filepath.Join(r.dir, "layer-cache")}
		},
		keys: func(t *testing.T, r *lcRun) []string { return localKeys(t, filepath.Join(r.dir, "layer-cache")) },
	},
}

func lcRepo(r *lcRun) string { return "lc-cache/" + r.c.name }

// runCase builds a case twice with store and checks the second build; ref
// is the digest of a cacheless build of the edited inputs, made here when
// "" and returned.
func (s *lcSuite) runCase(t *testing.T, c lcCase, store lcStore, ref string) string {
	r := &lcRun{s: s, c: c, ctx: t.TempDir(), dir: t.TempDir(), moving: s.reg.Addr + "/lc-moving/" + c.name + ":1"}
	copyTestdata(t, filepath.Join("layercache", c.name), r.ctx, "{base}", s.base, "{moving}", r.moving)
	for _, f := range c.flags {
		r.flags = append(r.flags, r.expand(f))
	}
	if c.setup != nil {
		c.setup(t, r)
	}
	cacheArgs := store.args(r)
	first := s.build(t, r, cacheArgs)
	if first.hits() != 0 {
		t.Errorf("build 1, with an empty cache, hit %d steps: %+v", first.hits(), first.steps)
	}
	checkStored(t, first.steps, store.keys(t, r))
	if c.edit != nil {
		c.edit(t, r)
	}
	second := s.build(t, r, cacheArgs)
	wants := readWants(t, r.path("Dockerfile"))
	checkWants(t, second.steps, wants)
	checkEmpty(t, second, wants)
	checkHitLayers(t, first, second)
	if c.same {
		if second.digest != first.digest {
			t.Errorf("build 2 made %s, build 1 %s: the edit leaves the image as it was", second.digest, first.digest)
		}
		return ref
	}
	if ref == "" {
		ref = s.build(t, r, []string{"--cache-dir", t.TempDir()}).digest
	}
	if second.digest != ref {
		t.Errorf("build 2 made %s, a build without cache %s: the cache changed the image", second.digest, ref)
	}
	return ref
}

// lcBuilt is what one build gave.
type lcBuilt struct {
	steps  []lcStep
	img    v1.Image
	digest string
}

func (b lcBuilt) hits() int {
	n := 0
	for _, st := range b.steps {
		if st.Hit {
			n++
		}
	}
	return n
}

// lcStep is one step of the metadata file's layer_cache.
type lcStep struct {
	Stage       string `json:"stage"`
	Line        int    `json:"line"`
	Instruction string `json:"instruction"`
	Key         string `json:"key"`
	Hit         bool   `json:"hit"`
}

func (st lcStep) String() string {
	return fmt.Sprintf("line %d %s (stage %s, key %s, hit %t)", st.Line, st.Instruction, st.Stage, st.Key, st.Hit)
}

// lcMetadata is the part of --metadata-file these tests read.
type lcMetadata struct {
	Digest     string `json:"digest"`
	LayerCache *struct {
		Hits   int      `json:"hits"`
		Misses int      `json:"misses"`
		Steps  []lcStep `json:"steps"`
	} `json:"layer_cache"`
}

// build runs kiln build on r's context with extra (the cache flags) and
// r's flags, and reads its metadata and image.
func (s *lcSuite) build(t *testing.T, r *lcRun, extra []string) lcBuilt {
	t.Helper()
	out := lcOutput(t)
	args := append(lcBuildArgs(s.reg.Addr, r.ctx, out, ""), extra...)
	res := runKilnOpts(t, runOpts{env: r.env}, append(args, r.flags...)...)
	mustExit(t, res, 0)
	return readBuilt(t, out)
}

// lcBuildArgs are the flags of every build here: reproducible, chroot,
// an OCI layout output (lcOutput) and a metadata file beside it, work as
// the work folder ("": the one beside the output).
func lcBuildArgs(reg, ctxDir, out, work string) []string {
	if work == "" {
		work = filepath.Join(filepath.Dir(out), "work")
	}
	return []string{"build", "--progress", "plain", "--context", ctxDir, "--reproducible", "--isolation", "chroot",
		"--insecure-registry", reg, "--work-dir", work,
		"--output", "oci:" + out, "--metadata-file", out + ".json"}
}

// lcOutput is where a build writes its image (the folder beside it
// holds its metadata file and work folder).
func lcOutput(t *testing.T) string {
	t.Helper()
	dir := t.TempDir()
	if err := os.Mkdir(filepath.Join(dir, "work"), 0o755); err != nil {
		t.Fatal(err)
	}
	return filepath.Join(dir, "oci")
}

// readBuilt reads the metadata file and image lcBuildArgs asked for.
func readBuilt(t *testing.T, out string) lcBuilt {
	t.Helper()
	data, err := os.ReadFile(out + ".json")
	if err != nil {
		t.Fatalf("metadata file: %v", err)
	}
	var md lcMetadata
	if err := json.Unmarshal(data, &md); err != nil {
		t.Fatalf("metadata file: %v\n%s", err, data)
	}
	b := lcBuilt{img: layoutImage(t, out, "image"), digest: md.Digest}
	if md.LayerCache != nil {
		b.steps = md.LayerCache.Steps
		if h := b.hits(); h != md.LayerCache.Hits || len(b.steps)-h != md.LayerCache.Misses {
			t.Errorf("metadata counts %d hits, %d misses; its steps say %d and %d", md.LayerCache.Hits, md.LayerCache.Misses, h, len(b.steps)-h)
		}
	}
	if d, err := b.img.Digest(); err != nil || d.String() != b.digest {
		t.Errorf("the layout's image is %s (%v), the metadata says %s", d, err, b.digest)
	}
	if err := validate.Image(b.img); err != nil {
		t.Errorf("the built image does not validate: %v", err)
	}
	return b
}

// lcWant is a Dockerfile's annotation of one step.
type lcWant struct {
	line  int
	stage string // as the metadata names it: AS name, else the index
	inst  string // the instruction on the line
	want  string // hit, miss or none
	empty bool
}

func (w lcWant) String() string { return fmt.Sprintf("line %d %s (stage %s)", w.line, w.inst, w.stage) }

// readWants reads the "# want" annotations of a Dockerfile, in order.
func readWants(t *testing.T, dockerfile string) []lcWant {
	t.Helper()
	data, err := os.ReadFile(dockerfile)
	if err != nil {
		t.Fatal(err)
	}
	var out []lcWant
	var pending *lcWant
	stage, stages := "", 0
	for n, line := range strings.Split(string(data), "\n") {
		line = strings.TrimSpace(line)
		f := strings.Fields(line)
		if len(f) >= 3 && f[0] == "#" && f[1] == "want" {
			w := lcWant{want: f[2], empty: len(f) > 3 && f[3] == "empty"}
			if !slices.Contains([]string{"hit", "miss", "none"}, w.want) {
				t.Fatalf("%s:%d: bad annotation %q", dockerfile, n+1, line)
			}
			pending = &w
			continue
		}
		if len(f) == 0 || strings.HasPrefix(line, "#") {
			continue
		}
		if strings.EqualFold(f[0], "FROM") {
			stage = strconv.Itoa(stages)
			if len(f) == 4 && strings.EqualFold(f[2], "AS") {
				stage = f[3]
			}
			stages++
		}
		if pending != nil {
			pending.line, pending.stage, pending.inst = n+1, stage, strings.ToUpper(f[0])
			out = append(out, *pending)
			pending = nil
		}
	}
	if len(out) == 0 {
		t.Fatalf("%s has no # want annotation", dockerfile)
	}
	return out
}

// checkWants compares the steps of a build with the annotations. Steps
// are matched stage by stage, in order (the metadata lists a stage's steps
// in order, a stage built for a COPY --from in the middle of another's);
// each step's line is checked on its own.
func checkWants(t *testing.T, steps []lcStep, wants []lcWant) {
	t.Helper()
	byStage := map[string][]lcStep{}
	for _, st := range steps {
		byStage[st.Stage] = append(byStage[st.Stage], st)
	}
	wantBy := map[string][]lcWant{}
	for _, w := range wants {
		if w.want != "none" {
			wantBy[w.stage] = append(wantBy[w.stage], w)
		}
	}
	for stage := range byStage {
		if _, ok := wantBy[stage]; !ok {
			t.Errorf("stage %s: cache steps %v, want none", stage, byStage[stage])
		}
	}
	for stage, ws := range wantBy {
		got := byStage[stage]
		if len(got) != len(ws) {
			t.Errorf("stage %s: cache steps %v, want %v", stage, got, ws)
			continue
		}
		for i, w := range ws {
			st := got[i]
			switch {
			case st.Instruction != w.inst:
				t.Errorf("%s: the step in its place is %s", w, st)
			case st.Hit != (w.want == "hit"):
				t.Errorf("%s: want a %s, got %s", w, w.want, st)
			}
			if st.Line != w.line {
				t.Errorf("%s: the metadata says line %d (%s)", w, st.Line, st)
			}
		}
	}
}

// checkEmpty checks that the steps annotated "empty" added no layer.
func checkEmpty(t *testing.T, b lcBuilt, wants []lcWant) {
	t.Helper()
	layers := stepLayers(t, b.img, b.steps)
	for _, w := range wants {
		if !w.empty {
			continue
		}
		for _, st := range b.steps {
			if st.Stage == w.stage && st.Line == w.line && layers[st.Key] != "" {
				t.Errorf("%s: added layer %s, want none", w, layers[st.Key])
			}
		}
	}
}

// checkStored fails unless the store holds an entry for every step.
func checkStored(t *testing.T, steps []lcStep, keys []string) {
	t.Helper()
	for _, st := range steps {
		if !slices.ContainsFunc(keys, func(k string) bool { return strings.HasPrefix(k, st.Key) }) {
			t.Errorf("%s: no entry in the store after the build (%d entries)", st, len(keys))
		}
	}
}

// checkHitLayers checks that each step the second build took from the
// cache added the very layer the first build made for it (or none when
// the first added none). Only steps of the final stage have a layer in the
// image to compare.
func checkHitLayers(t *testing.T, first, second lcBuilt) {
	t.Helper()
	made := stepLayers(t, first.img, first.steps)
	got := stepLayers(t, second.img, second.steps)
	for _, st := range second.steps {
		layer, final := got[st.Key]
		if !st.Hit || !final {
			continue
		}
		if !slices.ContainsFunc(first.steps, func(s lcStep) bool { return s.Key == st.Key }) {
			t.Errorf("%s: a hit on a key build 1 did not make", st)
			continue
		}
		if want, ok := made[st.Key]; ok && layer != want {
			t.Errorf("%s: the hit added layer %q, build 1 made %q for it", st, layer, want)
		}
	}
}

// stepLayers maps the final stage's steps (by key) to the layer each added
// to img: its blob digest, or "" for none. The final stage's steps are the
// last ones recorded; the image's history has one entry per instruction,
// in order, the ones with a layer marked so, and the steps are matched to
// its RUN, COPY, ADD and WORKDIR entries from the end.
func stepLayers(t *testing.T, img v1.Image, steps []lcStep) map[string]string {
	t.Helper()
	out := map[string]string{}
	if len(steps) == 0 {
		return out
	}
	final := steps[len(steps)-1].Stage
	var mine []lcStep
	for _, st := range steps {
		if st.Stage == final {
			mine = append(mine, st)
		}
	}
	digests := layerDigests(t, img)
	type entry struct {
		inst  string
		layer string
	}
	var hist []entry
	n := 0
	for _, h := range configOf(t, img).History {
		e := entry{inst: strings.Fields(h.CreatedBy + " ?")[0]}
		if !h.EmptyLayer {
			if n >= len(digests) {
				t.Fatalf("the history has more layers than the image's %d", len(digests))
			}
			e.layer = digests[n].String()
			n++
		}
		if slices.Contains([]string{"RUN", "COPY", "ADD", "WORKDIR"}, e.inst) {
			hist = append(hist, e)
		}
	}
	if n != len(digests) {
		t.Fatalf("the history names %d layers, the image has %d", n, len(digests))
	}
	j := len(hist) - 1
	for i := len(mine) - 1; i >= 0; i-- {
		for j >= 0 && hist[j].inst != mine[i].Instruction {
			j-- // not a cache step (WORKDIR of an existing folder, RUN with --cache-run-layers=false)
		}
		if j < 0 {
			t.Errorf("%s: no history entry for it", mine[i])
			return out
		}
		out[mine[i].Key] = hist[j].layer
		j--
	}
	return out
}

// localKeys lists the keys of the local store's index.json entries,
// checking they are filed under the names the doc gives.
func localKeys(t *testing.T, dir string) []string {
	t.Helper()
	var keys []string
	for _, d := range readIndex(t, dir).Manifests {
		k := d.Annotations["io.kiln.layercache.key"]
		if k == "" {
			continue
		}
		if name := d.Annotations[refNameAnnotation]; name != "kiln-layer-cache:"+k {
			t.Errorf("entry %s is named %q", k, name)
		}
		keys = append(keys, k)
	}
	return keys
}

// registryTags lists the tags of repo.
func registryTags(t *testing.T, addr, repo string) []string {
	t.Helper()
	resp, err := http.Get("http://" + addr + "/v2/" + repo + "/tags/list")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if resp.StatusCode == http.StatusNotFound {
		return nil
	}
	var list struct {
		Tags []string `json:"tags"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&list); err != nil {
		t.Fatalf("tags of %s: %v", repo, err)
	}
	return list.Tags
}

// lcEdit changes a run's inputs.
type lcEdit func(t *testing.T, r *lcRun)

func lcAll(edits ...lcEdit) lcEdit {
	return func(t *testing.T, r *lcRun) {
		for _, e := range edits {
			e(t, r)
		}
	}
}

func lcWrite(name, body string) lcEdit {
	return func(t *testing.T, r *lcRun) { writeContext(t, r.ctx, map[string]string{name: body}) }
}

// lcWriteOutside writes a file of the run's folder outside the context.
func lcWriteOutside(name, body string) lcEdit {
	return func(t *testing.T, r *lcRun) {
		if err := os.WriteFile(filepath.Join(r.dir, name), []byte(body), 0o600); err != nil {
			t.Fatal(err)
		}
	}
}

// lcKeepMtime applies edit and gives name its modification time back.
func lcKeepMtime(name string, edit lcEdit) lcEdit {
	return func(t *testing.T, r *lcRun) {
		fi, err := os.Stat(r.path(name))
		if err != nil {
			t.Fatal(err)
		}
		edit(t, r)
		if err := os.Chtimes(r.path(name), fi.ModTime(), fi.ModTime()); err != nil {
			t.Fatal(err)
		}
	}
}

func lcTouch(name string) lcEdit {
	return func(t *testing.T, r *lcRun) {
		when := time.Now().Add(time.Hour)
		if err := os.Chtimes(r.path(name), when, when); err != nil {
			t.Fatal(err)
		}
	}
}

func lcMkdir(name string) lcEdit {
	return func(t *testing.T, r *lcRun) {
		if err := os.Mkdir(r.path(name), 0o755); err != nil {
			t.Fatal(err)
		}
	}
}

func lcRemove(name string) lcEdit {
	return func(t *testing.T, r *lcRun) {
		if err := os.Remove(r.path(name)); err != nil {
			t.Fatal(err)
		}
	}
}

func lcChmod(name string, mode os.FileMode) lcEdit {
	return func(t *testing.T, r *lcRun) {
		if err := os.Chmod(r.path(name), mode); err != nil {
			t.Fatal(err)
		}
	}
}

// lcSymlink makes name a symlink to target, replacing what was there.
func lcSymlink(name, target string) lcEdit {
	return func(t *testing.T, r *lcRun) {
		_ = os.Remove(r.path(name))
		if err := os.Symlink(target, r.path(name)); err != nil {
			t.Fatal(err)
		}
	}
}

// lcTar writes a tar archive holding one file, for ADD to unpack.
func lcTar(name, file, body string) lcEdit {
	return func(t *testing.T, r *lcRun) {
		if err := os.WriteFile(r.path(name), rawLayerTar(t, lfile(file, body)), 0o644); err != nil {
			t.Fatal(err)
		}
	}
}

// lcDockerfile replaces old (which must be there) with new in the Dockerfile.
func lcDockerfile(old, new string) lcEdit {
	return func(t *testing.T, r *lcRun) {
		data, err := os.ReadFile(r.path("Dockerfile"))
		if err != nil {
			t.Fatal(err)
		}
		if !strings.Contains(string(data), old) {
			t.Fatalf("the Dockerfile has no %q", old)
		}
		writeContext(t, r.ctx, map[string]string{"Dockerfile": strings.Replace(string(data), old, new, 1)})
	}
}

func lcAppendDockerfile(text string) lcEdit {
	return func(t *testing.T, r *lcRun) {
		data, err := os.ReadFile(r.path("Dockerfile"))
		if err != nil {
			t.Fatal(err)
		}
		writeContext(t, r.ctx, map[string]string{"Dockerfile": string(data) + text})
	}
}

// lcFlag replaces a flag value (which must be there).
func lcFlag(old, new string) lcEdit {
	return func(t *testing.T, r *lcRun) {
		i := slices.Index(r.flags, old)
		if i < 0 {
			t.Fatalf("no flag value %q in %q", old, r.flags)
		}
		r.flags[i] = new
	}
}

func lcAddFlags(flags ...string) lcEdit {
	return func(t *testing.T, r *lcRun) { r.flags = append(r.flags, flags...) }
}

// lcEnv sets a variable of the builds' environment.
func lcEnv(kv string) lcEdit {
	return func(t *testing.T, r *lcRun) {
		k, _, _ := strings.Cut(kv, "=")
		r.env = slices.DeleteFunc(r.env, func(e string) bool { return strings.HasPrefix(e, k+"=") })
		r.env = append(r.env, kv)
	}
}

func lcSleep(d time.Duration) lcEdit {
	return func(t *testing.T, r *lcRun) { time.Sleep(d) }
}

// lcPushMoving pushes the case's own base under its one tag: busybox, or
// (moved) busybox with one more layer, so another digest.
func lcPushMoving(moved bool) lcEdit {
	return func(t *testing.T, r *lcRun) {
		layers := []v1.Layer{r.s.bb}
		if moved {
			layers = append(layers, handLayer(t, ldir("etc"), lfile("etc/moved", "moved\n")))
		}
		pushHandImage(t, r.moving, handImage(t, "linux/amd64", busyboxConfig(), layers...))
	}
}
