package test

import (
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	v1 "github.com/google/go-containerregistry/pkg/v1"

	"kiln/test/harness"
)

// hostileMarkers are the host paths a hostile base aims at; names unique to
// kiln's tests, so that a failure never clobbers a real file.
var hostileMarkers = []string{
	"/etc/kiln-hostile-x", "/etc/kiln-hostile-deep", "/etc/kiln-hostile-through", "/etc/kiln-hostile-up",
	"/kiln-hostile-root",
}

// TestBuildHostileBase builds on base images whose layers climb out of the
// root with "../" and absolute names, write files through an absolute
// symlink and a climbing relative one, and hardlink to files outside the
// root. kiln may refuse a base with a clear error or confine every entry
// inside the image; it must never touch the host: no marker file appears,
// the file the hardlinks aim at keeps its content, nothing appears next to
// the work folder, and the work folder is left empty.
func TestBuildHostileBase(t *testing.T) {
	t.Parallel()
	reg := harness.NewRegistry(t)
	for _, m := range hostileMarkers {
		if _, err := os.Lstat(m); err == nil {
			t.Fatalf("%s exists before the test: remove it (an earlier run escaped?)", m)
		}
	}
	// The hardlinks aim at a file of ours outside the work folder, so an
	// escape shows without endangering a file of the host.
	target := filepath.Join(t.TempDir(), "hardlink-target")
	writeContext(t, filepath.Dir(target), map[string]string{filepath.Base(target): "outside\n"})
	up := strings.Repeat("../", 30)
	etc := []lentry{ldir("etc"), lfile("etc/passwd", "root:x:0:0:root:/root:/bin/sh\napp:x:1000:1000::/:/bin/sh\n"),
		lfile("etc/group", "root:x:0:\napp:x:1000:\n")}
	// Every Dockerfile makes kiln unpack the base (COPY into a folder of
	// it, WORKDIR, --chown by name), then copies the whole stage out.
	const copyOut = "\nFROM scratch\nCOPY --from=hostile / /all/\n"
	tests := []struct {
		name       string
		entries    []lentry
		dockerfile string
		check      func(t *testing.T, files map[string]fsEntry) // when kiln confines rather than refuses
	}{
		{
			name: "names climbing out",
			entries: append(slices.Clone(etc), lfile("../../etc/kiln-hostile-x", "dotdot\n"),
				lfile(up+"etc/kiln-hostile-deep", "deep\n"), lfile("/kiln-hostile-root", "absolute name\n")),
			dockerfile: "WORKDIR /etc/wd\nCOPY --chown=app a.txt /etc/owned\n",
			check: func(t *testing.T, files map[string]fsEntry) {
				for _, p := range []string{"/all/etc/kiln-hostile-x", "/all/etc/kiln-hostile-deep", "/all/kiln-hostile-root"} {
					if files[p].Type != "file" {
						t.Errorf("%s: %v, want the climbing entry confined there", p, files[p])
					}
				}
			},
		},
		{
			name: "files through symlinks",
			entries: append(slices.Clone(etc), lsymlink("abs", "/etc"), lfile("abs/kiln-hostile-through", "through\n"),
				lsymlink("climb", up+"etc"), lfile("climb/kiln-hostile-up", "up\n")),
			dockerfile: "COPY a.txt /abs/\nCOPY a.txt /climb/\nWORKDIR /abs/wd\n",
			check: func(t *testing.T, files map[string]fsEntry) {
				for _, p := range []string{"/all/etc/kiln-hostile-through", "/all/etc/kiln-hostile-up", "/all/etc/a.txt", "/all/etc/wd"} {
					if _, ok := files[p]; !ok {
						t.Errorf("no %s: what went through the symlinks should land in the image's /etc", p)
					}
				}
				if e := files["/all/abs"]; e.Type != "symlink" || e.Link != "/etc" {
					t.Errorf("/all/abs: %v, want the symlink kept", e)
				}
			},
		},
		{
			name:       "hardlinks to a file outside",
			entries:    append(slices.Clone(etc), lhardlink("hl", up+strings.TrimPrefix(target, "/")), lhardlink("hl-abs", target)),
			dockerfile: "COPY a.txt /hl\nCOPY a.txt /hl-abs\nWORKDIR /wd\n",
		},
		{
			name:       "hardlink climbing onto a file of the image",
			entries:    append(slices.Clone(etc), lhardlink("hl", up+"etc/passwd")),
			dockerfile: "COPY a.txt /etc/\nWORKDIR /wd\nCOPY a.txt /hl\n",
			check: func(t *testing.T, files map[string]fsEntry) {
				if e := files["/all/etc/passwd"]; e.SHA256 != sha256Hex("root:x:0:0:root:/root:/bin/sh\napp:x:1000:1000::/:/bin/sh\n")[:16] {
					t.Errorf("/all/etc/passwd: %v, want the image's, untouched by COPY a.txt /hl", e)
				}
				if e := files["/all/hl"]; e.SHA256 != sha256Hex("overwritten\n")[:16] {
					t.Errorf("/all/hl: %v, want a.txt", e)
				}
			},
		},
	}
	passwd := hostFileHash(t, "/etc/passwd")
	for i, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			ref := reg.Ref(fmt.Sprintf("hostile/base%d:1", i))
			pushHandImage(t, ref, handImage(t, "linux/amd64", v1.Config{Env: []string{"PATH=/bin"}}, handLayer(t, tc.entries...)))
			// Both ways kiln finds folders while unpacking: openat2 (this
			// kernel's, when it has it) and the walk kernels without it get.
			for _, resolver := range []struct{ name, env string }{{"openat2", ""}, {"walk", "KILN_NO_OPENAT2=1"}} {
				t.Run(resolver.name, func(t *testing.T) {
					buildHostileBase(t, ref, tc.dockerfile+copyOut, resolver.env, target, passwd, tc.check)
				})
			}
		})
	}
}

// buildHostileBase builds dockerfile (FROM ref AS hostile, then copies the
// stage out) with env added, and checks that nothing escaped.
func buildHostileBase(t *testing.T, ref, dockerfile, env, target, passwd string, check func(t *testing.T, files map[string]fsEntry)) {
	ctxDir := t.TempDir()
	writeContext(t, ctxDir, map[string]string{
		"Dockerfile": "FROM " + ref + " AS hostile\n" + dockerfile,
		"a.txt":      "overwritten\n",
	})
	parent := t.TempDir()
	work, tmp := filepath.Join(parent, "work"), filepath.Join(parent, "tmp")
	for _, d := range []string{work, tmp} {
		if err := os.Mkdir(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	out := filepath.Join(t.TempDir(), "oci")
	o := runOpts{env: []string{"TMPDIR=" + tmp}}
	if env != "" {
		o.env = append(o.env, env)
	}
	r := runKilnOpts(t, o, "build", "--context", ctxDir, "--work-dir", work, "--output", "oci:"+out)

	for _, m := range hostileMarkers {
		if _, err := os.Lstat(m); err == nil {
			t.Errorf("ESCAPE: the build created %s on the host", m)
			_ = os.Remove(m)
		}
	}
	if data, err := os.ReadFile(target); err != nil || string(data) != "outside\n" {
		t.Errorf("ESCAPE: the hardlink target outside the root now holds %q (%v)", data, err)
	}
	if got := hostFileHash(t, "/etc/passwd"); got != passwd {
		t.Errorf("ESCAPE: the host's /etc/passwd changed")
	}
	if names := dirNames(t, parent); !slices.Equal(names, []string{"tmp", "work"}) {
		t.Errorf("the work folder's parent holds %v, want only tmp and work", names)
	}
	for _, d := range []string{work, tmp} {
		if names := dirNames(t, d); len(names) > 0 {
			t.Errorf("%s is left holding %v", d, names)
		}
	}

	if r.code != 0 {
		if !strings.Contains(r.stderr, "kiln: Dockerfile:") || strings.Contains(r.stderr, "panic:") {
			t.Errorf("a refused hostile base needs a clear error naming the line, not this:\n%s", r)
		}
		t.Logf("kiln refused the hostile base: %s", lastLines(r.stderr, 1))
		return
	}
	tree, _ := flatten(t, layoutImage(t, out, "image"))
	for _, e := range tree {
		if e.Type == "file" && e.SHA256 == sha256Hex("outside\n")[:16] {
			t.Errorf("the image holds the content of the file outside the root at %s", e.Path)
		}
	}
	if check != nil {
		check(t, byPath(tree))
	}
	t.Logf("kiln confined the hostile base; the image holds:\n%s", treeString(tree))
}

// TestBuildHostileContext: symlinks in the build context that lead out of
// it (to /etc/passwd, to /etc, up with ../) are refused as COPY and ADD
// sources, or resolved inside the context as Docker does, never followed
// to the host; copying the whole context keeps them as symlinks.
func TestBuildHostileContext(t *testing.T) {
	t.Parallel()
	hostPasswd := hostFileHash(t, "/etc/passwd")[:16]
	tests := []struct {
		name        string
		instruction string
		mustFail    bool
	}{
		{name: "symlink to /etc/passwd", instruction: "COPY passwd /stolen", mustFail: true},
		{name: "ADD of a symlink to /etc/passwd", instruction: "ADD passwd /stolen", mustFail: true},
		{name: "through a symlink to /etc", instruction: "COPY etcdir/passwd /stolen", mustFail: true},
		{name: "through a climbing symlink", instruction: "COPY up/etc/passwd /stolen", mustFail: true},
		{name: "glob through a symlink to /etc", instruction: "COPY etcdir/pass* /stolen/"},
		{name: "whole context", instruction: "COPY . /ctx/"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			ctxDir := t.TempDir()
			writeContext(t, ctxDir, map[string]string{"Dockerfile": "FROM scratch\n" + tc.instruction + "\n", "keep.txt": "k\n"})
			for link, to := range map[string]string{"passwd": "/etc/passwd", "etcdir": "/etc", "up": strings.Repeat("../", 30)} {
				if err := os.Symlink(to, filepath.Join(ctxDir, link)); err != nil {
					t.Fatal(err)
				}
			}
			out := filepath.Join(t.TempDir(), "oci")
			r := runKiln(t, "build", "--context", ctxDir, "--output", "oci:"+out)
			if r.code != 0 {
				if !strings.Contains(r.stderr, "Dockerfile:2") {
					t.Errorf("the refusal should name the line, Dockerfile:2:\n%s", r)
				}
				t.Logf("refused: %s", lastLines(r.stderr, 1))
				return
			}
			if tc.mustFail {
				t.Errorf("the source resolves to nothing inside the context, yet the build succeeded:\n%s", r)
			}
			tree, _ := flatten(t, layoutImage(t, out, "image"))
			for _, e := range tree {
				if e.Type == "file" && e.SHA256 == hostPasswd {
					t.Errorf("the image holds the host's /etc/passwd at %s", e.Path)
				}
			}
			if tc.name == "whole context" {
				files := byPath(tree)
				if e := files["/ctx/passwd"]; e.Type != "symlink" || e.Link != "/etc/passwd" {
					t.Errorf("/ctx/passwd is %v, want the context's symlink, as a symlink", e)
				}
				if e := files["/ctx/etcdir"]; e.Type != "symlink" {
					t.Errorf("/ctx/etcdir is %v, want the context's symlink, as a symlink", e)
				}
			}
		})
	}
}

func hostFileHash(t *testing.T, p string) string {
	t.Helper()
	data, err := os.ReadFile(p)
	if err != nil {
		t.Fatal(err)
	}
	return sha256Hex(string(data))
}

func dirNames(t *testing.T, dir string) []string {
	t.Helper()
	entries, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, e := range entries {
		out = append(out, e.Name())
	}
	return out
}

func treeString(tree []fsEntry) string {
	var b strings.Builder
	for _, e := range tree {
		b.WriteString(e.String() + "\n")
	}
	return b.String()
}
