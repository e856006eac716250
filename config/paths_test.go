package config

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestProjectPaths: a context or output that leads outside the build file's
// folder (written so, absolute, or through a symlink) is refused with the
// file, line, column and key and the flag that allows it, unless
// AllowPathsUnder covers it; machine paths may be anywhere.
func TestProjectPaths(t *testing.T) {
	top := t.TempDir()
	dir := filepath.Join(top, "a", "b", "c", "proj") // deep enough for ../../../../
	file := filepath.Join(dir, "build.toml")
	mkdirs(t, filepath.Join(dir, "real"), filepath.Join(top, "shared"))
	symlink(t, "/", filepath.Join(dir, "root"))                               // a folder leading out
	symlink(t, filepath.Join(top, "evil.tar"), filepath.Join(dir, "out.tar")) // a file leading out, not there yet
	symlink(t, "real", filepath.Join(dir, "inner"))                           // a link that stays inside
	symlink(t, "../../../../..", filepath.Join(dir, "real", "up"))            // relative, two levels down

	image := func(context, output string) string {
		return "[images.x]\ncontext = '" + context + "'\nplatforms = ['amd64']\noutput = '" + output + "'\n"
	}
	const ctxAt, outAt = ":2:11: images.x.context: ", ":4:10: images.x.output: "
	tests := []struct {
		name    string
		src     string
		allow   []string
		wantErr []string // substrings; none means valid
	}{
		{name: "inside", src: image("real", "oci:out/x")},
		{name: "the folder itself", src: image(".", "tar:x.tar")},
		{name: "inside through a symlink", src: image("inner", "oci:inner/out")},
		{name: "dot-dot that stays inside", src: image("real/../real", "oci:a/../b")},
		{name: "stdin and git are not paths", src: image("-", "oci:o") + image2("https://example.com/a.git")},

		{name: "output climbing out", src: image(".", "oci:../../../../tmp/X"),
			wantErr: []string{file + outAt + `"oci:../../../../tmp/X" leads to ` + filepath.Join(top, "tmp/X") + ", outside the build file's folder " + dir,
				"--allow fs=" + filepath.Join(top, "tmp/X")}},
		{name: "tar output climbing out", src: image(".", "tar:../img.tar"),
			wantErr: []string{file + outAt + `"tar:../img.tar" leads to ` + filepath.Join(top, "a/b/c/img.tar")}},
		{name: "context climbing out", src: image("../..", "oci:o"),
			wantErr: []string{file + ctxAt + `"../.." leads to ` + filepath.Join(top, "a/b") + ", outside", "--allow fs=" + filepath.Join(top, "a/b")}},
		{name: "absolute context", src: image("/etc", "oci:o"),
			wantErr: []string{file + ctxAt + `"/etc" leads to /etc, outside`, "--allow fs=/etc"}},
		{name: "absolute output", src: image(".", "oci:/tmp/out"),
			wantErr: []string{file + outAt + `"oci:/tmp/out" leads to /tmp/out, outside`}},
		{name: "absolute path inside is fine", src: image(filepath.Join(dir, "real"), "oci:"+filepath.Join(dir, "o"))},
		{name: "context through a symlink", src: image("root/etc", "oci:o"),
			wantErr: []string{file + ctxAt + `"root/etc" leads through a symlink to /etc, outside`, "--allow fs=/etc"}},
		{name: "output through a dangling symlink", src: image(".", "tar:out.tar"),
			wantErr: []string{file + outAt + `"tar:out.tar" leads through a symlink to ` + filepath.Join(top, "evil.tar")}},
		{name: "relative symlink deeper down", src: image("real/up/x", "oci:o"),
			wantErr: []string{file + ctxAt + `"real/up/x" leads through a symlink to ` + filepath.Join(top, "x")}},
		{name: "both refused", src: image("/", "oci:/"),
			wantErr: []string{file + ctxAt, file + outAt}},

		{name: "allowed folder", src: image("../../../../shared", "oci:../../../../shared/out"), allow: []string{filepath.Join(top, "shared")}},
		{name: "allowed anywhere", src: image("root/etc", "tar:out.tar"), allow: []string{"/"}},
		{name: "allowed through a symlink", src: image("root/etc", "oci:o"), allow: []string{"/etc"}},
		{name: "another folder allowed", src: image("/etc", "oci:o"), allow: []string{filepath.Join(top, "shared")},
			wantErr: []string{`"/etc" leads to /etc, outside the build file's folder ` + dir + " and " + filepath.Join(top, "shared")}},

		{name: "dockerfile climbing out of the context", src: image(".", "oci:o") + "dockerfile = '../../Dockerfile'\n",
			wantErr: []string{file + ":5:14: images.x.dockerfile: \"../../Dockerfile\" must be a relative path inside the context"}},
		{name: "absolute dockerfile", src: image(".", "oci:o") + "dockerfile = '/etc/passwd'\n",
			wantErr: []string{file + ":5:14: images.x.dockerfile: \"/etc/passwd\" must be a relative path inside the context"}},

		{name: "absolute cache dir is a machine path", src: "[cache]\ndir = '/var/cache/kiln'\n" + image(".", "oci:o")},
		{name: "cache dir beside the folder", src: "[cache]\ndir = '../cache'\n" + image(".", "oci:o")},
		{name: "kubeconfig anywhere", src: "[runner.kubernetes]\nkubeconfig = '/etc/kiln/kubeconfig'\n" + image(".", "oci:o")},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg, err := Parse([]byte(tt.src), file, AllowPathsUnder(tt.allow...))
			if len(tt.wantErr) == 0 {
				if err != nil {
					t.Fatalf("want no error, got:\n%v", err)
				}
				if cfg.Images["x"].Context == "" {
					t.Errorf("no context: %+v", cfg.Images["x"])
				}
				return
			}
			if err == nil {
				t.Fatalf("want an error with %q", tt.wantErr)
			}
			if !errors.Is(err, ErrInvalid) {
				t.Errorf("%v does not wrap ErrInvalid", err)
			}
			for _, want := range tt.wantErr {
				if !strings.Contains(err.Error(), want) {
					t.Errorf("error:\n%v\nwant it to hold:\n%s", err, want)
				}
			}
		})
	}
}

// TestAllowRelative: a relative folder given to AllowPathsUnder is taken
// from the working directory, not from the build file's folder.
func TestAllowRelative(t *testing.T) {
	top := t.TempDir()
	mkdirs(t, filepath.Join(top, "proj"), filepath.Join(top, "out"))
	t.Chdir(top)
	src := []byte("[images.x]\ncontext = '.'\nplatforms = ['amd64']\noutput = 'oci:../out/x'\n")
	file := filepath.Join(top, "proj", "build.toml")
	if _, err := Parse(src, file, AllowPathsUnder("out")); err != nil {
		t.Errorf("allowed from the working directory: %v", err)
	}
	if _, err := Parse(src, file, AllowPathsUnder("../out")); err == nil {
		t.Error("../out from the working directory allowed a folder it does not name")
	}
}

func image2(context string) string {
	return "[images.y]\ncontext = '" + context + "'\nplatforms = ['amd64']\ntags = ['y']\n"
}

func mkdirs(t *testing.T, dirs ...string) {
	t.Helper()
	for _, d := range dirs {
		if err := os.MkdirAll(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
}

func symlink(t *testing.T, target, link string) {
	t.Helper()
	if err := os.Symlink(target, link); err != nil {
		t.Fatal(err)
	}
}
