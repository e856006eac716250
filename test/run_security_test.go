package test

import (
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
)

// buildSysprobe builds testdata/sysprobe, a static program that makes the
// system calls busybox has no applet for, into dir.
func buildSysprobe(t *testing.T, dir string) {
	t.Helper()
	cmd := exec.Command("go", "build", "-trimpath", "-o", filepath.Join(dir, "sysprobe"), "./testdata/sysprobe")
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("building sysprobe: %v\n%s", err, out)
	}
}

// hostileSteps are RUN steps an attacker's Dockerfile would try; each prints
// NAME=RESULT lines that the tests below read from kiln's log.
const hostileSteps = `FROM scratch
COPY busybox /bin/busybox
COPY sysprobe /bin/sysprobe
RUN ["/bin/busybox", "--install", "-s", "/bin"]
RUN echo '|/bin/touch /kiln-pwned-core' > /proc/sys/kernel/core_pattern; echo core_pattern=$?
RUN echo 10 > /proc/sys/vm/swappiness 2>/dev/null; echo swappiness=$?
RUN echo h > /proc/sysrq-trigger 2>/dev/null; echo sysrq=$?
RUN grep Seccomp: /proc/self/status | tr -d ' \t' | sed 's/:/=/'
RUN mknod /dz c 1 5 && mknod /dev/dn c 1 3 && echo mknod=ok && sysprobe open:/dz open:/dev/dn open:/dev/zero open:/dev/null
RUN sysprobe keyctl add_key bpf perf_event_open userfaultfd unshare-user unshare-mount clone3 getpid
RUN unshare -Urm true 2>/dev/null; echo unshare_Urm=$?
RUN for p in /proc/kcore /proc/keys /proc/timer_list /proc/sched_debug; do [ -e $p ] || continue; echo "masked:$p=$(cat $p 2>/dev/null | wc -c)"; done
RUN for d in /proc/scsi /proc/acpi /sys/firmware; do [ -d $d ] || continue; echo "masked:$d=$(ls -A $d | wc -l)"; done
RUN grep -E ' /(proc/sys|proc/sysrq-trigger|proc/irq|proc/bus) ' /proc/self/mountinfo | awk '{print "ro:" $5 "=" $6}' | cut -d, -f1
RUN awk '$5 !~ "^/dev/(null|zero|full|random|urandom|tty|pts)$" && $4 != "/null" && $6 !~ /nodev/ {print "devmount:" $5}' /proc/self/mountinfo; echo devmounts=done
`

// TestRunConfinement: a RUN step as root in chroot isolation is confined as
// a Docker container is (runc's default spec, moby's default seccomp
// profile): the host's kernel settings are read-only, device nodes can be
// made (and end up in the layer) but not opened, the syscalls Docker
// refuses are refused, /proc's host-wide files are masked.
func TestRunConfinement(t *testing.T) {
	t.Parallel()
	needBusybox(t)
	if os.Geteuid() != 0 {
		t.Skip("chroot isolation needs root")
	}
	ctxDir, work := t.TempDir(), t.TempDir()
	busyboxContext(t, ctxDir, hostileSteps)
	buildSysprobe(t, ctxDir)
	corePattern, err := os.ReadFile("/proc/sys/kernel/core_pattern")
	if err != nil {
		t.Fatal(err)
	}
	out := filepath.Join(work, "oci")
	r := runKiln(t, "build", "--progress", "plain", "--context", ctxDir, "--work-dir", work,
		"--isolation", "chroot", "--output", "oci:"+out)
	mustExit(t, r, 0)
	if after, _ := os.ReadFile("/proc/sys/kernel/core_pattern"); string(after) != string(corePattern) {
		t.Fatalf("the host's core_pattern changed: %q -> %q", corePattern, after)
	}
	log := r.stderr
	want := []string{
		"core_pattern=1", "Read-only file system", "swappiness=1", "sysrq=1", "Seccomp=2", "mknod=ok",
		"open:/dev/zero=ok", "open:/dev/null=EOF",
		"keyctl=EPERM", "add_key=EPERM", "bpf=EPERM", "perf_event_open=EPERM", "userfaultfd=EPERM",
		"unshare-user=EPERM", "unshare-mount=EPERM", "clone3=ENOSYS", "getpid=ok",
		"ro:/proc/sys=ro", "devmounts=done", "seccomp=default",
	}
	for _, w := range want {
		if !strings.Contains(log, w) {
			t.Errorf("the steps' output lacks %q", w)
		}
	}
	if m := regexp.MustCompile(`unshare_Urm=(\d+)`).FindStringSubmatch(log); m == nil || m[1] == "0" {
		t.Errorf("unshare -Urm should fail in a step: %v", m)
	}
	for _, m := range regexp.MustCompile(`masked:(\S+)=(\d+)`).FindAllStringSubmatch(log, -1) {
		if m[2] != "0" {
			t.Errorf("%s shows %s bytes or entries in a step; it should be masked", m[1], m[2])
		}
	}
	if !strings.Contains(log, "masked:/proc/keys=0") {
		t.Errorf("/proc/keys should be listed as masked")
	}
	// A node on a nodev mount cannot be opened: the kernel says EACCES
	// (Docker's device cgroup says EPERM); the node /dev/zero is made of
	// opens on the host, so the refusal is the mount's, not the machine's.
	for _, node := range []string{"/dz", "/dev/dn"} {
		if m := regexp.MustCompile(`open:` + node + `=(\w+)`).FindStringSubmatch(log); m == nil || (m[1] != "EACCES" && m[1] != "EPERM") {
			t.Errorf("opening the device node %s the step made: %v, want EACCES or EPERM", node, m)
		}
	}
	if m := regexp.MustCompile(`msg="RUN output" .*devmount:\S+`).FindAllString(log, -1); len(m) > 0 {
		t.Errorf("mounts without nodev in the step: %v", m)
	}
	if t.Failed() {
		t.Logf("kiln's log:\n%s", log)
	}
	// The node the step made is in its layer, as a device.
	tree, _ := flatten(t, layoutImage(t, out, "image"))
	if e, ok := byPath(tree)["/dz"]; !ok || e.Type != "char" {
		t.Errorf("/dz in the image: %v (present: %v), want the char device the step made", e, ok)
	}
}

// TestRunConfinementEscapes: --security-opt seccomp=unconfined turns the
// filter off and says so; systempaths=unconfined unmasks /proc;
// --pids-limit stops a fork bomb; --ulimit reaches the step.
func TestRunConfinementEscapes(t *testing.T) {
	t.Parallel()
	needBusybox(t)
	if os.Geteuid() != 0 {
		t.Skip("chroot isolation needs root")
	}
	ctxDir, work := t.TempDir(), t.TempDir()
	busyboxContext(t, ctxDir, `FROM scratch
COPY busybox /bin/busybox
COPY sysprobe /bin/sysprobe
RUN ["/bin/busybox", "--install", "-s", "/bin"]
RUN grep Seccomp: /proc/self/status | tr -d ' \t' | sed 's/:/=/'; sysprobe keyctl
RUN echo "keys_lines=$(wc -l < /proc/keys)"
RUN ulimit -n | sed 's/^/nofile=/'
`)
	buildSysprobe(t, ctxDir)
	build := func(extra ...string) result {
		args := append([]string{"build", "--progress", "plain", "--context", ctxDir, "--work-dir", work,
			"--isolation", "chroot", "--output", "oci:" + filepath.Join(t.TempDir(), "oci")}, extra...)
		return runKiln(t, args...)
	}
	r := build("--security-opt", "seccomp=unconfined", "--security-opt", "systempaths=unconfined", "--ulimit", "nofile=123:456")
	mustExit(t, r, 0)
	for _, w := range []string{"Seccomp=0", "keyctl=ok", "nofile=123", "no seccomp filter", "seccomp=unconfined", "unmasked"} {
		if !strings.Contains(r.stderr, w) {
			t.Errorf("with the escape hatches, the log lacks %q:\n%s", w, r)
		}
	}
	if strings.Contains(r.stderr, "keys_lines=0") {
		t.Errorf("systempaths=unconfined should show the real /proc/keys:\n%s", r)
	}

	r = build("--security-opt", "seccomp")
	mustExit(t, r, 2)
	r = build("--ulimit", "nofile=9:1")
	mustExit(t, r, 2)
	r = build("--pids-limit", "-2")
	mustExit(t, r, 2)

	// A fork bomb stops at the pids limit; the step fails, the host lives.
	busyboxContext(t, ctxDir, `FROM scratch
COPY busybox /bin/busybox
RUN ["/bin/busybox", "--install", "-s", "/bin"]
RUN sh -c 'for i in $(seq 80); do sleep 5 & done; wait'; echo forkbomb=$?
`)
	r = build("--pids-limit", "30")
	mustExit(t, r, 0)
	if strings.Contains(r.stderr, "no pids cgroup can be made") {
		t.Skipf("no pids cgroup on this machine:\n%s", r)
	}
	if !strings.Contains(r.stderr, "pids_limit=30") || !strings.Contains(r.stderr, "can't fork") || strings.Contains(r.stderr, "forkbomb=0") {
		t.Errorf("80 processes under --pids-limit 30 should fail to fork:\n%s", r)
	}
}
