package test

import (
	"fmt"
	"maps"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	v1 "github.com/google/go-containerregistry/pkg/v1"
)

// runCaseBuild is one case made ready to build: its context, flags and
// secrets.
type runCaseBuild struct {
	c       runCase
	ctxDir  string
	flags   []string // build flags for kiln
	bflags  []string // build flags for buildah
	env     []string // the environment of env= secrets and SOURCE_DATE_EPOCH
	secrets []string // every secret value
}

func newRunCaseBuild(t *testing.T, dir string, c runCase, base string) *runCaseBuild {
	t.Helper()
	rb := &runCaseBuild{c: c, ctxDir: t.TempDir()}
	if _, err := os.Stat(filepath.Join(dir, "context")); err == nil {
		copyTestdata(t, filepath.Join("run", filepath.Base(dir), "context"), rb.ctxDir)
	}
	df, err := os.ReadFile(filepath.Join(dir, "Dockerfile"))
	if err != nil {
		t.Fatal(err)
	}
	writeContext(t, rb.ctxDir, map[string]string{"Dockerfile": strings.ReplaceAll(string(df), "{{BASE}}", base)})
	req := diffCaseRequest{Platform: c.Platform, Target: c.Target, Args: map[string]string{}}
	for k, v := range c.Args {
		req.Args[k] = strings.ReplaceAll(v, "{{BASE}}", base)
	}
	rb.flags = diffBuildFlags(req)
	rb.bflags = diffBuildFlags(req)
	secret := func(long, short string) {
		rb.bflags = append(rb.bflags, "--secret", long)
		if c.SecretShort {
			long = short
		}
		rb.flags = append(rb.flags, "--secret", long)
	}
	secretDir := t.TempDir()
	for _, id := range slices.Sorted(maps.Keys(c.SecretFiles)) {
		p := filepath.Join(secretDir, id)
		if err := os.WriteFile(p, []byte(c.SecretFiles[id]), 0o600); err != nil {
			t.Fatal(err)
		}
		secret("id="+id+",src="+p, "src="+p)
		rb.secrets = append(rb.secrets, c.SecretFiles[id])
	}
	for _, id := range slices.Sorted(maps.Keys(c.SecretEnv)) {
		v := "TEST_SECRET_" + strings.ToUpper(id)
		if c.SecretShort {
			v = id
		}
		secret("id="+id+",env="+v, "env="+v)
		rb.env = append(rb.env, v+"="+c.SecretEnv[id])
		rb.secrets = append(rb.secrets, c.SecretEnv[id])
	}
	if c.SourceDateEpoch != "" {
		rb.env = append(rb.env, "SOURCE_DATE_EPOCH="+c.SourceDateEpoch)
	}
	return rb
}

// runBuild is what one kiln build of a case gave.
type runBuild struct {
	strategy string
	res      result
	out      string // the OCI layout
	cacheDir string
	img      v1.Image      // nil when the build failed
	took     time.Duration // of the (last) build
}

// kiln builds the case with --snapshot strategy (twice with one cache
// folder if the case says so).
func (rb *runCaseBuild) kiln(t *testing.T, strategy string, probs *problems) runBuild {
	t.Helper()
	b := runBuild{strategy: strategy, cacheDir: t.TempDir()}
	runs := 1
	if rb.c.Twice {
		runs = 2
	}
	for i := range runs {
		b.out = filepath.Join(t.TempDir(), "oci")
		args := []string{"build", "--progress", "plain", "--context", rb.ctxDir, "--output", "oci:" + b.out, "--no-push",
			"--cache-dir", b.cacheDir, "--work-dir", t.TempDir(), "--isolation", "chroot", "--snapshot", strategy, "--reproducible"}
		start := time.Now()
		b.res = runKilnOpts(t, runOpts{env: rb.env}, append(args, rb.flags...)...)
		b.took = time.Since(start)
		if i == 0 && runs > 1 && b.res.code != 0 {
			t.Fatalf("--snapshot %s: the first of two builds failed:\n%s", strategy, b.res)
		}
	}
	rb.checkOutcome(t, &b, probs)
	return b
}

// checkOutcome checks the exit status and output against the case, and
// opens the image of a successful build.
func (rb *runCaseBuild) checkOutcome(t *testing.T, b *runBuild, probs *problems) {
	t.Helper()
	for _, s := range rb.secrets {
		if strings.Contains(b.res.output(), s) {
			probs.add(b, "a secret value shows in kiln's output", b.res)
		}
	}
	if limit := rb.c.MaxSeconds; limit > 0 && b.took.Seconds() > limit {
		probs.add(b, fmt.Sprintf("the build took %.1fs, more than %.0fs", b.took.Seconds(), limit))
	}
	if f := rb.c.Fail; f != nil {
		if b.res.code != f.Code {
			probs.add(b, fmt.Sprintf("exit %d, want %d", b.res.code, f.Code), b.res)
		}
		for _, want := range f.Output {
			if !strings.Contains(b.res.output(), want) {
				probs.add(b, fmt.Sprintf("the output does not say %q", want), b.res)
			}
		}
		return
	}
	if b.res.code != 0 {
		probs.add(b, fmt.Sprintf("the build failed (exit %d): %s", b.res.code, lastLines(b.res.stderr, 1)), b.res)
		return
	}
	b.img = layoutImage(t, b.out, "image")
}

// problems are the expectations a case's builds did not meet, collected
// so that known bugs (runKnownBugs) can be told from new ones.
type problems struct {
	list []string // "--snapshot S: what"
}

// add records a problem of build b; details (such as the build's output)
// go to the log only.
func (p *problems) add(b *runBuild, what string, details ...any) {
	p.list = append(p.list, "--snapshot "+b.strategy+": "+what)
	if len(details) > 0 {
		p.list[len(p.list)-1] += "\n" + strings.TrimSpace(fmt.Sprintln(details...))
	}
}

// settleProblems fails the test for every problem a known bug of the case
// does not explain, and for every text of the known bug no problem shows.
func settleProblems(t *testing.T, name string, p problems, known map[string]knownBug) {
	t.Helper()
	bug, isKnown := known[name]
	matched := make([]bool, len(bug.problems))
	for _, prob := range p.list {
		first, _, _ := strings.Cut(prob, "\n")
		i := slices.IndexFunc(bug.problems, func(s string) bool { return strings.Contains(first, s) })
		if i < 0 {
			t.Errorf("%s", prob)
			continue
		}
		matched[i] = true
		t.Logf("known kiln bug (%s): %s", bug.why, prob)
	}
	for i, m := range matched {
		if !m {
			t.Errorf("the known bug of %s (%s) no longer shows as %q: remove it from runKnownBugs if kiln was fixed", name, bug.why, bug.problems[i])
		}
	}
	if isKnown && len(p.list) > 0 {
		t.Logf("%s: known kiln bug, see runKnownBugs", name)
	}
}

// diffBuildah builds the case with buildah (twice with one TMPDIR, where
// buildah 1.28 keeps cache mounts, if the case says so) and lists how
// kiln's build b differs.
func (rb *runCaseBuild) diffBuildah(t *testing.T, store []string, b runBuild) []string {
	t.Helper()
	env := append(slices.Clone(rb.env), "TMPDIR="+t.TempDir())
	tag := "kiln-run-" + strings.ToLower(strings.ReplaceAll(t.Name(), "/", "-"))
	var bOut string
	var bErr error
	runs := 1
	if rb.c.Twice {
		runs = 2
	}
	for range runs {
		bOut, bErr = buildahBuild(t, store, tag, rb.ctxDir, rb.bflags, env)
	}
	return withoutBuildahStubs(diffOutcomes(t, b.res, b.out, bOut, bErr))
}

// buildahStub is an empty file buildah 1.28 leaves in the image where it
// bind-mounted the container's /etc/hostname, /etc/hosts and
// /etc/resolv.conf, or the /run/secrets folder it made for a secret's
// default target. BuildKit removes such mount stubs after the step
// (executor/stubs.go MountStubsCleaner: /etc/resolv.conf, /etc/hosts and
// every mount target with the parents it made, when empty; BuildKit does
// not mount /etc/hostname at all), so their absence in kiln's image is
// right. Cases check that kiln leaves none (case.json "absent").
var buildahStub = regexp.MustCompile(`^\+ (/etc/(hostname|hosts|resolv\.conf) file 0\d{3} 0:0 0B |/run/secrets dir 0755 0:0$)`)

func withoutBuildahStubs(diffs []string) []string {
	return slices.DeleteFunc(diffs, buildahStub.MatchString)
}
