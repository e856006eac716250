package test

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	v1 "github.com/google/go-containerregistry/pkg/v1"
)

// This file makes the base images of the RUN corpus: real ones, Debian's
// busybox-static for linux/amd64 (the host's /bin/busybox) and linux/arm64
// (the busybox-static:arm64 package .ci/deps.sh fetches), with users, a
// sticky /tmp and a few files for the steps to change.

// arm64BusyboxDeb is where .ci/deps.sh keeps busybox-static:arm64.
func arm64BusyboxDeb() string {
	dir := os.Getenv("KILN_TEST_CACHE")
	if dir == "" {
		dir = "/var/cache/kiln-test"
	}
	return filepath.Join(dir, "busybox-static_arm64.deb")
}

// busyboxApplets lists the applets of the host's busybox, the same
// Debian release as the arm64 package: both images get the same links.
func busyboxApplets(t *testing.T, busybox string) []string {
	t.Helper()
	out, err := exec.Command(busybox, "--list").Output()
	if err != nil {
		t.Fatalf("%s --list: %v", busybox, err)
	}
	var applets []string
	for _, a := range strings.Fields(string(out)) {
		if a != "busybox" && !strings.Contains(a, "/") {
			applets = append(applets, a)
		}
	}
	return applets
}

// arm64Busybox extracts /bin/busybox from the arm64 package, or returns ""
// when .ci/deps.sh has not fetched it.
func arm64Busybox(t *testing.T) string {
	t.Helper()
	deb := arm64BusyboxDeb()
	if _, err := os.Stat(deb); err != nil {
		return ""
	}
	dir := t.TempDir()
	if out, err := exec.Command("dpkg-deb", "-x", deb, dir).CombinedOutput(); err != nil {
		t.Fatalf("dpkg-deb -x %s: %v\n%s", deb, err, out)
	}
	for _, p := range []string{"bin/busybox", "usr/bin/busybox"} {
		if _, err := os.Stat(filepath.Join(dir, p)); err == nil {
			return filepath.Join(dir, p)
		}
	}
	t.Fatalf("%s holds no busybox binary", deb)
	return ""
}

// busyboxLayer is the one layer of a busybox base image: the binary, an
// applet symlink for each applet, users root and app (1000:1000), and
// files the corpus changes (/etc/motd, /opt/base with a hardlinked pair).
func busyboxLayer(t *testing.T, binary []byte, applets []string) v1.Layer {
	t.Helper()
	exe := lfile("bin/busybox", string(binary))
	exe.mode = 0o755
	entries := []lentry{ldir("bin"), exe}
	for _, a := range applets {
		entries = append(entries, lsymlink("bin/"+a, "busybox"))
	}
	tmp := ldir("tmp")
	tmp.mode = 0o1777
	rootHome := ldir("root")
	rootHome.mode = 0o700
	entries = append(entries,
		ldir("dev"), ldir("proc"), ldir("sys"), ldir("run"), tmp, rootHome,
		ldir("etc"),
		lfile("etc/passwd", "root:x:0:0:root:/root:/bin/sh\napp:x:1000:1000:app:/home/app:/bin/sh\nnobody:x:65534:65534:nobody:/nonexistent:/bin/false\n"),
		lfile("etc/group", "root:x:0:\napp:x:1000:\nnogroup:x:65534:\n"),
		lfile("etc/motd", "base motd\n"),
		ldir("home"), lowned(ldir("home/app"), 1000, 1000), lowned(lfile("home/app/.profile", "export APP=1\n"), 1000, 1000),
		ldir("opt"), ldir("opt/base"), lfile("opt/base/keep", "keep\n"), lfile("opt/base/gone", "gone\n"),
		ldir("opt/base/sub"), lfile("opt/base/sub/x", "x\n"),
		lfile("opt/base/linked-a", "linked\n"), lhardlink("opt/base/linked-b", "opt/base/linked-a"),
		ldir("usr"), ldir("usr/bin"), ldir("usr/local"), ldir("usr/local/bin"),
	)
	return handLayer(t, entries...)
}

// busyboxConfig is the config of the busybox base images.
func busyboxConfig() v1.Config {
	return v1.Config{
		Env: []string{"PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"},
		Cmd: []string{"sh"},
	}
}

// pushBusyboxBase pushes library/busybox:1 to addr: an index of linux/amd64
// and, when .ci/deps.sh fetched the package, linux/arm64. It returns the
// reference and whether arm64 is in it.
func pushBusyboxBase(t *testing.T, addr string) (string, bool) {
	t.Helper()
	host := needBusybox(t)
	applets := busyboxApplets(t, host)
	amd64, err := os.ReadFile(host)
	if err != nil {
		t.Fatal(err)
	}
	imgs := []v1.Image{handImage(t, "linux/amd64", busyboxConfig(), busyboxLayer(t, amd64, applets))}
	if p := arm64Busybox(t); p != "" {
		arm64, err := os.ReadFile(p)
		if err != nil {
			t.Fatal(err)
		}
		imgs = append(imgs, handImage(t, "linux/arm64", busyboxConfig(), busyboxLayer(t, arm64, applets)))
	}
	ref := addr + "/library/busybox:1"
	pushHandIndex(t, ref, imgs...)
	return ref, len(imgs) == 2
}
