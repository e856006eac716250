package test

import (
	"fmt"
	"math/rand/v2"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/google/go-containerregistry/pkg/v1/validate"

	"kiln/test/harness"
)

// pushFaults fail about one request in five, every method and every kind a
// busy registry shows: a 500, a reset before the answer, a reset in the
// middle of an upload's body, a 2 s stall then 503, a 429. The /v2/ ping is
// spared, and one path gets at most 3 faults, so retries get through.
func pushFaults(seed int64) harness.Faults {
	return harness.Faults{
		Seed:        seed,
		Status500:   0.06,
		Status429:   0.02,
		Reset:       0.05,
		ResetUpload: 0.05,
		Stall503:    0.03,
		Only:        func(r *http.Request) bool { return r.URL.Path != "/v2/" },
	}
}

// randomFile writes n bytes that do not compress.
func randomFile(t *testing.T, path string, n int, seed uint64) {
	t.Helper()
	rng := rand.NewChaCha8([32]byte{byte(seed), byte(seed >> 8), 1})
	b := make([]byte, n)
	rng.Read(b)
	if err := os.WriteFile(path, b, 0o644); err != nil {
		t.Fatal(err)
	}
}

// validateRef pulls ref from the registry itself (not the proxy) and reads
// every blob, checking every digest.
func validateRef(t *testing.T, ref string, index bool) {
	t.Helper()
	r, err := name.ParseReference(ref, name.Insecure)
	if err != nil {
		t.Fatal(err)
	}
	if index {
		idx, err := remote.Index(r, remote.WithContext(t.Context()))
		if err == nil {
			err = validate.Index(idx)
		}
		if err != nil {
			t.Errorf("%s does not validate: %v", ref, err)
		}
		return
	}
	img, err := remote.Image(r, remote.WithContext(t.Context()))
	if err == nil {
		err = validate.Image(img)
	}
	if err != nil {
		t.Errorf("%s does not validate: %v", ref, err)
	}
}

// TestPushFaults: with one request in five failing, 20 consecutive
// `kiln build --destination` (two layers of 3 MB) and 20 `kiln build-all`
// (two platforms × 3 MB, two tags) all succeed, and everything pushed
// verifies. The same build with no faults is timed beside it, for the
// closing note's "extra time and bytes re-sent".
func TestPushFaults(t *testing.T) {
	t.Parallel()
	runs := 20
	if testing.Short() {
		runs = 3
	}
	reg := harness.NewRegistry(t)
	seed := time.Now().UnixNano()
	t.Logf("fault seed %d", seed)

	t.Run("build", func(t *testing.T) {
		t.Parallel()
		ctxDir := t.TempDir()
		writeContext(t, ctxDir, map[string]string{"Dockerfile": "FROM scratch\nCOPY a.bin /a.bin\nCOPY b.bin /b.bin\n"})
		clean := harness.NewFaultProxy(t, reg.Addr, harness.Faults{})
		faulty := harness.NewFaultProxy(t, reg.Addr, pushFaults(seed))
		var cleanTime, faultyTime time.Duration
		for i := range runs {
			// New content each run: every layer is really uploaded.
			randomFile(t, filepath.Join(ctxDir, "a.bin"), 3<<20, uint64(2*i))
			randomFile(t, filepath.Join(ctxDir, "b.bin"), 3<<20, uint64(2*i+1))
			start := time.Now()
			mustExit(t, runKiln(t, "build", "--context", ctxDir, "--destination", fmt.Sprintf("%s/clean/app:%d", clean.Addr, i)), 0)
			cleanTime += time.Since(start)
			start = time.Now()
			r := runKiln(t, "build", "--context", ctxDir, "--destination", fmt.Sprintf("%s/faulty/app:%d", faulty.Addr, i))
			faultyTime += time.Since(start)
			if r.code != 0 {
				t.Fatalf("run %d of %d failed at %v faults:\n%s", i+1, runs, faulty.Counts(), r)
			}
			if strings.Contains(r.stderr, "_state=") && !strings.Contains(r.stderr, "_state=REDACTED") {
				t.Errorf("an upload session token in the output:\n%s", r.stderr)
			}
			validateRef(t, fmt.Sprintf("%s/faulty/app:%d", reg.Addr, i), false)
		}
		cc, fc := clean.Counts(), faulty.Counts()
		t.Logf("%d builds: no faults %v, %d requests, %d MB uploaded; with faults %v, %d requests, %d MB uploaded; faults %v",
			runs, cleanTime.Round(time.Millisecond), cc[harness.CountRequests], cc[harness.CountUploadBytes]>>20,
			faultyTime.Round(time.Millisecond), fc[harness.CountRequests], fc[harness.CountUploadBytes]>>20, fc)
	})

	t.Run("build-all", func(t *testing.T) {
		t.Parallel()
		faulty := harness.NewFaultProxy(t, reg.Addr, pushFaults(seed+1))
		dir := t.TempDir()
		writeFiles(t, dir, map[string]string{
			"app/Dockerfile": "FROM scratch\nARG TARGETARCH\nCOPY data-${TARGETARCH}.bin /data.bin\n",
			"build.toml": `[registries."REGISTRY"]
insecure = true

[images.app]
context = "app"
platforms = ["linux/amd64", "linux/arm64"]
tags = ["REGISTRY/multi/app:TAG", "REGISTRY/multi/app:latest-TAG"]
`,
		}, "REGISTRY", faulty.Addr)
		toml := filepath.Join(dir, "build.toml")
		base, err := os.ReadFile(toml)
		if err != nil {
			t.Fatal(err)
		}
		for i := range runs {
			randomFile(t, filepath.Join(dir, "app", "data-amd64.bin"), 3<<20, uint64(100+2*i))
			randomFile(t, filepath.Join(dir, "app", "data-arm64.bin"), 3<<20, uint64(101+2*i))
			if err := os.WriteFile(toml, []byte(strings.ReplaceAll(string(base), "TAG", fmt.Sprint(i))), 0o644); err != nil {
				t.Fatal(err)
			}
			r := runKilnOpts(t, runOpts{dir: dir}, "build-all", "--config", toml)
			if r.code != 0 {
				t.Fatalf("run %d of %d failed at %v faults:\n%s", i+1, runs, faulty.Counts(), r)
			}
			for _, tag := range []string{fmt.Sprint(i), fmt.Sprintf("latest-%d", i)} {
				validateRef(t, fmt.Sprintf("%s/multi/app:%s", reg.Addr, tag), true)
			}
		}
		t.Logf("%d build-alls: faults %v", runs, faulty.Counts())
	})
}

// TestPushAlwaysFails: every upload answered 500 ends the build with exit 1
// within the retry budget, a message naming the push and no tag.
func TestPushAlwaysFails(t *testing.T) {
	t.Parallel()
	reg := harness.NewRegistry(t)
	faulty := harness.NewFaultProxy(t, reg.Addr, harness.Faults{
		Seed: 1, Status500: 1, MaxFaultsPerPath: 1 << 30,
		Only: func(r *http.Request) bool { return strings.Contains(r.URL.Path, "/blobs/uploads/") },
	})
	ctxDir := t.TempDir()
	writeContext(t, ctxDir, map[string]string{"Dockerfile": "FROM scratch\nCOPY a.bin /a.bin\n"})
	randomFile(t, filepath.Join(ctxDir, "a.bin"), 1<<20, 7)
	// The push check meets the failing uploads first, before any work.
	r := runKiln(t, "build", "--context", ctxDir, "--retries", "3", "--destination", faulty.Addr+"/never/app:1")
	mustExit(t, r, 1)
	if !strings.Contains(r.stderr, "no push access") {
		t.Errorf("the push check should fail first:\n%s", r.stderr)
	}
	start := time.Now()
	r = runKiln(t, "build", "--context", ctxDir, "--retries", "3", "--retry-budget", "20s", "--skip-push-permission-check",
		"--work-dir", t.TempDir(), "--destination", faulty.Addr+"/never/app:1")
	took := time.Since(start)
	mustExit(t, r, 1)
	if took > 60*time.Second {
		t.Errorf("gave up after %v, beyond the 20s budget", took)
	}
	if !strings.Contains(r.stderr, "pushing "+faulty.Addr+"/never/app:1") || !strings.Contains(r.stderr, "500") {
		t.Errorf("the error should name the push and the registry's answer:\n%s", r.stderr)
	}
	if tagExists(t, reg.Addr+"/never/app:1") {
		t.Error("a tag exists after a failed push")
	}
	t.Logf("gave up after %v: %s", took.Round(time.Millisecond), lastLines(r.stderr, 3))

	// The build is not lost: the printed command pushes the kept image,
	// here to the registry itself once "the network is back".
	var cmdLine string
	for _, l := range strings.Split(r.stderr, "\n") {
		if l = strings.TrimSpace(l); strings.HasPrefix(l, "kiln push ") {
			cmdLine = l
		}
	}
	if cmdLine == "" {
		t.Fatalf("no kiln push command to retry with:\n%s", r.stderr)
	}
	args := strings.Fields(strings.TrimPrefix(cmdLine, "kiln "))
	args[len(args)-1] = strings.ReplaceAll(args[len(args)-1], faulty.Addr, reg.Addr) // the DEST; --ref names the layout entry
	mustExit(t, runKiln(t, args...), 0)
	validateRef(t, reg.Addr+"/never/app:1", false)
}

// TestPushKill9: kiln killed in the middle of a push (an upload stalled by
// the proxy), then the same command again succeeds.
func TestPushKill9(t *testing.T) {
	t.Parallel()
	reg := harness.NewRegistry(t)
	stalled := harness.NewFaultProxy(t, reg.Addr, harness.Faults{
		Seed: 1, Stall503: 1, StallFor: time.Minute, MaxFaultsPerPath: 1 << 30,
		Only: func(r *http.Request) bool { return r.Method == http.MethodPatch || r.Method == http.MethodPut },
	})
	ctxDir := t.TempDir()
	writeContext(t, ctxDir, map[string]string{"Dockerfile": "FROM scratch\nCOPY a.bin /a.bin\n"})
	randomFile(t, filepath.Join(ctxDir, "a.bin"), 2<<20, 9)
	ctx := t.Context()
	cmd, _, stderr := kilnCmd(t, ctx, runOpts{}, "build", "--context", ctxDir, "--destination", stalled.Addr+"/killed/app:1")
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(time.Minute)
	for stalled.Counts()[harness.FaultStall503] == 0 {
		if time.Now().After(deadline) {
			cmd.Process.Kill()
			cmd.Wait()
			t.Fatalf("the push never reached an upload:\n%s", stderr)
		}
		time.Sleep(20 * time.Millisecond)
	}
	if err := cmd.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	cmd.Wait()
	if tagExists(t, reg.Addr+"/killed/app:1") {
		t.Fatal("a tag exists after a killed push")
	}
	r := runKiln(t, "build", "--context", ctxDir, "--destination", reg.Addr+"/killed/app:1")
	mustExit(t, r, 0)
	validateRef(t, reg.Addr+"/killed/app:1", false)
}
