package test

import (
	"context"
	"encoding/json"
	"fmt"
	"io/fs"
	"maps"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/types"

	"kiln/test/harness"
)

// corpusDir is the builder's corpus of Dockerfile cases, which the
// differential test builds with both kiln and buildah, with the extra cases
// of extraDiffDir (see its README.md).
const (
	corpusDir    = "../builder/testdata"
	extraDiffDir = "testdata/build/diff"
)

// diffSkipped are the corpus cases the differential leaves out, and why.
var diffSkipped = map[string]string{
	"add-git-unsupported":      "kiln refuses ADD of a git repository on purpose (not supported yet); buildah would clone it from the network",
	"exclude":                  "COPY --exclude (dockerfile:1.7-labs) is unknown to buildah 1.28",
	"parents":                  "COPY --parents (dockerfile:1.7-labs) is unknown to buildah 1.28",
	"link":                     "COPY --link is unknown to buildah 1.28",
	"link-chown":               "COPY --link is unknown to buildah 1.28",
	"link-chown-name":          "COPY --link is unknown to buildah 1.28",
	"copy-from-misspelt-stage": "both fail; buildah would look the misspelt stage name up on docker.io, which needs the network",
	"chmod-symbolic":           "buildah 1.28 takes only an octal --chmod; BuildKit also takes chmod(1)'s symbolic form (dockerfile2llb convert_copy.go)",
	"heredoc":                  "buildah 1.28 reads COPY <<EOF as a file named <<EOF",
}

// diffExplained are the differences the differential expects, exactly. Most
// are buildah 1.28 departing from Docker's documented behaviour (BuildKit's,
// checked against its source), where kiln is right; kilnBug marks the ones
// where kiln is wrong, kept here so the suite stays green while the bug is
// open. Lines are diffCase's ("- " kiln, "+ " buildah). Any other difference
// in these cases still fails the test, and so does an explained difference
// that disappears: remove its entry then.
var diffExplained = map[string]explainedDiff{
	"copy-from-later-stage": {
		why:   "BuildKit resolves COPY --from against every stage of the Dockerfile, later ones too (dockerfile2llb toCommand); buildah only knows earlier stages",
		diffs: []string{"- build succeeds", "+ build fails"},
	},
	"multiple-sources-need-dir": {
		why: "the Dockerfile reference: with several <src>, <dest> must be a folder and end with /; kiln refuses as Docker's classic builder did; " +
			"buildah (and BuildKit, which has no such check) accept it",
		diffs: []string{"- build fails", "+ build succeeds"},
	},
	"escape-directive": {
		why:   "with # escape=` a backslash is an ordinary character, so ENV DIR=C:\\\\app keeps both backslashes (BuildKit's shell lexer); buildah drops one",
		diffs: []string{`- config Env ["PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin","DIR=C:\\\\app","OTHER=x"]`, `+ config Env ["PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin","DIR=C:\\app","OTHER=x"]`},
	},
	"metadata": {
		why: "SHELL sets the shell of shell-form CMD too (Dockerfile reference, SHELL), buildah keeps /bin/sh; " +
			"EXPOSE 8000-8001 is two ports (BuildKit parsePorts expands ranges), buildah keeps the range as one key",
		diffs: []string{
			`- config Cmd ["/bin/bash","-c","echo $A"]`, `+ config Cmd ["/bin/sh","-c","echo $A"]`,
			`- config ExposedPorts {"53/udp":{},"80/tcp":{},"8000/tcp":{},"8001/tcp":{}}`, `+ config ExposedPorts {"53/udp":{},"80/tcp":{},"8000-8001/tcp":{}}`,
		},
	},
	"arg-inherit-stage": {
		why: "a stage built on a stage inherits the ARGs in scope there (BuildKit dockerfile2llb dispatchState.init appends base.buildArgs); " +
			"buildah 1.28 starts the child with none, so ${NAME} is empty",
		diffs: []string{"- build succeeds", "+ build fails"},
	},
	"multistage-from": {
		why: "without --chown BuildKit keeps the owner of what COPY --from copies, the copied folder itself included " +
			"(fsutil copyDirectory → copyFileInfo with a nil Chown); buildah makes the new destination folder root's",
		diffs: []string{"- /from-image dir 0755 1000:1001", "+ /from-image dir 0755 0:0"},
	},
	"global-arg-platform": {
		why:   "a FROM --platform=$BUILDPLATFORM stage is the building machine's platform (amd64), whatever --platform says; buildah 1.28 pulls the target's (arm64)",
		diffs: []string{"- /tools-arch file 0644 0:0 6B d54d20eadbec9c9c", "+ /tools-arch file 0644 0:0 6B c1669e1d8edca987"},
	},
	"env-chain": {
		why: "ENV of a name the base has (PATH) replaces it where it stands, as BuildKit's addEnv does; buildah moves it to the end (order only)",
		diffs: []string{
			`- config Env ["PATH=/usr/local/bin:/usr/bin:/bin:/opt/bin","BASE=1","abc=bye","def=hello","ghi=bye","EMPTY=","DEFAULTED=fallback","ALT=set","NOALT=","ESCAPED=$abc","QUOTED=bye and hello","DIR=/srv/bye","PORT=8080","USERNAME=app","SIG=SIGINT"]`,
			`+ config Env ["BASE=1","abc=bye","def=hello","ghi=bye","PATH=/usr/local/bin:/usr/bin:/bin:/opt/bin","EMPTY=","DEFAULTED=fallback","ALT=set","NOALT=","ESCAPED=$abc","QUOTED=bye and hello","DIR=/srv/bye","PORT=8080","USERNAME=app","SIG=SIGINT"]`,
		},
	},
	"add-archive-formats": {
		why: "ADD --chown of a local archive re-owns every entry it holds (BuildKit's unpack passes the owner as go-archive's ChownOpts, " +
			"solver/llbsolver/file/unpack.go) and leaves the folders the archive only implies 0755 root's (go-archive createImpliedDirectories: " +
			"IDMap.RootPair); buildah 1.28, like Docker's classic builder, keeps the archive's owners and gives the implied folders --chown's",
		diffs: []string{
			"- /owned/css dir 0750 5:6", "+ /owned/css dir 0750 1000:1000",
			"- /owned/css/site.css file 0640 5:6 23B 494f4abfd7ce18ad", "+ /owned/css/site.css file 0640 1000:1000 23B 494f4abfd7ce18ad",
			"- /owned/current.svg symlink 0777 5:6 -> logo.svg", "+ /owned/current.svg symlink 0777 1000:1000 -> logo.svg",
			"- /owned/deep dir 0755 0:0", "+ /owned/deep dir 0755 5:6",
			"- /owned/deep/nested dir 0755 0:0", "+ /owned/deep/nested dir 0755 5:6",
			"- /owned/deep/nested/readme.txt file 0644 5:6 27B 8e6719751796ea75", "+ /owned/deep/nested/readme.txt file 0644 1000:1000 27B 8e6719751796ea75",
			"- /owned/logo.svg file 0644 5:6 42B fb91f9a03c202c5f", "+ /owned/logo.svg file 0644 1000:1000 42B fb91f9a03c202c5f",
		},
	},
	"wildcard-several-to-file": {
		why: "the Dockerfile reference: when a wildcard matches several sources, <dest> must be a folder ending in /; " +
			"kiln refuses, as it does for several sources written out; buildah (and BuildKit) keep the last match as the file",
		diffs: []string{"- build fails", "+ build succeeds"},
	},
}

// explainedDiff is a difference between kiln and buildah a test expects,
// exactly, and why.
type explainedDiff struct {
	why     string
	kilnBug bool // kiln is wrong: an open bug, kept so the suite stays green
	diffs   []string
}

// diffCaseRequest is the corpus' request.json (see builder/corpus_test.go).
type diffCaseRequest struct {
	Args     map[string]string `json:"args"`
	Target   string            `json:"target"`
	Labels   map[string]string `json:"labels"`
	Platform string            `json:"platform"`
	Symlinks map[string]string `json:"symlinks"`
	Modes    map[string]string `json:"modes"`
}

// TestBuildDifferential builds every corpus case buildah can build (see
// diffSkipped) with kiln and with buildah (chroot isolation, vfs storage)
// on the same base images from a real registry, and compares the flattened
// file trees (path, type, mode, owner, size, content, link target) and the
// config fields a container runtime uses. Both must succeed or both fail;
// every difference not explained in benignDiffs fails the test.
func TestBuildDifferential(t *testing.T) {
	needTool(t, "buildah")
	t.Parallel()
	reg := harness.NewRegistry(t)
	pushBaseImages(t, reg.Addr)
	// Docker media types: buildah reads ONBUILD triggers only from a
	// Docker config.
	onbuild := handImage(t, "linux/amd64", v1.Config{Env: []string{"PATH=/usr/local/bin:/usr/bin:/bin"},
		OnBuild: []string{"COPY trigger.txt /from-trigger.txt", "ENV TRIGGERED=yes"}}, baseFSLayer(t, "amd64"))
	pushHandImage(t, reg.Addr+"/library/onbuild:1", dockerMediaTypes(t, onbuild))

	dockerfiles, err := filepath.Glob(filepath.Join(corpusDir, "*", "Dockerfile"))
	if err != nil || len(dockerfiles) == 0 {
		t.Fatalf("no corpus under %s: %v", corpusDir, err)
	}
	extra, err := filepath.Glob(filepath.Join(extraDiffDir, "*", "Dockerfile"))
	if err != nil {
		t.Fatal(err)
	}
	dockerfiles = append(dockerfiles, extra...)
	// One buildah storage for every case: the base images are pulled into
	// it once; buildah locks it for concurrent builds.
	store := buildahStore(t)
	compared := 0
	for _, df := range dockerfiles {
		name := filepath.Base(filepath.Dir(df))
		if why, ok := diffSkipped[name]; ok {
			t.Logf("%s: not compared: %s", name, why)
			continue
		}
		compared++
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			got := diffCase(t, reg.Addr, store, filepath.Dir(df))
			want, explained := diffExplained[name]
			checkExplained(t, name, got, want, explained, "diffExplained", "kiln and buildah")
		})
	}
	for name := range diffExplained {
		_, err1 := os.Stat(filepath.Join(corpusDir, name, "Dockerfile"))
		_, err2 := os.Stat(filepath.Join(extraDiffDir, name, "Dockerfile"))
		if err1 != nil && err2 != nil {
			t.Errorf("diffExplained names %s, which is no case", name)
		}
	}
	if compared < 15 {
		t.Errorf("only %d corpus cases compared with buildah, want at least 15", compared)
	}
}

// checkExplained fails the test unless got, the differences between two
// builds (sides: "kiln and buildah", lines "- " kiln's, "+ " buildah's),
// are none or exactly the explained ones (from table).
func checkExplained(t *testing.T, name string, got []string, want explainedDiff, explained bool, table, sides string) {
	t.Helper()
	switch {
	case explained && slices.Equal(got, want.diffs):
		t.Logf("explained difference (%s):\n%s", want.why, strings.Join(got, "\n"))
		if want.kilnBug {
			t.Logf("%s: known kiln bug, see %s", name, table)
		}
	case explained:
		t.Errorf("%s differ (%s):\n%s\n\nbut the explained difference is:\n%s\n(update %s if kiln changed on purpose)",
			sides, sidesLegend(sides), strings.Join(got, "\n"), strings.Join(want.diffs, "\n"), table)
	case len(got) > 0:
		t.Errorf("%s differ (%s):\n%s", sides, sidesLegend(sides), strings.Join(got, "\n"))
	}
}

// sidesLegend turns "a and b" into "- a, + b".
func sidesLegend(sides string) string {
	a, b, _ := strings.Cut(sides, " and ")
	return "- " + a + ", + " + b
}

// diffCase builds one corpus case with both tools and lists how the images
// differ: the outcome when only one tool succeeds, else config fields and
// file tree entries ("- " kiln's, "+ " buildah's).
func diffCase(t *testing.T, regAddr string, store []string, caseDir string) []string {
	req := readDiffRequest(t, caseDir)
	ctxDir := makeDiffContext(t, caseDir, req, regAddr)

	kilnOut := filepath.Join(t.TempDir(), "kiln-oci")
	args := []string{"build", "--context", ctxDir, "--output", "oci:" + kilnOut, "--no-push"}
	args = append(args, diffBuildFlags(req)...)
	kr := runKiln(t, args...)

	bOut, bErr := buildahBuild(t, store, "kiln-diff-"+filepath.Base(caseDir), ctxDir, diffBuildFlags(req), nil)
	return diffOutcomes(t, kr, kilnOut, bOut, bErr)
}

// diffOutcomes compares a kiln build (kr, into the layout kilnOut) with a
// buildah one (into bOut, or failed with bErr): the outcome when only one
// tool succeeded, else config fields and file tree entries ("- " kiln's,
// "+ " buildah's).
func diffOutcomes(t *testing.T, kr result, kilnOut, bOut string, bErr error) []string {
	t.Helper()
	switch {
	case kr.code != 0 && bErr != nil:
		t.Logf("both refuse the case:\nkiln: %s\nbuildah: %s", lastLines(kr.stderr, 1), lastLines(bErr.Error(), 2))
		return nil
	case kr.code != 0:
		t.Logf("kiln fails where buildah succeeds:\n%s", kr)
		return []string{"- build fails", "+ build succeeds"}
	case bErr != nil:
		t.Logf("buildah fails where kiln succeeds:\n%v", bErr)
		return []string{"- build succeeds", "+ build fails"}
	}
	kimg := layoutImage(t, kilnOut, "image")
	bimg := layoutImage(t, bOut, "kt")
	diffs := diffConfigs(configOf(t, kimg), configOf(t, bimg))
	ktree, kdups := flatten(t, kimg)
	btree, _ := flatten(t, bimg) // buildah's own layer quirks are not kiln's concern
	for _, d := range kdups {
		diffs = append(diffs, "- "+d)
	}
	return append(diffs, diffTrees(ktree, btree)...)
}

func readDiffRequest(t *testing.T, dir string) diffCaseRequest {
	t.Helper()
	var req diffCaseRequest
	data, err := os.ReadFile(filepath.Join(dir, "request.json"))
	if os.IsNotExist(err) {
		return req
	}
	if err == nil {
		err = json.Unmarshal(data, &req)
	}
	if err != nil {
		t.Fatalf("%s/request.json: %v", dir, err)
	}
	return req
}

// diffBuildFlags are the request's inputs as build flags, the same for kiln
// and buildah.
func diffBuildFlags(req diffCaseRequest) []string {
	var out []string
	if req.Platform != "" {
		out = append(out, "--platform", req.Platform)
	}
	if req.Target != "" {
		out = append(out, "--target", req.Target)
	}
	for _, k := range slices.Sorted(maps.Keys(req.Args)) {
		out = append(out, "--build-arg", k+"="+req.Args[k])
	}
	for _, k := range slices.Sorted(maps.Keys(req.Labels)) {
		out = append(out, "--label", k+"="+req.Labels[k])
	}
	return out
}

// fixtureRef matches the corpus' fake base images where a Dockerfile names
// them (FROM, --from=, an ARG default).
var fixtureRef = regexp.MustCompile(`(^|[\s=])(base|onbuild):1\b`)

// rewriteBases points a corpus Dockerfile's base images at the registry.
func rewriteBases(df, regAddr string) string {
	df = fixtureRef.ReplaceAllString(df, "${1}"+regAddr+"/library/${2}:1")
	// The args case composes its FROM from ARG BASE=base and ARG TAG=1.
	return strings.ReplaceAll(df, "ARG BASE=base\n", "ARG BASE="+regAddr+"/library/base\n")
}

// makeDiffContext copies a corpus case's context as the corpus test does:
// modes fixed (0644 files, 0755 folders, request.json's exceptions), the
// Dockerfile inside, request.json's symlinks made.
func makeDiffContext(t *testing.T, caseDir string, req diffCaseRequest, regAddr string) string {
	t.Helper()
	out := t.TempDir()
	src := filepath.Join(caseDir, "context")
	if _, err := os.Stat(src); err == nil {
		err := filepath.WalkDir(src, func(p string, d fs.DirEntry, err error) error {
			if err != nil {
				return err
			}
			rel, _ := filepath.Rel(src, p)
			dst := filepath.Join(out, rel)
			if d.IsDir() {
				if err := os.MkdirAll(dst, 0o755); err != nil {
					return err
				}
				return os.Chmod(dst, 0o755)
			}
			data, err := os.ReadFile(p)
			if err == nil {
				err = os.WriteFile(dst, data, 0o644)
			}
			if err == nil {
				err = os.Chmod(dst, 0o644)
			}
			return err
		})
		if err != nil {
			t.Fatal(err)
		}
	}
	data, err := os.ReadFile(filepath.Join(caseDir, "Dockerfile"))
	if err != nil {
		t.Fatal(err)
	}
	writeContext(t, out, map[string]string{"Dockerfile": rewriteBases(string(data), regAddr)})
	for p, target := range req.Symlinks {
		if err := os.Symlink(target, filepath.Join(out, p)); err != nil {
			t.Fatal(err)
		}
	}
	for p, m := range req.Modes {
		mode, err := strconv.ParseUint(m, 8, 32)
		if err == nil {
			err = os.Chmod(filepath.Join(out, p), fs.FileMode(mode))
		}
		if err != nil {
			t.Fatal(err)
		}
	}
	return out
}

// buildahBuild builds ctxDir with buildah (flags: build flags, env: added
// to its environment) into private vfs storage and pushes the result to an
// OCI layout, returned with the image named "kt".
func buildahBuild(t *testing.T, store []string, tag, ctxDir string, flags, env []string) (string, error) {
	t.Helper()
	// The docker format keeps ONBUILD triggers, which the OCI format drops.
	args := slices.Concat(store, []string{"build", "--format", "docker", "--isolation", "chroot", "--tls-verify=false", "-f", filepath.Join(ctxDir, "Dockerfile"), "-t", tag})
	args = append(args, flags...)
	ctx, cancel := context.WithTimeout(t.Context(), defaultTimeout)
	defer cancel()
	stdout, stderr, err := toolRunEnv(ctx, t, "", env, "buildah", append(args, ctxDir)...)
	out := stdout + stderr
	if err != nil {
		return "", fmt.Errorf("buildah build: %v\n%s", err, out)
	}
	dir := filepath.Join(t.TempDir(), "buildah-oci")
	runTool(t, "", "buildah", slices.Concat(store, []string{"push", "--tls-verify=false", tag, "oci:" + dir + ":kt"})...)
	return dir, nil
}

// buildahStore makes a private buildah storage under the test's temp
// folder and removes its containers and images when the test ends. It
// returns buildah's global flags for it.
func buildahStore(t *testing.T) []string {
	t.Helper()
	dir := t.TempDir()
	flags := []string{"--root", filepath.Join(dir, "root"), "--runroot", filepath.Join(dir, "runroot"), "--storage-driver", "vfs"}
	t.Cleanup(func() { // runs before t.TempDir's removal, after t.Context() is cancelled
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		defer cancel()
		_, _ = toolOutputCtx(ctx, t, "", "buildah", slices.Concat(flags, []string{"rm", "-a"})...)
		_, _ = toolOutputCtx(ctx, t, "", "buildah", slices.Concat(flags, []string{"rmi", "-a", "-f"})...)
		// vfs layers may hold read-only folders; make them removable.
		_ = filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
			if err == nil && d.IsDir() {
				_ = os.Chmod(p, 0o755)
			}
			return nil
		})
	})
	return flags
}

func lastLines(s string, n int) string {
	lines := strings.Split(strings.TrimSpace(s), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}

// diffConfigs compares the config fields a runtime uses.
func diffConfigs(k, b *v1.ConfigFile) []string {
	var out []string
	field := func(name string, kv, bv any) {
		kj, _ := json.Marshal(kv)
		bj, _ := json.Marshal(bv)
		if string(kj) != string(bj) {
			out = append(out, fmt.Sprintf("- config %s %s", name, kj), fmt.Sprintf("+ config %s %s", name, bj))
		}
	}
	kc, bc := k.Config, b.Config
	field("os/architecture/variant", []string{k.OS, k.Architecture, k.Variant}, []string{b.OS, b.Architecture, b.Variant})
	field("Env", kc.Env, bc.Env)
	field("Cmd", kc.Cmd, bc.Cmd)
	field("Entrypoint", kc.Entrypoint, bc.Entrypoint)
	field("WorkingDir", kc.WorkingDir, bc.WorkingDir)
	field("User", kc.User, bc.User)
	field("ExposedPorts", nonEmpty(kc.ExposedPorts), nonEmpty(bc.ExposedPorts))
	field("Labels", nonEmpty(kc.Labels), nonEmpty(withoutBuildahLabel(bc.Labels)))
	field("Volumes", nonEmpty(kc.Volumes), nonEmpty(bc.Volumes))
	return out
}

// withoutBuildahLabel drops the label buildah stamps on everything it
// builds (benign: kiln has no reason to add it).
func withoutBuildahLabel(labels map[string]string) map[string]string {
	out := maps.Clone(labels)
	delete(out, "io.buildah.version")
	return out
}

// nonEmpty treats an empty map as absent: null and {} mean the same.
func nonEmpty[M ~map[string]V, V any](m M) M {
	if len(m) == 0 {
		return nil
	}
	return m
}

// diffTrees compares two listings entry by entry.
func diffTrees(kiln, buildah []fsEntry) []string {
	k, b := byPath(kiln), byPath(buildah)
	paths := slices.Sorted(maps.Keys(k))
	for p := range b {
		if _, ok := k[p]; !ok {
			paths = append(paths, p)
		}
	}
	slices.Sort(paths)
	var out []string
	for _, p := range paths {
		ke, inK := k[p]
		be, inB := b[p]
		switch {
		case !inK:
			out = append(out, "+ "+be.String())
		case !inB:
			out = append(out, "- "+ke.String())
		case ke != be:
			out = append(out, "- "+ke.String(), "+ "+be.String())
		}
	}
	return out
}

// dockerMediaTypes is img as a Docker schema 2 image.
func dockerMediaTypes(t *testing.T, img v1.Image) v1.Image {
	t.Helper()
	layers, err := img.Layers()
	if err != nil {
		t.Fatal(err)
	}
	out := mutate.ConfigMediaType(mutate.MediaType(empty.Image, types.DockerManifestSchema2), types.DockerConfigJSON)
	for _, l := range layers {
		if out, err = mutate.Append(out, mutate.Addendum{Layer: l, MediaType: types.DockerLayer}); err != nil {
			t.Fatal(err)
		}
	}
	cf := configOf(t, img).DeepCopy()
	if out, err = mutate.ConfigFile(out, cf); err != nil {
		t.Fatal(err)
	}
	return out
}
