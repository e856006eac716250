package test

import (
	"bytes"
	"encoding/json"
	"errors"
	"io/fs"
	"maps"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"slices"
	"testing"

	snap "kiln/builder/snapshot"
	"kiln/test/harness"
)

// runCorpusDir holds the RUN corpus: one folder per case with a Dockerfile
// ({{BASE}} stands for the busybox base image), an optional context/ and
// an optional case.json (runCase).
const runCorpusDir = "testdata/run"

// runCase is a case's case.json: the build's inputs and what its result
// must show. Paths are absolute paths in the final image.
type runCase struct {
	Args     map[string]string `json:"args"`      // --build-arg K=V, {{BASE}} replaced
	Platform string            `json:"platform"`  // --platform
	Target   string            `json:"target"`    // --target
	Arm64    bool              `json:"arm64"`     // needs the linux/arm64 base
	HostArch string            `json:"host_arch"` // runs only on a machine of this GOARCH
	// SecretFiles are --secret id=ID,src=FILE, by id; SecretEnv are
	// --secret id=ID,env=VAR, by id. The values must appear in no layer,
	// config, history or log of the build.
	SecretFiles map[string]string `json:"secret_files"`
	SecretEnv   map[string]string `json:"secret_env"`
	// SecretShort gives kiln the secrets as src=FILE (the id is the
	// file's base name) and env=ID (the variable is named as the id)
	// rather than id=ID,src=FILE and id=ID,env=VAR; buildah always gets
	// the long form.
	SecretShort bool `json:"secret_short"`
	// Twice builds the case two times with the same --cache-dir (buildah:
	// the same TMPDIR, where it keeps cache mounts) and checks the second.
	Twice bool `json:"twice"`
	// CacheFiles must be under <--cache-dir>/.kiln/run-cache/ after the
	// build (base names).
	CacheFiles []string `json:"cache_files"`

	Exists   []string          `json:"exists"`
	Absent   []string          `json:"absent"`
	Contains map[string]string `json:"contains"` // path → text its content holds
	Equals   map[string]string `json:"equals"`   // path → its whole content
	Entries  map[string]string `json:"entries"`  // path → fsEntry.String() without its path, up to where given
	Linked   [][]string        `json:"linked"`   // names each of one file (inode) in the image
	Config   map[string]string `json:"config"`   // config field (User, WorkingDir, Env...) → its JSON
	EnvLacks []string          `json:"env_lacks"`
	Hidden   []string          `json:"hidden"` // texts in no layer, config, history or log
	// SameLayers requires the two snapshot strategies to give
	// byte-identical layers, not only the same tree.
	SameLayers bool `json:"same_layers"`
	// Mtimes are the modification times (Unix seconds) of paths as the
	// last layer holding them says; SourceDateEpoch is SOURCE_DATE_EPOCH
	// for the build (with --reproducible, later times are clamped to it).
	Mtimes          map[string]int64 `json:"mtimes"`
	SourceDateEpoch string           `json:"source_date_epoch"`
	// EmptyRunLayers is how many RUN steps the history marks empty_layer.
	EmptyRunLayers *int `json:"empty_run_layers"`
	// History are created_by texts the config's history must have (kiln's
	// build only: buildah writes its own).
	History []string `json:"history"`
	Count   *struct {
		Under string `json:"under"`
		Want  int    `json:"want"`
	} `json:"count"` // entries below a folder

	Fail *struct {
		Code   int      `json:"code"`
		Output []string `json:"output"` // texts kiln's output holds
	} `json:"fail"`
	// MaxSeconds bounds each build: left-over processes of a step must not
	// hold the build up.
	MaxSeconds float64 `json:"max_seconds"`
	// Buildah, when set, is why the case is not compared with buildah.
	Buildah string `json:"buildah"`
}

// TestRunCorpus builds every case of the RUN corpus on real busybox base
// images with --snapshot overlay and --snapshot walk (chroot isolation,
// reproducible), checks case.json's expectations, requires the two
// snapshots to give the same image (file tree, config and each layer's
// entries), and compares the result with buildah's where buildah can build
// the case.
func TestRunCorpus(t *testing.T) {
	t.Parallel()
	if os.Geteuid() != 0 {
		t.Skip("RUN with --isolation chroot needs root")
	}
	reg := harness.NewRegistry(t)
	base, haveArm64 := pushBusyboxBase(t, reg.Addr)
	overlayOK, why := snap.Supported()
	if !overlayOK {
		t.Logf("overlay snapshots are not supported here (%s): building with --snapshot walk only", why)
	}
	var store []string
	if _, err := exec.LookPath("buildah"); err == nil {
		store = buildahStore(t)
	} else {
		t.Log("buildah is not installed (.ci/deps.sh installs it): no differential")
	}
	dockerfiles, err := filepath.Glob(filepath.Join(runCorpusDir, "*", "Dockerfile"))
	if err != nil || len(dockerfiles) < 30 {
		t.Fatalf("want at least 30 cases under %s, have %d (%v)", runCorpusDir, len(dockerfiles), err)
	}
	for _, df := range dockerfiles {
		dir := filepath.Dir(df)
		name := filepath.Base(dir)
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			c := readRunCase(t, dir)
			if c.HostArch != "" && c.HostArch != runtime.GOARCH {
				t.Skipf("the case is for a %s machine, this is %s", c.HostArch, runtime.GOARCH)
			}
			if c.Arm64 && !haveArm64 {
				t.Skipf("no linux/arm64 base: %s is missing (bash .ci/deps.sh fetches it)", arm64BusyboxDeb())
			}
			rc := newRunCaseBuild(t, dir, c, base)
			var probs problems
			walk := rc.kiln(t, "walk", &probs)
			checkRunCase(t, c, walk, &probs)
			if overlayOK {
				overlay := rc.kiln(t, "overlay", &probs)
				checkRunCase(t, c, overlay, &probs)
				want, explained := snapshotExplained[name]
				checkExplained(t, name, compareSnapshots(t, overlay, walk, c.SameLayers), want, explained, "snapshotExplained", "overlay and walk")
			}
			switch {
			case store == nil:
			case c.Buildah != "":
				t.Logf("not compared with buildah: %s", c.Buildah)
			default:
				want, explained := runDiffExplained[name]
				checkExplained(t, name, rc.diffBuildah(t, store, walk), want, explained, "runDiffExplained", "kiln and buildah")
			}
			settleProblems(t, name, probs, runKnownBugs)
		})
	}
	tables := map[string][]string{
		"runKnownBugs":      slices.Collect(maps.Keys(runKnownBugs)),
		"runDiffExplained":  slices.Collect(maps.Keys(runDiffExplained)),
		"snapshotExplained": slices.Collect(maps.Keys(snapshotExplained)),
	}
	for table, names := range tables {
		for _, name := range names {
			if _, err := os.Stat(filepath.Join(runCorpusDir, name, "Dockerfile")); err != nil {
				t.Errorf("%s names %s, which is no case", table, name)
			}
		}
	}
}

func readRunCase(t *testing.T, dir string) runCase {
	t.Helper()
	var c runCase
	data, err := os.ReadFile(filepath.Join(dir, "case.json"))
	if errors.Is(err, fs.ErrNotExist) {
		return c
	}
	if err == nil {
		dec := json.NewDecoder(bytes.NewReader(data))
		dec.DisallowUnknownFields()
		err = dec.Decode(&c)
	}
	if err != nil {
		t.Fatalf("%s/case.json: %v", dir, err)
	}
	return c
}
