package buildcontext

import (
	"bytes"
	"context"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

func TestOpenSources(t *testing.T) {
	files := makeTar(t, reg("Dockerfile", "FROM scratch\n"), dirEntry("app/", 0o755), reg("app/main.go", "package main\n"))
	want := []string{"Dockerfile", "app/", "app/main.go"}
	long := strings.Repeat("n", 150) // needs a PAX header
	src := t.TempDir()
	writeTree(t, filepath.Join(src, "dir"), tree{"Dockerfile": "FROM scratch\n", "app/main.go": "package main\n"})
	tests := []struct {
		name    string
		source  string
		stdin   []byte
		want    []string
		wantErr error
	}{
		{name: "directory", source: filepath.Join(src, "dir"), want: want},
		{name: "tar", source: writeFile(t, src, "ctx.tar", files), want: want},
		{name: "tar.gz", source: writeFile(t, src, "ctx.tar.gz", gzipped(t, files)), want: want},
		{name: "tgz", source: writeFile(t, src, "ctx.tgz", gzipped(t, files)), want: want},
		{name: "gzip without extension", source: writeFile(t, src, "ctx", gzipped(t, files)), want: want},
		{name: "gzip named .tar", source: writeFile(t, src, "lies.tar", gzipped(t, files)), want: want},
		{name: "stdin tar", source: "-", stdin: files, want: want},
		{name: "stdin tar.gz", source: "-", stdin: gzipped(t, files), want: want},
		{name: "stdin tar starting with a PAX header", source: "-", stdin: makeTar(t, reg("Dockerfile", "FROM scratch\n"), reg(long, "")), want: []string{"Dockerfile", long}},
		{name: "stdin lone Dockerfile", source: "-", stdin: []byte("FROM scratch\n"), want: []string{"Dockerfile"}},
		{name: "stdin xz", source: "-", stdin: []byte{0xfd, '7', 'z', 'X', 'Z', 0, 1, 2}, wantErr: ErrUnsupportedSource},
		{name: "missing path", source: filepath.Join(src, "nope"), wantErr: os.ErrNotExist},
		{name: "file that is not a tar", source: writeFile(t, src, "junk.tar", bytes.Repeat([]byte("garbage!"), 200)), wantErr: errAny},
		{name: "truncated gzip", source: writeFile(t, src, "cut.tgz", gzipped(t, files)[:40]), wantErr: errAny},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			opts := Options{TempDir: t.TempDir(), Stdin: bytes.NewReader(tt.stdin)}
			c, err := Open(context.Background(), tt.source, opts)
			if !matchErr(err, tt.wantErr) {
				t.Fatalf("Open: err = %v, want %v", err, tt.wantErr)
			}
			if err != nil {
				assertEmpty(t, opts.TempDir)
				return
			}
			defer c.Close()
			if got := walkAll(t, c, "."); !slices.Equal(got, tt.want) {
				t.Errorf("Walk = %q, want %q", got, tt.want)
			}
			if df, err := c.Dockerfile(); err != nil || string(df) != "FROM scratch\n" {
				t.Errorf("Dockerfile() = %q, %v", df, err)
			}
		})
	}
}

// errAny stands for "some error" in tables.
var errAny = errors.New("any error")

func matchErr(err, want error) bool {
	switch {
	case want == nil:
		return err == nil
	case want == errAny:
		return err != nil
	}
	return errors.Is(err, want)
}

func TestOpenBzip2(t *testing.T) {
	if _, err := exec.LookPath("bzip2"); err != nil {
		t.Skip("bzip2 not installed")
	}
	cmd := exec.Command("bzip2", "-c")
	cmd.Stdin = bytes.NewReader(makeTar(t, reg("Dockerfile", "FROM scratch\n")))
	out, err := cmd.Output()
	if err != nil {
		t.Fatal(err)
	}
	c, err := Open(context.Background(), writeFile(t, t.TempDir(), "ctx", out), Options{TempDir: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if got := walkAll(t, c, "."); !slices.Equal(got, []string{"Dockerfile"}) {
		t.Errorf("Walk = %q", got)
	}
}

func TestOpenStdinNeedsReader(t *testing.T) {
	if _, err := Open(context.Background(), "-", Options{}); err == nil {
		t.Fatal("Open(-) without Stdin: want error")
	}
}

func TestCloseRemovesMaterialised(t *testing.T) {
	tmp := t.TempDir()
	files := makeTar(t, dirEntry("ro/", 0o555), reg("ro/f", "x"))
	c, err := Open(context.Background(), "-", Options{TempDir: tmp, Stdin: bytes.NewReader(files)})
	if err != nil {
		t.Fatal(err)
	}
	fi, err := os.Stat(filepath.Join(c.Root(), "ro"))
	if err != nil || fi.Mode().Perm() != 0o555 {
		t.Errorf("ro/ mode = %v, %v; want 0555 from the tar", fi.Mode(), err)
	}
	for range 2 {
		if err := c.Close(); err != nil {
			t.Fatalf("Close: %v", err)
		}
	}
	assertEmpty(t, tmp)
}

func TestCloseKeepsDirectory(t *testing.T) {
	dir := t.TempDir()
	writeTree(t, dir, tree{"Dockerfile": "FROM scratch\n"})
	c, err := Open(context.Background(), dir, Options{})
	if err != nil {
		t.Fatal(err)
	}
	if err := c.Close(); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Join(dir, "Dockerfile")); err != nil {
		t.Errorf("Close touched a directory context: %v", err)
	}
}

func TestDockerfileOption(t *testing.T) {
	files := tree{"Dockerfile": "root", "build/app.Dockerfile": "app", "link.Dockerfile": "-> build/app.Dockerfile", "escape": "-> /../../etc/hostname"}
	tests := []struct {
		name, dockerfile, want string
		wantErr                bool
	}{
		{name: "default", want: "root"},
		{name: "nested", dockerfile: "build/app.Dockerfile", want: "app"},
		{name: "dot-slash", dockerfile: "./build/../build/app.Dockerfile", want: "app"},
		{name: "symlink followed", dockerfile: "link.Dockerfile", want: "app"},
		{name: "symlink re-rooted", dockerfile: "escape", wantErr: true},
		{name: "missing", dockerfile: "nope", wantErr: true},
		{name: "a folder", dockerfile: "build", wantErr: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := openTree(t, files, Options{Dockerfile: tt.dockerfile})
			got, err := c.Dockerfile()
			if (err != nil) != tt.wantErr || string(got) != tt.want {
				t.Errorf("Dockerfile() = %q, %v; want %q, error %v", got, err, tt.want, tt.wantErr)
			}
		})
	}
}

func TestDockerfileOptionOutsideContext(t *testing.T) {
	for _, p := range []string{"../Dockerfile", "/abs/Dockerfile", ".", "a/../.."} {
		if _, err := Open(context.Background(), t.TempDir(), Options{Dockerfile: p}); err == nil {
			t.Errorf("Open with Dockerfile %q: want error", p)
		}
	}
}

func TestRootIsAbsoluteAndReal(t *testing.T) {
	dir := t.TempDir()
	writeTree(t, dir, tree{"real/Dockerfile": "x", "alias": "-> real"})
	c, err := Open(context.Background(), filepath.Join(dir, "alias"), Options{})
	if err != nil {
		t.Fatal(err)
	}
	want, _ := filepath.EvalSymlinks(filepath.Join(dir, "real"))
	if c.Root() != want {
		t.Errorf("Root() = %s, want %s", c.Root(), want)
	}
}
