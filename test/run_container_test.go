package test

import (
	"archive/tar"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"kiln/builder/layerstore"
	"kiln/test/harness"
)

// podScript builds what a Kubernetes pod running kiln's own image looks
// like, in a private mount namespace (nothing of it is visible outside, and
// it all goes when the namespace does): a tmpfs as "/" holding only
// /kiln/kiln, a fresh /proc, the host's /dev, a read-only /sys,
// /etc/resolv.conf and /etc/hosts bound in as a runtime does, the
// workspace volume at /workspace and a service-account token at
// /var/run/secrets/kubernetes.io/serviceaccount/token. It chroots into it
// and runs kiln with the arguments given, then reports, from outside the
// chroot, what the pod's "/" holds.
const podScript = `set -eu
R=$1 WS=$2 KILN=$3 TOKEN=$4 EXTRA=$5
shift 5
mount -t tmpfs -o mode=0755 tmpfs "$R"
mkdir -p "$R/kiln" "$R/proc" "$R/dev" "$R/sys" "$R/etc" "$R/workspace" "$R/tmp" "$R/var/run/secrets/kubernetes.io/serviceaccount"
chmod 1777 "$R/tmp"
cp "$KILN" "$R/kiln/kiln"
mount -t proc proc "$R/proc"
mount --rbind /dev "$R/dev"
mount --rbind -o ro /sys "$R/sys"
touch "$R/etc/resolv.conf" "$R/etc/hosts" "$R/var/run/secrets/kubernetes.io/serviceaccount/token"
mount --bind -o ro /etc/resolv.conf "$R/etc/resolv.conf"
mount --bind -o ro /etc/hosts "$R/etc/hosts"
mount --bind "$WS" "$R/workspace"
mount --bind -o ro "$TOKEN" "$R/var/run/secrets/kubernetes.io/serviceaccount/token"
if [ -n "$EXTRA" ]; then mkdir -p "$R/data"; echo keep-me > "$R/data/important"; fi
rc=0
KUBERNETES_SERVICE_HOST=10.96.0.1 TMPDIR=/tmp chroot "$R" /kiln/kiln "$@" || rc=$?
echo "== pod root after kiln (exit $rc):"
(cd "$R" && ls -A)
[ -x "$R/kiln/kiln" ] && echo "== kiln binary kept"
[ -z "$EXTRA" ] || cat "$R/data/important"
exit $rc
`

// runInPod runs kiln inside the pod-like root of podScript; ws is the
// workspace volume. It skips where a mount namespace cannot be made.
func runInPod(t *testing.T, ws string, extra bool, args ...string) result {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("the pod-like root needs root (mount namespace, tmpfs, chroot)")
	}
	if _, err := exec.LookPath("unshare"); err != nil {
		t.Skip("unshare (util-linux) not installed")
	}
	if out, err := exec.Command("unshare", "--mount", "--propagation", "private", "true").CombinedOutput(); err != nil {
		t.Skipf("cannot make a mount namespace here: %v %s", err, out)
	}
	dir := t.TempDir()
	script := filepath.Join(dir, "pod.sh")
	if err := os.WriteFile(script, []byte(podScript), 0o755); err != nil {
		t.Fatal(err)
	}
	root := filepath.Join(dir, "root")
	token := filepath.Join(dir, "token")
	for p, body := range map[string]string{token: "service-account-token-of-the-pod"} {
		if err := os.WriteFile(p, []byte(body), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.Mkdir(root, 0o755); err != nil {
		t.Fatal(err)
	}
	flag := ""
	if extra {
		flag = "data"
	}
	cmd := exec.CommandContext(t.Context(), "unshare", append([]string{"--mount", "--propagation", "private", "--fork",
		"sh", script, root, ws, kilnBin, token, flag}, args...)...)
	var stdout, stderr strings.Builder
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	err := cmd.Run()
	r := result{stdout: stdout.String(), stderr: stderr.String(), code: exitCode(err)}
	if got, _ := os.ReadFile(token); string(got) != "service-account-token-of-the-pod" {
		t.Errorf("the service-account token (a mount in the pod) was changed: %q", got)
	}
	if entries, _ := os.ReadDir(root); len(entries) != 0 {
		t.Errorf("the pod's root leaked out of its mount namespace: %d entries in %s", len(entries), root)
	}
	return r
}

// TestRunContainerIsolation: --isolation container, the kaniko way, in a
// pod-like root: kiln replaces "/" with each stage's filesystem, runs the
// steps there, and never snapshots, deletes or changes a mount point (the
// workspace, the token, /etc/hosts, /proc...) or its own folder.
func TestRunContainerIsolation(t *testing.T) {
	t.Parallel()
	needBusybox(t)
	ws := t.TempDir()
	ctxDir := filepath.Join(ws, "ctx")
	busyboxContext(t, ctxDir, `FROM scratch AS tools
COPY busybox /bin/busybox
RUN ["/bin/busybox", "--install", "-s", "/bin"]
RUN echo one > /etc/app.conf && mkdir -p /srv/a/b && echo deep > /srv/a/b/c && rm /bin/sleep \
 && cat /var/run/secrets/kubernetes.io/serviceaccount/token > /dev/null && test -f /workspace/ctx/Dockerfile

FROM scratch AS other
COPY busybox /bin/busybox
RUN ["/bin/busybox", "echo", "other stage"]

FROM tools
COPY --from=other /bin/busybox /opt/busybox-copy
RUN rm -r /srv/a && echo two >> /etc/app.conf && ls / > /root-listing && touch /tmp/in-image
`)
	r := runInPod(t, ws, false, "build", "--progress", "plain", "--isolation", "container",
		"--context", "/workspace/ctx", "--output", "oci:/workspace/out", "--cache-dir", "/workspace/cache", "--reproducible")
	mustExit(t, r, 0)
	for _, want := range []string{"isolation=container", "snapshot=walk", "replacing / with the stage's filesystem", "== kiln binary kept"} {
		if !strings.Contains(r.output(), want) {
			t.Errorf("output should say %q:\n%s", want, r)
		}
	}
	if _, err := os.Stat(filepath.Join(ctxDir, "Dockerfile")); err != nil {
		t.Errorf("the build context on the workspace volume was touched: %v", err)
	}

	img := layoutImage(t, filepath.Join(ws, "out"), "image")
	tree, dups := flatten(t, img)
	if len(dups) > 0 {
		t.Errorf("paths twice in one layer: %v", dups)
	}
	files := byPath(tree)
	for p, want := range map[string]bool{
		"/etc/app.conf": true, "/root-listing": true, "/opt/busybox-copy": true, "/tmp/in-image": true, "/bin/sh": true,
		"/srv": true, "/srv/a": false, "/bin/sleep": false,
	} {
		if _, ok := files[p]; ok != want {
			t.Errorf("%s in the image: %v, want %v", p, ok, want)
		}
	}
	forbidden := []string{"kiln", "workspace", "proc", "sys", "dev", "etc/hosts", "etc/resolv.conf", "var/run/secrets", "tmp/kiln-build-"}
	eachLayerEntry(t, img, func(i int, hdr *tar.Header, _ io.Reader) {
		name := strings.TrimSuffix(hdr.Name, "/")
		for _, f := range forbidden {
			if name == f || strings.HasPrefix(name, f+"/") || (strings.HasSuffix(f, "-") && strings.HasPrefix(name, f)) {
				t.Errorf("layer %d holds %s: the pod's own path, never part of an image", i, hdr.Name)
			}
		}
		if strings.Contains(name, "service-account-token") {
			t.Errorf("layer %d holds the token", i)
		}
	})
}

// TestRunContainerRefusesForeignRoot: container isolation replaces "/", so
// it refuses a "/" holding files that are not kiln's (a container kiln was
// not made for), before touching anything, and names the way out.
func TestRunContainerRefusesForeignRoot(t *testing.T) {
	t.Parallel()
	needBusybox(t)
	ws := t.TempDir()
	ctxDir := filepath.Join(ws, "ctx")
	busyboxContext(t, ctxDir, "FROM scratch\nCOPY busybox /bin/busybox\nRUN [\"/bin/busybox\", \"true\"]\n")
	r := runInPod(t, ws, true, "build", "--progress", "plain", "--isolation", "container",
		"--context", "/workspace/ctx", "--output", "oci:/workspace/out")
	mustExit(t, r, 2) // refused before any work, as a flag that cannot apply here
	for _, want := range []string{"holds /data", "--force", "keep-me"} {
		if !strings.Contains(r.output(), want) {
			t.Errorf("output should say %q:\n%s", want, r)
		}
	}
}

// needBusybox is the host's static busybox (Debian's busybox-static).
func needBusybox(t *testing.T) string {
	t.Helper()
	if _, err := os.Stat("/bin/busybox"); err != nil {
		t.Skip("busybox-static not installed (apt-get install busybox-static)")
	}
	return "/bin/busybox"
}

// busyboxContext makes dir a build context holding the host's static
// busybox (call needBusybox first, to skip without it) and dockerfile.
func busyboxContext(t *testing.T, dir, dockerfile string) {
	t.Helper()
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	copyFile(t, needBusybox(t), filepath.Join(dir, "busybox"), 0o755)
	writeContext(t, dir, map[string]string{"Dockerfile": dockerfile})
}

func copyFile(t *testing.T, src, dst string, mode os.FileMode) {
	t.Helper()
	b, err := os.ReadFile(src)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(dst, b, mode); err != nil {
		t.Fatal(err)
	}
}

// TestRunContainerMounts: RUN --mount in container isolation, where kiln
// may not mount. A cache mount over a folder the image has (apt's way)
// keeps its files across two builds while the image's folder comes back
// untouched; a secret is readable in its step and in no layer; a bind of
// the context is a copy the step may scribble on; a tmpfs leaves nothing.
// A target over a path the pod keeps is refused.
func TestRunContainerMounts(t *testing.T) {
	t.Parallel()
	needBusybox(t)
	ws := t.TempDir()
	ctxDir := filepath.Join(ws, "ctx")
	const secret = "s3cr3t-of-the-container-mode-test"
	busyboxContext(t, ctxDir, `FROM scratch
COPY busybox /bin/busybox
RUN ["/bin/busybox", "--install", "-s", "/bin"]
RUN mkdir -p /var/lib/thing && echo image > /var/lib/thing/state
RUN --mount=type=cache,target=/var/lib/thing,id=thing \
    test ! -e /var/lib/thing/state && n=$(cat /var/lib/thing/count 2>/dev/null || echo 0) \
 && echo $((n+1)) > /var/lib/thing/count && echo "count=$((n+1))" > /count-seen
RUN --mount=type=secret,id=tok wc -c < /run/secrets/tok > /secret-length
RUN --mount=type=bind,source=data,target=/src cat /src/hello > /from-bind && echo scribble > /src/hello
RUN --mount=type=tmpfs,target=/scratch echo x > /scratch/y && ls /scratch > /scratch-listing
RUN cat /var/lib/thing/state > /state-after && ls -A /var/lib/thing > /thing-listing
RUN <<EOF
#!/bin/sh
echo "a script of its own: $0" > /heredoc-out
EOF
`)
	writeContext(t, ctxDir, map[string]string{"data/hello": "hello from the context\n"})
	if err := os.WriteFile(filepath.Join(ws, "secret"), []byte(secret), 0o600); err != nil {
		t.Fatal(err)
	}
	args := []string{"build", "--progress", "plain", "--isolation", "container", "--context", "/workspace/ctx",
		"--cache-dir", "/workspace/cache", "--secret", "id=tok,src=/workspace/secret", "--reproducible"}
	for i, want := range []string{"count=1\n", "count=2\n"} {
		out := fmt.Sprintf("/workspace/out%d", i)
		r := runInPod(t, ws, false, append(args, "--output", "oci:"+out)...)
		mustExit(t, r, 0)
		if !strings.Contains(r.output(), "container isolation cannot mount") {
			t.Errorf("the log should say how container isolation handles RUN --mount:\n%s", r)
		}
		img := layoutImage(t, filepath.Join(ws, filepath.Base(out)), "image")
		got := map[string]string{}
		eachLayerEntry(t, img, func(i int, hdr *tar.Header, body io.Reader) {
			name := strings.TrimSuffix(hdr.Name, "/")
			b, _ := io.ReadAll(body)
			if strings.Contains(string(b), secret) {
				t.Errorf("layer %d: %s holds the secret", i, hdr.Name)
			}
			for _, bad := range []string{"run", "src", "scratch", "var/lib/thing/count", ".kiln-heredoc"} {
				if name == bad || strings.HasPrefix(name, bad+"/") {
					t.Errorf("layer %d holds %s: a mount's, never the image's", i, hdr.Name)
				}
			}
			for _, bad := range []string{".kiln-hidden", ".wh."} {
				if strings.Contains(name, bad) {
					t.Errorf("layer %d holds %s: the mounts should leave no trace", i, hdr.Name)
				}
			}
			if hdr.Typeflag == tar.TypeReg {
				got[name] = string(b)
			}
		})
		for p, want := range map[string]string{
			"count-seen": want, "secret-length": fmt.Sprintf("%d\n", len(secret)), "from-bind": "hello from the context\n",
			"scratch-listing": "y\n", "state-after": "image\n", "thing-listing": "state\n", "var/lib/thing/state": "image\n",
			"heredoc-out": "a script of its own: /.kiln-heredoc/EOF\n",
		} {
			if got[p] != want {
				t.Errorf("build %d: /%s = %q, want %q", i+1, p, got[p], want)
			}
		}
	}
	if b, _ := os.ReadFile(filepath.Join(ctxDir, "data/hello")); string(b) != "hello from the context\n" {
		t.Errorf("the step's write to its bind reached the context: %q", b)
	}

	// A bind from a stage that is built on demand and has a RUN of its own:
	// that stage takes "/" first, then gives it back to this one.
	busyboxContext(t, ctxDir, `FROM scratch AS deps
COPY busybox /bin/busybox
RUN ["/bin/busybox", "sh", "-c", "/bin/busybox mkdir /out && /bin/busybox echo dep > /out/f"]

FROM scratch
COPY busybox /bin/busybox
RUN --mount=type=bind,from=deps,source=/out,target=/d ["/bin/busybox", "cp", "/d/f", "/copied"]
`)
	r := runInPod(t, ws, false, append(args, "--output", "oci:/workspace/fromstage")...)
	mustExit(t, r, 0)
	files := map[string]string{}
	eachLayerEntry(t, layoutImage(t, filepath.Join(ws, "fromstage"), "image"), func(_ int, hdr *tar.Header, body io.Reader) {
		b, _ := io.ReadAll(body)
		files[strings.TrimSuffix(hdr.Name, "/")] = string(b)
	})
	if files["copied"] != "dep\n" {
		t.Errorf("/copied = %q, want the deps stage's file", files["copied"])
	}
	for _, p := range []string{"out", "out/f", "d"} {
		if _, ok := files[p]; ok {
			t.Errorf("the image holds /%s, of another stage or a mount", p)
		}
	}

	// A secret inside a cache mount would be written into the cache folder:
	// refused, in either order.
	for _, mounts := range []string{
		"--mount=type=cache,target=/root/.m2 --mount=type=secret,id=tok,target=/root/.m2/settings.xml",
		"--mount=type=secret,id=tok,target=/root/.m2/settings.xml --mount=type=cache,target=/root/.m2",
	} {
		busyboxContext(t, ctxDir, "FROM scratch\nCOPY busybox /bin/busybox\nRUN "+mounts+" [\"/bin/busybox\", \"true\"]\n")
		r := runInPod(t, ws, false, append(args, "--output", "oci:/workspace/nested")...)
		if r.code == 0 || !strings.Contains(r.output(), "nest") {
			t.Errorf("nested mounts in container isolation should be refused:\n%s", r)
		}
	}
	filepath.Walk(filepath.Join(ws, "cache"), func(p string, fi os.FileInfo, err error) error {
		if err == nil && fi.Mode().IsRegular() {
			if b, _ := os.ReadFile(p); strings.Contains(string(b), secret) {
				t.Errorf("the secret is in the cache folder: %s", p)
			}
		}
		return nil
	})

	busyboxContext(t, ctxDir, "FROM scratch\nCOPY busybox /bin/busybox\nRUN --mount=type=tmpfs,target=/workspace [\"/bin/busybox\", \"true\"]\n")
	r = runInPod(t, ws, false, append(args, "--output", "oci:/workspace/refused")...)
	mustExit(t, r, 2) // this Dockerfile cannot be built in this pod
	if !strings.Contains(r.output(), "Dockerfile:3") || !strings.Contains(r.output(), "keeps /workspace") {
		t.Errorf("a mount over the workspace volume should be refused, naming the line:\n%s", r)
	}
	if _, err := os.Stat(filepath.Join(ctxDir, "Dockerfile")); err != nil {
		t.Errorf("the workspace lost its files: %v", err)
	}
}

// TestRunContainerLayerStoreTars: in a pod (container isolation, where
// stages are unpacked onto "/", never mounted), the layer store on the
// cache volume keeps the base's uncompressed tars; the next pod's build
// unpacks from them, neither fetching nor decompressing, to the same image.
func TestRunContainerLayerStoreTars(t *testing.T) {
	t.Parallel()
	needBusybox(t)
	reg := harness.NewRegistry(t)
	base := storeBase(t, reg)
	ws := t.TempDir()
	writeContext(t, filepath.Join(ws, "ctx"), map[string]string{"Dockerfile": fmt.Sprintf(
		"FROM %s\nRUN [\"/bin/busybox\", \"sh\", \"-c\", \"echo hi > /hello && /bin/busybox cat /keep/x >> /hello\"]\n", base)})
	build := func(out string) result {
		r := runInPod(t, ws, false, "build", "--progress", "plain", "--isolation", "container", "--insecure-registry", reg.Addr,
			"--context", "/workspace/ctx", "--output", "oci:/workspace/"+out, "--cache-dir", "/workspace/cache", "--reproducible",
			"--digest-file", "/workspace/"+out+".digest")
		mustExit(t, r, 0)
		return r
	}
	r1 := build("out1")
	if !strings.Contains(r1.stderr, `msg="layer store: uncompressed tars" stage=0 read=0 kept=3`) {
		t.Fatalf("the first pod's build should keep the base's 3 tars on the cache volume:\n%s", r1)
	}
	r2 := build("out2")
	if !strings.Contains(r2.stderr, `read=3 kept=0`) {
		t.Fatalf("the second pod's build should unpack from the stored tars:\n%s", r2)
	}
	d1, _ := os.ReadFile(filepath.Join(ws, "out1.digest"))
	d2, _ := os.ReadFile(filepath.Join(ws, "out2.digest"))
	if len(d1) == 0 || string(d1) != string(d2) {
		t.Errorf("digests %q and %q: the stored tars must give the same image", d1, d2)
	}
	if tars, err := layerstore.ListTars(filepath.Join(ws, "cache")); err != nil || len(tars) != 3 {
		t.Errorf("the cache volume holds tars %v (%v), want 3", tars, err)
	}
}
