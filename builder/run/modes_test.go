package run

import (
	"bytes"
	"context"
	"debug/elf"
	"errors"
	"io"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

// Environment of the test binary re-run by TestRootless and TestContainer.
const (
	envRootlessRoot = "KILN_TEST_ROOTLESS_ROOT"
	envInPod        = "KILN_TEST_IN_POD"
)

func TestDetect(t *testing.T) {
	iso, why := Detect()
	if why == "" {
		t.Error("Detect gave no reason")
	}
	t.Logf("Detect: %s (%s)", iso, why)
	switch {
	case os.Getenv(envInPod) != "":
		// checked by TestContainer
	case os.Geteuid() != 0 && iso == Chroot:
		t.Errorf("Detect = chroot for uid %d", os.Geteuid())
	case os.Geteuid() == 0 && iso == Rootless:
		t.Error("Detect = rootless for root")
	}
}

// TestRootless re-runs this test binary as nobody, which runs the rootless
// cases on a root it owns: once with the single-id mapping, once with a
// subordinate range given through newuidmap/newgidmap (with /etc/subuid and
// /etc/subgid bound over in a private mount namespace).
func TestRootless(t *testing.T) {
	if os.Getenv(envRootlessRoot) != "" || os.Geteuid() != 0 {
		rootlessCases(t, os.Getenv(envRootlessRoot))
		return
	}
	for _, full := range []bool{false, true} {
		name := "single id"
		if full {
			name = "subordinate range"
		}
		t.Run(name, func(t *testing.T) { runAsNobody(t, full) })
	}
}

// subStart is the first host id of the subordinate range given to nobody.
const subStart = 200000

func runAsNobody(t *testing.T, fullRange bool) {
	setpriv, err := exec.LookPath("setpriv")
	if err != nil {
		t.Skip("setpriv not found: cannot become nobody")
	}
	dir, err := os.MkdirTemp("", "kiln-rootless-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	if err := os.Chmod(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	bin := filepath.Join(dir, "run.test")
	copyFile(t, os.Args[0], bin, 0o755)
	root := filepath.Join(dir, "root")
	mustMkdir(t, root)
	populateRoot(t, root)
	mustMkdir(t, filepath.Join(root, "home"))
	chownTree(t, root, 65534, 65534)
	mustMkdir(t, filepath.Join(dir, "src"))
	writeFile(t, filepath.Join(dir, "src/data"), "shared\n")

	args := []string{setpriv, "--reuid=65534", "--regid=65534", "--clear-groups", "--",
		bin, "-test.run=^TestRootless$", "-test.v", "-test.count=1"}
	if fullRange {
		unshare, err := exec.LookPath("unshare")
		if err != nil {
			t.Skip("unshare not found: cannot give nobody a subordinate range")
		}
		for _, p := range []string{"/usr/bin/newuidmap", "/usr/bin/newgidmap", "/etc/subuid", "/etc/subgid"} {
			if _, err := os.Stat(p); err != nil {
				t.Skipf("%s missing: %v", p, err)
			}
		}
		sub := filepath.Join(dir, "subid")
		writeFile(t, sub, "nobody:200000:65536\n")
		script := `mount --bind "$1" /etc/subuid && mount --bind "$1" /etc/subgid && shift && exec "$@"`
		args = append([]string{unshare, "--mount", "--propagation", "private", "--", "/bin/sh", "-c", script, "sh", sub}, args...)
	}
	cmd := exec.Command(args[0], args[1:]...)
	cmd.Env = []string{envRootlessRoot + "=" + root, "PATH=/usr/sbin:/usr/bin:/sbin:/bin", "TMPDIR=" + dir}
	cmd.Dir = dir
	out, err := cmd.CombinedOutput()
	t.Logf("as nobody:\n%s", out)
	if err != nil {
		t.Fatalf("rootless cases failed: %v", err)
	}
	if strings.Contains(string(out), "--- SKIP: TestRootless") {
		t.Skip("rootless cases skipped as nobody")
	}
	if !fullRange {
		return
	}
	fi, err := os.Stat(filepath.Join(root, "home/owned"))
	if err != nil {
		t.Fatalf("file chowned in the step: %v", err)
	}
	if st := fi.Sys().(*syscall.Stat_t); st.Uid != subStart+999 || st.Gid != subStart+49 {
		t.Errorf("host owner = %d:%d, want %d:%d", st.Uid, st.Gid, subStart+999, subStart+49)
	}
}

func rootlessCases(t *testing.T, root string) {
	if iso, why := Detect(); iso != Rootless {
		t.Skipf("rootless isolation unavailable: %s", why)
	}
	if root == "" {
		root = makeRoot(t)
		mustMkdir(t, filepath.Join(root, "home"))
	}
	src := filepath.Join(filepath.Dir(root), "src")
	if _, err := os.Stat(src); err != nil {
		src = t.TempDir()
		writeFile(t, filepath.Join(src, "data"), "shared\n")
	}
	tests := []struct {
		name    string
		spec    Spec
		want    string
		wantErr error
		code    int
	}{
		{name: "PID 1 and root inside", spec: Spec{Args: sh("echo $$; id -u; id -g")}, want: "1\n0\n0\n"},
		{name: "fresh proc", spec: Spec{Args: sh("test -d /proc/self/fd && echo yes")}, want: "yes\n"},
		{name: "dev null writable", spec: Spec{Args: sh("echo x >/dev/null && echo ok")}, want: "ok\n"},
		{name: "hostname", spec: Spec{Args: sh("hostname"), Hostname: "rootless"}, want: "rootless\n"},
		{name: "exit code", spec: Spec{Args: sh("exit 3")}, wantErr: &ExitError{}, code: 3},
		{name: "network none", spec: Spec{Args: sh("grep : /proc/net/dev | cut -d: -f1 | tr -d ' '"), Network: NetworkNone},
			want: "lo\n"},
		{name: "writes land in the root", spec: Spec{Args: sh("echo hi > /home/f && cat /home/f"), Dir: "/home"}, want: "hi\n"},
		{name: "read-only bind", spec: Spec{Args: sh("cat /mnt/data; touch /mnt/x"),
			Mounts: []Mount{{Source: src, Target: "/mnt", ReadOnly: true}}}, want: "shared\n", wantErr: &ExitError{}, code: 1},
		{name: "sys read-only", spec: Spec{Args: sh("touch /sys/x")}, wantErr: &ExitError{}},
	}
	if fullRange() {
		tests = append(tests, []struct {
			name    string
			spec    Spec
			want    string
			wantErr error
			code    int
		}{
			{name: "another user in the range", spec: Spec{Args: sh("id -u; id -g; id -G"), UID: 1000, GID: 1000, Groups: []uint32{50}},
				want: "1000\n1000\n1000 50\n"},
			{name: "ownership in the range", spec: Spec{Args: sh("touch /home/owned && chown 1000:50 /home/owned && stat -c %u:%g /home/owned")},
				want: "1000:50\n"},
			{name: "beyond the range", spec: Spec{Args: sh("true"), UID: 70000}, wantErr: ErrUnmappedID},
		}...)
	} else {
		tests = append(tests, struct {
			name    string
			spec    Spec
			want    string
			wantErr error
			code    int
		}{name: "another uid needs a mapped range", spec: Spec{Args: sh("id -u"), UID: 1000, GID: 1000}, wantErr: ErrUnmappedID})
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var stdout, stderr bytes.Buffer
			spec := tt.spec
			spec.Root, spec.Stdout, spec.Stderr = root, &stdout, &stderr
			ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
			defer cancel()
			err := Run(ctx, Rootless, spec)
			checkErr(t, err, tt.wantErr, tt.code, stderr.String())
			if tt.want != "" && stdout.String() != tt.want {
				t.Errorf("stdout = %q, want %q (stderr %q)", stdout.String(), tt.want, stderr.String())
			}
		})
	}
	if _, err := os.Stat(filepath.Join(root, "home/f")); err != nil {
		t.Errorf("file written in the step is not in the root: %v", err)
	}
	t.Run("cancel kills the tree", func(t *testing.T) {
		ctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
		defer cancel()
		start := time.Now()
		err := Run(ctx, Rootless, Spec{Root: root, Args: sh("sleep 100 & sleep 101; wait")})
		if !errors.Is(err, context.DeadlineExceeded) {
			t.Errorf("Run error = %v, want a deadline", err)
		}
		if d := time.Since(start); d > 3*time.Second {
			t.Errorf("Run returned after %v", d)
		}
	})
	t.Run("single id is logged", func(t *testing.T) {
		var logs bytes.Buffer
		spec := Spec{Root: root, Args: sh("true"), Log: slog.New(slog.NewTextHandler(&logs, nil))}
		if err := Run(context.Background(), Rootless, spec); err != nil {
			t.Fatal(err)
		}
		if got := strings.Contains(logs.String(), "single-id"); got == fullRange() {
			t.Errorf("logs = %q; single-id warning wanted: %v", logs.String(), !fullRange())
		}
	})
}

func fullRange() bool {
	_, ok := subRange("/etc/subuid", os.Getuid(), userName(os.Getuid()))
	return ok
}

// TestContainer runs this test binary as the only program of a root made of
// busybox and the binary (what a pod looks like): there, Detect must pick
// container mode, which runs commands with that root as "/".
func TestContainer(t *testing.T) {
	if os.Getenv(envInPod) != "" {
		containerCases(t)
		return
	}
	requireChroot(t)
	if !static(t, os.Args[0]) {
		t.Skip("the test binary is dynamically linked (-race?): the pod root holds no libc")
	}
	root := makeRoot(t)
	copyFile(t, os.Args[0], filepath.Join(root, "kiln.test"), 0o755)
	writeFile(t, filepath.Join(root, ".dockerenv"), "")
	var out bytes.Buffer
	err := Run(context.Background(), Chroot, Spec{
		Root: root, Args: []string{"/kiln.test", "-test.run=^(TestContainer|TestDetect)$", "-test.v", "-test.count=1"},
		Env: []string{envInPod + "=1", "PATH=/bin"}, Dir: "/tmp", Stdout: &out, Stderr: &out,
	})
	t.Logf("inside the pod:\n%s", out.String())
	if err != nil {
		t.Fatalf("container cases failed: %v", err)
	}
	if !strings.Contains(out.String(), "--- PASS: TestContainer") {
		t.Error("container cases did not pass")
	}
}

func containerCases(t *testing.T) {
	if iso, why := Detect(); iso != Container {
		t.Fatalf("Detect in a pod without privileges = %s (%s), want container", iso, why)
	}
	mustMkdir(t, "/work")
	tests := []struct {
		name    string
		spec    Spec
		want    string
		wantErr error
		code    int
	}{
		{name: "runs in /", spec: Spec{Args: sh("pwd; echo $FOO"), Env: []string{"FOO=bar"}, Dir: "/work"}, want: "/work\nbar\n"},
		{name: "as another user", spec: Spec{Args: sh("id -u; id -g; id -G"), UID: 1000, GID: 1000, Groups: []uint32{50}},
			want: "1000\n1000\n1000 50\n"},
		{name: "exit code", spec: Spec{Args: sh("echo last; exit 7")}, wantErr: &ExitError{}, code: 7},
		{name: "missing dir", spec: Spec{Args: sh("true"), Dir: "/nope"}, wantErr: ErrSetup},
		{name: "unknown command", spec: Spec{Args: []string{"nope"}, Env: []string{"PATH=/bin"}}, wantErr: ErrSetup},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var out bytes.Buffer
			spec := tt.spec
			spec.Root, spec.Stdout = "/", &out
			err := Run(context.Background(), Container, spec)
			checkErr(t, err, tt.wantErr, tt.code, "")
			if tt.want != "" && out.String() != tt.want {
				t.Errorf("stdout = %q, want %q", out.String(), tt.want)
			}
			var exit *ExitError
			if errors.As(err, &exit) && exit.Tail != "last" {
				t.Errorf("tail = %q, want %q", exit.Tail, "last")
			}
		})
	}
	t.Run("refused without a container mark", func(t *testing.T) {
		mustRemove(t, "/.dockerenv")
		defer writeFile(t, "/.dockerenv", "")
		err := Run(context.Background(), Container, Spec{Root: "/", Args: []string{"/bin/true"}})
		if !errors.Is(err, ErrNotInContainer) {
			t.Errorf("Run error = %v, want ErrNotInContainer", err)
		}
		if err := Run(context.Background(), Container, Spec{Root: "/", Args: []string{"/bin/true"}, Force: true}); err != nil {
			t.Errorf("Run with Force: %v", err)
		}
	})
	t.Run("cancel kills the process group", func(t *testing.T) {
		ctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
		defer cancel()
		start := time.Now()
		err := Run(ctx, Container, Spec{Root: "/", Args: sh("sleep 100 & sleep 101; wait")})
		if !errors.Is(err, context.DeadlineExceeded) {
			t.Errorf("Run error = %v, want a deadline", err)
		}
		if d := time.Since(start); d > 3*time.Second {
			t.Errorf("Run returned after %v", d)
		}
	})
}

func copyFile(t *testing.T, src, dst string, mode os.FileMode) {
	t.Helper()
	in, err := os.Open(src)
	if err != nil {
		t.Fatal(err)
	}
	defer in.Close()
	out, err := os.OpenFile(dst, os.O_CREATE|os.O_WRONLY|os.O_TRUNC, mode)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := io.Copy(out, in); err != nil {
		t.Fatal(err)
	}
	if err := out.Close(); err != nil {
		t.Fatal(err)
	}
}

func chownTree(t *testing.T, root string, uid, gid int) {
	t.Helper()
	err := filepath.Walk(root, func(p string, _ os.FileInfo, err error) error {
		if err != nil {
			return err
		}
		return os.Lchown(p, uid, gid)
	})
	if err != nil {
		t.Fatal(err)
	}
}

// static reports whether the program at p needs no dynamic loader.
func static(t *testing.T, p string) bool {
	t.Helper()
	f, err := elf.Open(p)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	for _, prog := range f.Progs {
		if prog.Type == elf.PT_INTERP {
			return false
		}
	}
	return true
}
