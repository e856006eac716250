package test

import (
	"encoding/json"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"runtime"
	"slices"
	"strings"
	"testing"

	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/v1/remote"

	"kiln/test/harness"
)

// TestKanikoPodArgs runs the args list of a kaniko pod spec, verbatim, as
// kiln build (what kiln's image runs for /kaniko/executor) against a real
// registry, and checks what kaniko's flags promise: the image at both
// destinations, the digest files, the OCI layout, the platform, label and
// annotation, --ignore-path, the log as --verbosity and --log-timestamp ask,
// and --cache: the same args again hit every step.
//
// It runs three times: pushing to a plain-HTTP registry, to a TLS registry
// with a self-signed CA (kaniko's --registry-certificate), and to one that
// also wants a client certificate (--registry-client-cert); the base comes
// from the plain one.
func TestKanikoPodArgs(t *testing.T) {
	t.Parallel()
	if os.Geteuid() != 0 {
		t.Skip("the RUN step needs root here (chroot isolation)")
	}
	src := harness.NewRegistry(t)
	base, _ := pushBusyboxBase(t, src.Addr)
	t.Run("plain HTTP", func(t *testing.T) {
		kanikoPodArgs(t, base, src.Ref("kaniko/app"), nil, []name.Option{name.Insecure}, nil)
	})
	for _, mtls := range []bool{false, true} {
		label := "TLS with a self-signed CA"
		if mtls {
			label = "mTLS"
		}
		t.Run(label, func(t *testing.T) {
			reg, files := harness.NewTLSRegistry(t, mtls)
			extra := []string{"--registry-certificate=" + reg.Addr + "=" + files.CA}
			if mtls {
				extra = append(extra, "--registry-client-cert="+reg.Addr+"="+files.ClientCert+","+files.ClientKey)
			}
			cfg, err := files.ClientConfig()
			if err != nil {
				t.Fatal(err)
			}
			tr := http.DefaultTransport.(*http.Transport).Clone()
			tr.TLSClientConfig = cfg
			kanikoPodArgs(t, base, reg.Ref("kaniko/app"), extra, nil, []remote.Option{remote.WithTransport(tr)})
		})
	}
}

// kanikoPodArgs runs the pod's args, pushing to repo with extra flags, and
// checks the result; nameOpts and remoteOpts reach the registry to check.
func kanikoPodArgs(t *testing.T, base, repo string, extra []string, nameOpts []name.Option, remoteOpts []remote.Option) {
	ws := t.TempDir() // the pod's /workspace
	writeContext(t, ws, map[string]string{
		"Dockerfile": "ARG BASE\nFROM ${BASE}\nARG VERSION\nCOPY app.txt /app/\n" +
			"RUN echo \"$VERSION\" > /app/version && mkdir -p /scratch && echo junk > /scratch/junk\nLABEL stage=final\n",
		"app.txt": "hello from a kaniko pod spec\n",
	})
	out := t.TempDir()
	plat := "linux/" + runtime.GOARCH
	args := []string{
		"build",                 // what kiln's /kaniko/executor adds in front of kaniko's args
		"--context=dir://" + ws, // as kaniko pod specs write it
		"--dockerfile=Dockerfile",
		"--destination=" + repo + ":1.0",
		"--destination=" + repo + ":latest",
		"--cache=true",
		"--cache-ttl=24h",
		"--custom-platform=" + plat,
		"--snapshot-mode=redo",
		"--use-new-run",
		"--single-snapshot",
		"--compressed-caching=false",
		"--skip-unused-stages",
		"--cleanup",
		"--verbosity=debug",
		"--log-format=color",
		"--log-timestamp=false",
		"--build-arg=BASE=" + base,
		"--build-arg=VERSION=1.0",
		"--label=org.opencontainers.image.version=1.0",
		"--annotation=org.opencontainers.image.source=https://example.com/app",
		"--ignore-path=/scratch",
		"--compression=gzip",
		"--compression-level=9",
		"--push-retry=2",
		"--image-download-retry=3",
		"--digest-file=" + filepath.Join(out, "digest"),
		"--image-name-with-digest-file=" + filepath.Join(out, "files", "name-digest"),
		"--image-name-tag-with-digest-file=" + filepath.Join(out, "files", "name-tag-digest"),
		"--oci-layout-path=" + filepath.Join(out, "layout"),
		"--kaniko-dir=" + filepath.Join(out, "kaniko"),
	}
	args = append(args, extra...)
	r := runKiln(t, args...)
	mustExit(t, r, 0)
	digest := readDigestFile(t, filepath.Join(out, "digest"))
	d := digest.String()

	for file, want := range map[string]string{
		"name-digest":     repo + "@" + d + "\n" + repo + "@" + d + "\n",
		"name-tag-digest": repo + ":1.0@" + d + "\n" + repo + ":latest@" + d + "\n",
	} {
		got, err := os.ReadFile(filepath.Join(out, "files", file))
		if err != nil || string(got) != want {
			t.Errorf("%s holds %q (%v), want %q", file, got, err, want)
		}
	}
	for _, tag := range []string{"1.0", "latest"} {
		ref, err := name.ParseReference(repo+":"+tag, nameOpts...)
		if err != nil {
			t.Fatal(err)
		}
		img, err := remote.Image(ref, append([]remote.Option{remote.WithContext(t.Context())}, remoteOpts...)...)
		if err != nil {
			t.Fatalf("pulling %s: %v", ref, err)
		}
		if h, _ := img.Digest(); h != digest {
			t.Errorf("%s is %s, --digest-file says %s", ref, h, d)
		}
	}
	img := layoutImage(t, filepath.Join(out, "layout"), repo+":1.0")
	if h, _ := img.Digest(); h != digest {
		t.Errorf("--oci-layout-path holds %s, --digest-file says %s", h, d)
	}
	m, err := img.Manifest()
	if err != nil {
		t.Fatal(err)
	}
	if m.Annotations["org.opencontainers.image.source"] != "https://example.com/app" {
		t.Errorf("manifest annotations %v: want --annotation's", m.Annotations)
	}
	cf := configOf(t, img)
	if cf.OS+"/"+cf.Architecture != plat || cf.Config.Labels["org.opencontainers.image.version"] != "1.0" || cf.Config.Labels["stage"] != "final" {
		t.Errorf("config %s/%s, labels %v: want %s and both labels", cf.OS, cf.Architecture, cf.Config.Labels, plat)
	}
	tree, _ := flatten(t, img)
	files := byPath(tree)
	if f, ok := files["/app/version"]; !ok || f.Size != int64(len("1.0\n")) {
		t.Errorf("/app/version: %+v, want the RUN step's 1.0", f)
	}
	if _, ok := files["/app/app.txt"]; !ok {
		t.Error("/app/app.txt is missing")
	}
	for p := range files {
		if p == "/scratch" || strings.HasPrefix(p, "/scratch/") {
			t.Errorf("%s is in the image: --ignore-path=/scratch leaves it out", p)
		}
	}
	if fi, err := os.Stat(filepath.Join(out, "kaniko")); err != nil || !fi.IsDir() {
		t.Errorf("--kaniko-dir was not made: %v", err)
	}

	// The log: kaniko's flags kiln has nothing to do for are named, at
	// info (shown at --verbosity=debug), and no line has a time stamp.
	for _, flag := range []string{"--use-new-run", "--single-snapshot", "--cleanup", "--skip-unused-stages", "--snapshot-mode"} {
		if !strings.Contains(r.stderr, `msg="kaniko flag" flag=`+flag+" ") {
			t.Errorf("no log line for %s:\n%s", flag, r.stderr)
		}
	}
	if strings.Contains(r.stderr, "time=") {
		t.Errorf("--log-timestamp=false, and yet:\n%s", r.stderr)
	}

	// A second run of the pod: every step from the layer cache kaniko's
	// --cache=true infers (the destination's repository + /cache).
	r = runKiln(t, args...)
	mustExit(t, r, 0)
	if !regexp.MustCompile(`layer cache: 2 hits, 0 misses`).MatchString(r.stdout) {
		t.Errorf("the second run does not hit the cache for both steps:\n%s", r)
	}
}

// TestKanikoWarmerArgs runs a kaniko warmer's args, short flags and all:
// the Dockerfile's base (its ARG set by --build-arg) and --image land in
// the cache for --customPlatform.
func TestKanikoWarmerArgs(t *testing.T) {
	t.Parallel()
	reg := harness.NewRegistry(t)
	pushBaseImages(t, reg.Addr)
	df := filepath.Join(t.TempDir(), "Dockerfile")
	if err := os.WriteFile(df, []byte("ARG TAG=0\nFROM "+reg.Addr+"/library/base:${TAG}\nRUN true\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	cache, report := t.TempDir(), filepath.Join(t.TempDir(), "report.json")
	r := runKiln(t, "warm", "-c", cache, "-d", df, "--build-arg", "TAG=1", "-i", reg.Ref("library/base:1"),
		"--customPlatform=linux/arm64", "-f", "-v", "debug", "--log-timestamp=false", "--report", report)
	mustExit(t, r, 0)
	data, err := os.ReadFile(report)
	if err != nil {
		t.Fatal(err)
	}
	var rep struct {
		Results []struct{ Ref, Platform, Status string } `json:"results"`
	}
	if err := json.Unmarshal(data, &rep); err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, res := range rep.Results {
		got = append(got, res.Ref+" "+res.Platform+" "+res.Status)
	}
	want := reg.Ref("library/base:1") + " linux/arm64 pulled"
	if !slices.Contains(got, want) {
		t.Errorf("warm results %q: want %q", got, want)
	}
	verifyCache(t, cache)
}
