package test

import (
	"archive/tar"
	"encoding/base64"
	"fmt"
	"io"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"testing"

	"github.com/google/go-containerregistry/pkg/authn"
	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/v1/remote"

	"kiln/test/harness"
)

// kilnImageContext lays out kiln's image context as make image does, for
// arch, with this test's binary: deploy/image's files (Dockerfile, keep,
// kaniko's links), bin/kiln-ARCH, an empty CA bundle and, for the debug
// target, bin/busybox-ARCH from deploy/image/busybox.sh.
func kilnImageContext(t *testing.T, arch string) string {
	t.Helper()
	dir := t.TempDir()
	src := filepath.Join("..", "deploy", "image")
	err := filepath.WalkDir(src, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(src, p)
		dst := filepath.Join(dir, rel)
		switch {
		case rel == "bin":
			return fs.SkipDir // what make image builds, made here below
		case d.IsDir():
			return os.MkdirAll(dst, 0o755)
		case d.Type()&fs.ModeSymlink != 0:
			target, err := os.Readlink(p)
			if err != nil {
				return err
			}
			return os.Symlink(target, dst)
		}
		b, err := os.ReadFile(p)
		if err != nil {
			return err
		}
		return os.WriteFile(dst, b, 0o644)
	})
	if err != nil {
		t.Fatal(err)
	}
	writeContext(t, dir, map[string]string{"bin/ca-certificates.crt": ""})
	copyFile(t, kilnBin, filepath.Join(dir, "bin", "kiln-"+arch), 0o755)
	if _, err := os.Stat("/bin/busybox"); err == nil && arch == runtime.GOARCH {
		out, err := exec.Command("sh", filepath.Join(src, "busybox.sh"), arch, filepath.Join(dir, "bin", "busybox-"+arch)).CombinedOutput()
		if err != nil {
			t.Fatalf("busybox.sh: %v\n%s", err, out)
		}
	}
	return dir
}

// TestKanikoImageLayout: both variants of kiln's image keep kaniko's entry
// points; only the debug one has a shell, at /busybox, on its PATH.
func TestKanikoImageLayout(t *testing.T) {
	t.Parallel()
	needBusybox(t)
	imgCtx := kilnImageContext(t, runtime.GOARCH)
	for _, target := range []string{"kiln", "debug"} {
		t.Run(target, func(t *testing.T) {
			out := filepath.Join(t.TempDir(), "out")
			mustExit(t, runKiln(t, "build", "--context", imgCtx, "--target", target, "--reproducible", "--no-push", "--output", "oci:"+out,
				"--cache-dir", t.TempDir(), "--work-dir", t.TempDir()), 0)
			img := layoutImage(t, out, "image")
			tree, _ := flatten(t, img)
			files := byPath(tree)
			for _, link := range []string{"/kaniko/executor", "/kaniko/warmer"} {
				if e := files[link]; e.Link != "/kiln/kiln" {
					t.Errorf("%s = %+v, want a link to /kiln/kiln", link, e)
				}
			}
			for _, p := range []string{"/kiln/kiln", "/kiln/keep"} {
				if _, ok := files[p]; !ok {
					t.Errorf("%s missing", p)
				}
			}
			_, hasShell := files["/busybox/sh"]
			if bb := files["/busybox/busybox"]; target == "debug" && (!hasShell || bb.Type != "file") {
				t.Errorf("the debug image should have /busybox/busybox and /busybox/sh: %+v", bb)
			}
			if target == "kiln" && hasShell {
				t.Errorf("the plain image has a shell")
			}
			cf, err := img.ConfigFile()
			if err != nil {
				t.Fatal(err)
			}
			if path := envOf(cf.Config.Env, "PATH"); strings.Contains(path, "/busybox") != (target == "debug") || !strings.Contains(path, "/kaniko") {
				t.Errorf("PATH = %q", path)
			}
		})
	}
}

func envOf(env []string, key string) string {
	for _, kv := range env {
		if v, ok := strings.CutPrefix(kv, key+"="); ok {
			return v
		}
	}
	return ""
}

// podImageScript runs kiln's unpacked image ($2) as a pod of a CI system
// would, in a private mount namespace: a tmpfs as "/" holding the image, a
// fresh /proc, the host's /dev, a read-only /sys, the workspace volume
// ($3) at /workspace. It runs the image's /busybox/sh on
// /workspace/ci.sh with the image's environment and the variables given,
// then reports from outside the chroot which of the image's paths survived.
const podImageScript = `set -eu
R=$1 IMG=$2 WS=$3 CHROOT=$4
shift 4
mount -t tmpfs -o mode=0755 tmpfs "$R"
cp -a "$IMG"/. "$R"/
mkdir -p "$R/proc" "$R/dev" "$R/sys"
mount -t proc proc "$R/proc"
mount --rbind /dev "$R/dev"
mount --rbind -o ro /sys "$R/sys"
mount --bind "$WS" "$R/workspace"
rc=0
env -i PATH=/kiln:/kaniko:/busybox HOME=/kiln/home TMPDIR=/kiln/tmp SSL_CERT_FILE=/kiln/ca-certificates.crt \
  KUBERNETES_SERVICE_HOST=10.96.0.1 "$@" "$CHROOT" "$R" /busybox/sh /workspace/ci.sh || rc=$?
echo "== after the job (exit $rc):"
for p in /kiln/kiln /kaniko/executor /kaniko/warmer /kaniko/.docker/config.json /busybox/sh; do
  if [ -e "$R$p" ] || [ -L "$R$p" ]; then echo "kept $p"; fi
done
exit $rc
`

// TestKanikoImageInPod runs kiln's debug image the way a GitLab CI job
// runs kaniko's: its shell runs /kaniko/executor, kaniko's flags unchanged,
// on a git:// context behind Basic auth (GIT_USERNAME, GIT_PASSWORD) that
// kiln fetches with its built-in client (the image has no git), a RUN step
// in container isolation, and a push with the credentials mounted at
// /kaniko/.docker/config.json; then a second build in the same container,
// a local context with a Dockerfile outside it. The image is unpacked and
// run in a chroot, not by a container engine: nothing more is needed here.
// The chroot runs as root with every capability, where kiln would pick
// chroot isolation: KILN_ISOLATION=container (an env entry of the pod
// spec) asks for what an unprivileged pod gets.
func TestKanikoImageInPod(t *testing.T) {
	t.Parallel()
	busybox := needBusybox(t)
	if os.Geteuid() != 0 {
		t.Skip("the pod-like root needs root (mount namespace, tmpfs, chroot)")
	}
	chroot, err := exec.LookPath("chroot")
	if err != nil {
		t.Skip("chroot not installed")
	}
	for _, tool := range []string{"unshare", "umoci"} {
		if _, err := exec.LookPath(tool); err != nil {
			t.Skipf("%s not installed", tool)
		}
	}
	if out, err := exec.Command("unshare", "--mount", "--propagation", "private", "true").CombinedOutput(); err != nil {
		t.Skipf("cannot make a mount namespace here: %v %s", err, out)
	}

	// kiln's debug image, unpacked, with kaniko's credentials file.
	const regUser, regPass = "pusher", "push-Passw0rd"
	reg := harness.NewRegistryWithAuth(t, regUser, regPass)
	layoutDir := filepath.Join(t.TempDir(), "kiln-debug")
	mustExit(t, runKiln(t, "build", "--context", kilnImageContext(t, runtime.GOARCH), "--target", "debug", "--no-push",
		"--output", "oci:"+layoutDir, "--cache-dir", t.TempDir(), "--work-dir", t.TempDir()), 0)
	bundle := filepath.Join(t.TempDir(), "bundle")
	if out, err := exec.Command("umoci", "raw", "unpack", "--image", layoutDir+":image", bundle).CombinedOutput(); err != nil {
		t.Fatalf("umoci raw unpack: %v\n%s", err, out)
	}
	auth := base64.StdEncoding.EncodeToString([]byte(regUser + ":" + regPass))
	writeContext(t, bundle, map[string]string{"kaniko/.docker/config.json": fmt.Sprintf(`{"auths":{%q:{"auth":%q}}}`, reg.Addr, auth)})

	// The job's repository: a RUN step with a busybox of its own.
	srv := gitRepos(t, map[string]string{
		"Dockerfile": "FROM scratch\nCOPY busybox /bin/busybox\nRUN [\"/bin/busybox\", \"sh\", \"-c\", \"echo built > /built && /bin/busybox ls / > /listing\"]\n",
		"busybox":    string(mustRead(t, busybox)),
	})
	host := strings.TrimPrefix(srv.URL, "http://")
	dest := reg.Addr + "/acme/app:git"
	ws := t.TempDir()
	writeContext(t, ws, map[string]string{
		"ctx/a.txt": "a", "Dockerfile.second": "FROM scratch\nCOPY a.txt /a.txt\n",
		"ci.sh": fmt.Sprintf(`set -e
echo "shell: $(echo $0) in $(pwd)"
/kaniko/executor --context "git://%s/app.git#refs/heads/main" --destination %s --insecure-registry %s --progress plain
executor --context dir:///workspace/ctx --dockerfile /workspace/Dockerfile.second --no-push --tar-path /workspace/second.tar --progress plain
`, host, dest, reg.Addr),
	})

	script := filepath.Join(t.TempDir(), "pod.sh")
	if err := os.WriteFile(script, []byte(podImageScript), 0o755); err != nil {
		t.Fatal(err)
	}
	root := filepath.Join(t.TempDir(), "root")
	if err := os.Mkdir(root, 0o755); err != nil {
		t.Fatal(err)
	}
	cmd := exec.CommandContext(t.Context(), "unshare", "--mount", "--propagation", "private", "--fork",
		"sh", script, root, bundle, ws, chroot, "KILN_ISOLATION=container", "GIT_PULL_METHOD=http", "GIT_USERNAME="+gitUser, "GIT_PASSWORD="+gitPass)
	out, err := cmd.CombinedOutput()
	r := result{stdout: string(out), code: exitCode(err)}
	mustExit(t, r, 0)
	for _, want := range []string{"built-in (go-git; no git in PATH)", "isolation=container", "replacing / with the stage's filesystem",
		"kept /kiln/kiln", "kept /kaniko/executor", "kept /kaniko/warmer", "kept /kaniko/.docker/config.json", "kept /busybox/sh"} {
		if !strings.Contains(r.stdout, want) {
			t.Errorf("the job's output should say %q:\n%s", want, r.stdout)
		}
	}
	if _, err := os.Stat(filepath.Join(ws, "second.tar")); err != nil {
		t.Errorf("the second build of the job wrote nothing: %v", err)
	}

	ref, err := name.ParseReference(dest, name.Insecure)
	if err != nil {
		t.Fatal(err)
	}
	img, err := remote.Image(ref, remote.WithAuth(&authn.Basic{Username: regUser, Password: regPass}), remote.WithContext(t.Context()))
	if err != nil {
		t.Fatalf("the pushed image: %v", err)
	}
	tree, _ := flatten(t, img)
	files := byPath(tree)
	for _, p := range []string{"/built", "/listing", "/bin/busybox"} {
		if _, ok := files[p]; !ok {
			t.Errorf("%s missing from the pushed image", p)
		}
	}
	eachLayerEntry(t, img, func(i int, hdr *tar.Header, _ io.Reader) {
		top, _, _ := strings.Cut(strings.TrimPrefix(hdr.Name, "./"), "/")
		if slices.Contains([]string{"kiln", "kaniko", "busybox", "workspace", "proc", "sys", "dev"}, strings.TrimSuffix(top, "/")) {
			t.Errorf("layer %d holds %s: the image's own path or the pod's, never part of a built image", i, hdr.Name)
		}
	})
}

// TestKanikoImageUnderDocker runs kiln's debug image under a real Docker
// engine the three ways kaniko's image is run: a CI job's shell calling
// /kaniko/executor (git:// context, built-in git client, sub-path), a pod
// spec giving kaniko's args only (the image's entrypoint), and one naming
// command: ["/kaniko/executor"].
func TestKanikoImageUnderDocker(t *testing.T) {
	t.Parallel()
	needBusybox(t)
	docker := startDocker(t)
	tarball := filepath.Join(t.TempDir(), "kiln-debug.tar")
	mustExit(t, runKiln(t, "build", "--context", kilnImageContext(t, runtime.GOARCH), "--target", "debug", "--tar-path", tarball,
		"--no-push", "--destination", "kiln-debug-e2e:test", "--cache-dir", t.TempDir(), "--work-dir", t.TempDir()), 0)
	docker("load", "-i", tarball)
	srv := gitRepos(t, nil)
	host := strings.TrimPrefix(srv.URL, "http://")
	ws := t.TempDir()
	writeContext(t, ws, map[string]string{"ctx/Dockerfile": "FROM scratch\nCOPY a.txt /a.txt\n", "ctx/a.txt": "a"})
	const image = "kiln-debug-e2e:test"
	vol := ws + ":/workspace"

	out := docker("run", "--rm", "--network", "host", "-v", vol, "--entrypoint", "", "-e", "GIT_PULL_METHOD=http",
		"-e", "GIT_USERNAME="+gitUser, "-e", "GIT_PASSWORD="+gitPass, image, "/busybox/sh", "-c",
		"/kaniko/executor --context git://"+host+"/app.git#refs/heads/main --context-sub-path svc --no-push --tar-path /workspace/git.tar --progress plain && ls /kaniko")
	if !strings.Contains(out, "built-in (go-git; no git in PATH)") || !strings.Contains(out, "warmer") {
		t.Errorf("the job should fetch with kiln's built-in git client and keep /kaniko:\n%s", out)
	}
	out = docker("run", "--rm", "-v", vol, image, "--context=dir:///workspace/ctx", "--no-push", "--tar-path=/workspace/args.tar", "--progress=plain")
	t.Logf("kaniko's args against the entrypoint:\n%s", out)
	out = docker("run", "--rm", "-v", vol, "--entrypoint", "/kaniko/executor", image, "-c", "dir:///workspace/ctx", "--no-push", "--tar-path", "/workspace/cmd.tar", "--progress", "plain")
	t.Logf("command /kaniko/executor:\n%s", out)
	for _, f := range []string{"git.tar", "args.tar", "cmd.tar"} {
		if _, err := os.Stat(filepath.Join(ws, f)); err != nil {
			t.Errorf("%s was not written: %v", f, err)
		}
	}
}
