package buildcontext

import (
	"archive/tar"
	"bytes"
	"context"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"
)

// TestHostileTars feeds tars that try to write outside the folder they are
// extracted into; none may, whatever Open answers.
func TestHostileTars(t *testing.T) {
	outside := t.TempDir()            // must stay empty
	victim := t.TempDir() + "/passwd" // must keep one link
	if err := os.WriteFile(victim, []byte("host"), 0o644); err != nil {
		t.Fatal(err)
	}
	climb := strings.Repeat("../", 32) + strings.TrimPrefix(outside, "/")
	tests := []struct {
		name    string
		tar     []byte
		want    []string // Walk(".") after a successful Open
		wantErr error
	}{
		{name: "../ name", tar: makeTar(t, reg("../evil", "x")), wantErr: ErrUnsafeArchive},
		{name: "../ hidden in the middle", tar: makeTar(t, reg("a/../../evil", "x")), wantErr: ErrUnsafeArchive},
		{name: "../ in a PAX long name", tar: makeTar(t, reg("a/"+strings.Repeat("b", 200)+"/../../../evil", "x")), wantErr: ErrUnsafeArchive},
		{name: "absolute name lands inside", tar: makeTar(t, reg(outside+"/evil", "x"), reg("/top", "y")), want: walkOf(outside+"/evil", "top")},
		{name: "absolute symlink, then a file through it", tar: makeTar(t, symlinkEntry("link", outside), reg("link/evil", "x")), wantErr: ErrUnsafeArchive},
		{name: "climbing symlink, then a file through it", tar: makeTar(t, symlinkEntry("link", climb), reg("link/evil", "x")), wantErr: ErrUnsafeArchive},
		{name: "symlink inside, then a file through it", tar: makeTar(t, dirEntry("sub/", 0o755), symlinkEntry("link", "sub"), reg("link/f", "x")), wantErr: ErrUnsafeArchive},
		{name: "symlink to a folder, then a folder through it", tar: makeTar(t, symlinkEntry("link", outside), dirEntry("link/d/", 0o755)), wantErr: ErrUnsafeArchive},
		{name: "symlink replaced by a file is not followed", tar: makeTar(t, symlinkEntry("f", outside+"/f"), reg("f", "data")), want: []string{"f"}},
		{name: "hardlink climbing out", tar: makeTar(t, hardlinkEntry("h", "../../../"+victim)), wantErr: ErrUnsafeArchive},
		{name: "hardlink to an absolute host path stays inside", tar: makeTar(t, hardlinkEntry("h", victim)), wantErr: fs.ErrNotExist},
		{name: "hardlink through a symlink to outside", tar: makeTar(t, symlinkEntry("s", filepath.Dir(victim)), hardlinkEntry("h", "s/passwd")), wantErr: ErrUnsafeArchive},
		{name: "hardlink to a symlink links the symlink", tar: makeTar(t, symlinkEntry("s", victim), hardlinkEntry("h", "s")), want: []string{"h -> " + victim, "s -> " + victim}},
		{name: "device nodes and fifos are skipped", tar: makeTar(t, device("dev/null", tar.TypeChar), device("dev/sda", tar.TypeBlock), device("fifo", tar.TypeFifo), reg("ok", "")), want: []string{"ok"}},
		{name: "huge header, short data", tar: truncatedTar(t, 1<<40, "only this"), wantErr: ErrUnsafeArchive},
		{name: "folder replaced by a file and back", tar: makeTar(t, dirEntry("d/", 0o755), reg("d/x", ""), reg("d", "file"), dirEntry("d/", 0o755), reg("d/y", "")), want: []string{"d/", "d/y"}},
		{name: "the root entry is ignored", tar: makeTar(t, dirEntry("./", 0o000), reg("./a", "")), want: []string{"a"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			tmp := t.TempDir()
			c, err := Open(context.Background(), "-", Options{TempDir: tmp, Stdin: bytes.NewReader(tt.tar)})
			assertEmpty(t, outside)
			if fi, _ := os.Stat(victim); fi.Sys().(*syscall.Stat_t).Nlink != 1 {
				t.Errorf("a hardlink to %s was made", victim)
			}
			if !matchErr(err, tt.wantErr) {
				t.Fatalf("Open: %v, want %v", err, tt.wantErr)
			}
			if err != nil {
				assertEmpty(t, tmp) // a failed Open leaves nothing behind
				return
			}
			defer c.Close()
			if got := walkAll(t, c, "."); !slices.Equal(got, tt.want) {
				t.Errorf("Walk = %q, want %q", got, tt.want)
			}
		})
	}
}

// walkOf lists the folders leading to each file, then the file, as Walk does.
func walkOf(paths ...string) []string {
	var out []string
	for _, p := range paths {
		p = strings.TrimPrefix(p, "/")
		parts := strings.Split(p, "/")
		for i := 1; i < len(parts); i++ {
			out = append(out, strings.Join(parts[:i], "/")+"/")
		}
		out = append(out, p)
	}
	slices.Sort(out)
	return slices.Compact(out)
}

func device(name string, typ byte) entry {
	return entry{hdr: tar.Header{Typeflag: typ, Name: name, Mode: 0o666, Devmajor: 1, Devminor: 3}}
}

// truncatedTar claims size bytes of data and carries only body.
func truncatedTar(t *testing.T, size int64, body string) []byte {
	t.Helper()
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	if err := tw.WriteHeader(&tar.Header{Typeflag: tar.TypeReg, Name: "big", Mode: 0o644, Size: size}); err != nil {
		t.Fatal(err)
	}
	if _, err := tw.Write([]byte(body)); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes() // no Close: the data stops short
}

func TestTarKeepsModesAndTimes(t *testing.T) {
	exe := reg("bin/tool", "#!/bin/sh\n")
	exe.hdr.Mode = 0o750
	sticky := dirEntry("shared/", 0o1777)
	c, err := Open(context.Background(), "-", Options{TempDir: t.TempDir(), Stdin: bytes.NewReader(makeTar(t, exe, sticky, reg("shared/f", "")))})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	for rel, want := range map[string]fs.FileMode{"bin/tool": 0o750, "shared": 0o777 | fs.ModeSticky | fs.ModeDir, "bin": 0o755 | fs.ModeDir} {
		fi, err := os.Lstat(filepath.Join(c.Root(), rel))
		if err != nil || fi.Mode() != want {
			t.Errorf("%s: mode %v, %v; want %v", rel, fi.Mode(), err, want)
		}
	}
	fi, err := os.Lstat(filepath.Join(c.Root(), "shared"))
	if err != nil || !fi.ModTime().Equal(sticky.hdr.ModTime) {
		t.Errorf("shared/: mtime %v, want %v from the tar", fi.ModTime(), sticky.hdr.ModTime)
	}
}

func TestTarSymlinksResolveInside(t *testing.T) {
	tr := makeTar(t, symlinkEntry("passwd", "/etc/passwd"), symlinkEntry("up", "../../.."), dirEntry("etc/", 0o755), reg("etc/hostname", "ctx"))
	c, err := Open(context.Background(), "-", Options{TempDir: t.TempDir(), Stdin: bytes.NewReader(tr)})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if _, err := c.Resolve("passwd"); !errorIs(err, fs.ErrNotExist) {
		t.Errorf("Resolve(passwd) = %v, want not found inside the context", err)
	}
	got, err := c.Resolve("up/etc/hostname")
	if err != nil || got != filepath.Join(c.Root(), "etc/hostname") {
		t.Errorf("Resolve(up/etc/hostname) = %s, %v", got, err)
	}
}

func TestTarCancelled(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	tmp := t.TempDir()
	_, err := Open(ctx, "-", Options{TempDir: tmp, Stdin: bytes.NewReader(makeTar(t, reg("a", "")))})
	if !errorIs(err, context.Canceled) {
		t.Errorf("Open with a cancelled context: %v", err)
	}
	assertEmpty(t, tmp)
}
