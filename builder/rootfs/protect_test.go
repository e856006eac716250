package rootfs

import (
	"context"
	"os"
	"path/filepath"
	"testing"
)

// TestProtected: a root that is a live container's "/" keeps its protected
// paths (mount points, the builder's folder) whatever a layer or Clear
// does around them, and loses everything else as usual.
func TestProtected(t *testing.T) {
	top := t.TempDir()
	r, err := Open(top, WithProtected("/var/run/secrets/token", "/etc/hosts", "/kiln"))
	if err != nil {
		t.Fatal(err)
	}
	mustApply(t, r,
		dir("etc"), file("etc/passwd", "root:x:0:0::/root:/bin/sh\n"),
		dir("var"), dir("var/run"), dir("var/run/secrets"), dir("var/lib"), file("var/lib/state", "old"),
		dir("usr"), file("usr/x", "x"),
	)
	// The container's own files, as a runtime would have placed them.
	for p, body := range map[string]string{"etc/hosts": "127.0.0.1 localhost\n", "var/run/secrets/token": "tok", "kiln/kiln": "binary"} {
		if err := os.MkdirAll(filepath.Join(top, filepath.Dir(p)), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(top, p), []byte(body), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	kept := func() {
		t.Helper()
		for p, body := range map[string]string{"etc/hosts": "127.0.0.1 localhost\n", "var/run/secrets/token": "tok", "kiln/kiln": "binary"} {
			if got := readFile(t, filepath.Join(top, p)); got != body {
				t.Errorf("/%s = %q, want %q (protected)", p, got, body)
			}
		}
	}

	stats := mustApply(t, r,
		file("etc/hosts", "evil\n"),   // onto a protected file
		file("kiln/kiln", "evil"),     // into the builder's folder
		symlink("var/run", "/run"),    // would replace a folder holding a protected path
		whiteout("var/lib/.wh.state"), // an ordinary whiteout still works
		file("etc/.wh..wh..opq", ""),  // an opaque /etc keeps /etc/hosts
		file("etc/group", "root:x:0:\n"),
	)
	kept()
	assertAbsent(t, filepath.Join(top, "var/lib/state"))
	assertAbsent(t, filepath.Join(top, "etc/passwd"))
	if readFile(t, filepath.Join(top, "etc/group")) != "root:x:0:\n" {
		t.Error("/etc/group was not written")
	}
	if !hasWarning(stats, "/etc/hosts left alone") || !hasWarning(stats, "/var/run left alone") {
		t.Errorf("warnings %q should name the protected paths left alone", stats.Warnings)
	}

	mustApply(t, r, whiteout("var/.wh.run")) // a whiteout of a folder holding one empties around it
	kept()
	if names, _ := os.ReadDir(filepath.Join(top, "var/run")); len(names) != 1 {
		t.Errorf("/var/run holds %d entries, want only secrets/", len(names))
	}

	if err := r.Clear(context.Background()); err != nil {
		t.Fatal(err)
	}
	kept()
	for _, gone := range []string{"usr", "var/lib", "etc/group"} {
		assertAbsent(t, filepath.Join(top, gone))
	}
}
