package run

import (
	"errors"
	"fmt"
	"maps"
	"os"
	"path/filepath"
	"testing"
	"time"
)

// TestPlaceMounts: container isolation's stand-in for mounts, on a root in
// a temp folder. A cache becomes a link that takes the step's writes, a
// secret and a bind become copies that do not pass writes back, what the
// image had at a target is hidden for the step and back after it, and the
// root is left exactly as it was, folder times included.
func TestPlaceMounts(t *testing.T) {
	root, host := t.TempDir(), t.TempDir()
	mustMkdir(t, filepath.Join(root, "var/lib/thing"))
	writeFile(t, filepath.Join(root, "var/lib/thing/state"), "image\n")
	mustMkdir(t, filepath.Join(root, "etc"))
	if err := os.Symlink("/etc", filepath.Join(root, "evil")); err != nil {
		t.Fatal(err)
	}
	cache := filepath.Join(host, "cache")
	mustMkdir(t, cache)
	secret := filepath.Join(host, "secret")
	writeFile(t, secret, "s3cr3t")
	if err := os.Chmod(secret, 0o400); err != nil {
		t.Fatal(err)
	}
	src := filepath.Join(host, "src")
	mustMkdir(t, src)
	writeFile(t, filepath.Join(src, "hello"), "from the context\n")
	old := time.Unix(1_000_000, 0)
	for _, d := range []string{root, filepath.Join(root, "var/lib"), filepath.Join(root, "etc")} {
		if err := os.Chtimes(d, old, old); err != nil {
			t.Fatal(err)
		}
	}
	before := treeOf(t, root)

	undo, err := placeMounts(t.Context(), root, []Mount{
		{Source: cache, Target: "/var/lib/thing", Shared: true},
		{Source: secret, Target: "/run/secrets/tok", ReadOnly: true},
		{Source: src, Target: "/src", ReadOnly: true},
		{Source: src, Target: "/evil/conf"}, // an absolute link in the image stays inside the root
	}, []string{"/kept"})
	if err != nil {
		t.Fatal(err)
	}
	if l, err := os.Readlink(filepath.Join(root, "var/lib/thing")); err != nil || l != cache {
		t.Errorf("cache target: link %q, %v; want a link to %s", l, err, cache)
	}
	if _, err := os.Stat(filepath.Join(root, "var/lib/thing/state")); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("the image's folder shows through the cache mount: %v", err)
	}
	writeFile(t, filepath.Join(root, "var/lib/thing/count"), "1\n")
	fi, err := os.Stat(filepath.Join(root, "run/secrets/tok"))
	if err != nil || fi.Mode().Perm() != 0o400 {
		t.Errorf("secret: %v, %v; want mode 0400", fi, err)
	}
	if b, _ := os.ReadFile(filepath.Join(root, "run/secrets/tok")); string(b) != "s3cr3t" {
		t.Errorf("secret holds %q", b)
	}
	writeFile(t, filepath.Join(root, "src/hello"), "scribbled\n")
	if _, err := os.Stat(filepath.Join(root, "etc/conf/hello")); err != nil {
		t.Errorf("/evil/conf should land at the root's /etc/conf: %v", err)
	}
	if _, err := os.Lstat("/etc/conf/hello"); err == nil {
		t.Fatal("a mount target followed an absolute link out of the root")
	}

	if err := undo(); err != nil {
		t.Fatal(err)
	}
	if after := treeOf(t, root); !maps.Equal(before, after) {
		t.Errorf("the root changed:\nbefore %v\nafter  %v", before, after)
	}
	if b, _ := os.ReadFile(filepath.Join(cache, "count")); string(b) != "1\n" {
		t.Errorf("the cache did not keep the step's write: %q", b)
	}
	if b, _ := os.ReadFile(filepath.Join(src, "hello")); string(b) != "from the context\n" {
		t.Errorf("a write to a bind copy reached its source: %q", b)
	}
}

// TestPlaceMountsRefused: nested targets (in either order), a target that
// is the root, or that covers or leads into a kept path, even through a
// symlink, are refused before anything is placed.
func TestPlaceMountsRefused(t *testing.T) {
	for name, mounts := range map[string][]Mount{
		"nested":              {{Source: "/dev/null", Target: "/a/b"}, {Source: "/dev/null", Target: "/a/b/c"}},
		"nested, inner first": {{Source: "/dev/null", Target: "/a/b/c"}, {Source: "/dev/null", Target: "/a/b", Shared: true}},
		"kept path":           {{Source: "/dev/null", Target: "/x"}, {Source: "/dev/null", Target: "/kept/sub"}},
		"kept via link":       {{Source: "/dev/null", Target: "/x"}, {Source: "/dev/null", Target: "/link/y"}},
		"over a kept path":    {{Source: "/dev/null", Target: "/"}, {Source: "/dev/null", Target: "/x"}},
		"root":                {{Source: "/dev/null", Target: "/x"}, {Source: "/dev/null", Target: "/.."}},
	} {
		t.Run(name, func(t *testing.T) {
			root := t.TempDir()
			if err := os.Symlink("/kept/vol", filepath.Join(root, "link")); err != nil {
				t.Fatal(err)
			}
			old := time.Unix(1_000_000, 0)
			if err := os.Chtimes(root, old, old); err != nil {
				t.Fatal(err)
			}
			before := treeOf(t, root)
			undo, err := placeMounts(t.Context(), root, mounts, []string{"/kept", "/deep/vol"})
			if !errors.Is(err, ErrBadSpec) {
				t.Errorf("err = %v, want ErrBadSpec", err)
			}
			if err := undo(); err != nil {
				t.Fatal(err)
			}
			if after := treeOf(t, root); !maps.Equal(before, after) {
				t.Errorf("the root changed:\nbefore %v\nafter  %v", before, after)
			}
		})
	}
}

// treeOf maps each path under root to its mode, size and mtime.
func treeOf(t *testing.T, root string) map[string]string {
	t.Helper()
	out := map[string]string{}
	err := filepath.Walk(root, func(p string, fi os.FileInfo, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(root, p)
		out[rel] = fmt.Sprintf("%v %d %s", fi.Mode(), fi.Size(), fi.ModTime().UTC().Format(time.RFC3339Nano))
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return out
}
