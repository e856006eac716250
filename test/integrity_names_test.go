package test

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"golang.org/x/sys/unix"

	"kiln/test/harness"
)

// TestBuildHostileWhiteoutNames: a file named like an OCI whiteout
// (".wh.passwd", ".wh..wh..opq") is never written into a layer, where it
// would delete a file of the image for everyone who pulls it. From the
// user's own context (COPY, ADD, a local archive ADD extracts) it is exit
// status 2 naming the file and the line; from an image or a stage (COPY
// --from) the build fails with status 1 (content from elsewhere), naming it.
func TestBuildHostileWhiteoutNames(t *testing.T) {
	t.Parallel()
	reg := harness.NewRegistry(t)
	// Unpacking this base makes the folders that hold its files below an
	// opaque marker: a copy of /a meets a folder called .wh..wh..opq.
	opaque := reg.Ref("hostile/opaque:1")
	pushHandImage(t, opaque, handImage(t, "linux/amd64", v1.Config{Env: []string{"PATH=/bin"}}, handLayer(t,
		ldir("a"), lfile("a/keep", "k\n"), ldir("a/.wh..wh..opq"), lfile("a/.wh..wh..opq/x", "x\n"),
	)))
	tests := []struct {
		name       string
		dockerfile string
		files      map[string]string
		archive    []lentry // written to the context as x.tar
		wantCode   int      // 0: any failure
		want       []string // substrings of stderr
	}{
		{name: "context file", dockerfile: "FROM scratch\nCOPY .wh.passwd /etc/\n",
			files: map[string]string{".wh.passwd": "x\n"}, wantCode: 2,
			want: []string{"Dockerfile:2", ".wh.passwd", "a name starting with .wh. means a deletion in an image layer"}},
		{name: "opaque marker in a context folder", dockerfile: "FROM scratch\nCOPY conf /etc/conf\n",
			files: map[string]string{"conf/app.conf": "c\n", "conf/.wh..wh..opq": ""}, wantCode: 2,
			want: []string{"Dockerfile:2", "conf/.wh..wh..opq"}},
		{name: "whole context", dockerfile: "FROM scratch\nCOPY . /app/\n",
			files: map[string]string{"etc/.wh.passwd": ""}, wantCode: 2, want: []string{"Dockerfile:2", "etc/.wh.passwd"}},
		{name: "ADD of a local archive", dockerfile: "FROM scratch\nADD x.tar /\n",
			archive: []lentry{ldir("etc"), lfile("etc/.wh.passwd", "")}, wantCode: 2,
			want: []string{"Dockerfile:2", "x.tar", "etc/.wh.passwd"}},
		{name: "destination", dockerfile: "FROM scratch\nCOPY a.txt /etc/.wh.passwd\n", wantCode: 2,
			want: []string{"Dockerfile:2", "/etc/.wh.passwd"}},
		{name: "COPY --from an image", dockerfile: "FROM scratch\nCOPY --from=" + opaque + " /a /a\n", wantCode: 1,
			want: []string{"Dockerfile:2", "/a/.wh..wh..opq"}},
		{name: "COPY --from a stage", dockerfile: "FROM " + opaque + " AS base\nFROM scratch\nCOPY --from=base /a /a\n", wantCode: 1,
			want: []string{"Dockerfile:3", "--from=base", "/a/.wh..wh..opq"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			ctxDir := t.TempDir()
			files := map[string]string{"Dockerfile": tc.dockerfile, "a.txt": "a\n"}
			for k, v := range tc.files {
				files[k] = v
			}
			writeContext(t, ctxDir, files)
			if tc.archive != nil {
				if err := os.WriteFile(filepath.Join(ctxDir, "x.tar"), rawLayerTar(t, tc.archive...), 0o644); err != nil {
					t.Fatal(err)
				}
			}
			out := filepath.Join(t.TempDir(), "oci")
			r := runKiln(t, "build", "--context", ctxDir, "--output", "oci:"+out)
			wantRefused(t, r, tc.wantCode, out, tc.want)
		})
	}
}

// TestBuildHostileSpecialFiles: COPY of a fifo or a socket of the context,
// named or met in a folder, is exit status 2 naming it; it is not left out
// in silence.
func TestBuildHostileSpecialFiles(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name        string
		instruction string
		special     map[string]uint32 // context path → S_IFIFO or S_IFSOCK
		want        []string
	}{
		{name: "fifo", instruction: "COPY pipe /pipe", special: map[string]uint32{"pipe": unix.S_IFIFO},
			want: []string{"Dockerfile:2", "pipe is a named pipe (fifo)"}},
		{name: "fifo in a folder", instruction: "COPY . /app/", special: map[string]uint32{"run/pipe": unix.S_IFIFO},
			want: []string{"Dockerfile:2", "run/pipe is a named pipe (fifo)"}},
		{name: "socket in a folder", instruction: "COPY run /run", special: map[string]uint32{"run/app.sock": unix.S_IFSOCK},
			want: []string{"Dockerfile:2", "run/app.sock is a socket"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			ctxDir := t.TempDir()
			writeContext(t, ctxDir, map[string]string{"Dockerfile": "FROM scratch\n" + tc.instruction + "\n", "run/ok": "o\n"})
			for p, kind := range tc.special {
				if err := unix.Mknod(filepath.Join(ctxDir, p), kind|0o644, 0); err != nil {
					t.Fatalf("mknod %s: %v", p, err)
				}
			}
			out := filepath.Join(t.TempDir(), "oci")
			r := runKiln(t, "build", "--context", ctxDir, "--output", "oci:"+out)
			wantRefused(t, r, 2, out, tc.want)
		})
	}
}

// TestBuildHostileDockerfileText: a Dockerfile line holding bytes that are
// not UTF-8, or a NUL, is exit status 2 naming the file and line, not a
// build that succeeds after a stray "<input>:1:3" on stderr.
func TestBuildHostileDockerfileText(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name       string
		dockerfile []byte
		want       []string
	}{
		{name: "0xff 0xfe in a LABEL", dockerfile: []byte("FROM scratch\nLABEL a=\"x\xff\xfey\"\nCOPY a.txt /a\n"),
			want: []string{"Dockerfile:2", "LABEL", "byte 0xff", "UTF-8"}},
		{name: "unquoted 0xff 0xfe", dockerfile: []byte("FROM scratch\nCOPY a.txt /a\nLABEL a=\xff\xfe\n"),
			want: []string{"Dockerfile:3", "LABEL", "byte 0xff"}},
		{name: "NUL in a LABEL", dockerfile: []byte("FROM scratch\nLABEL a=\"x\x00y\"\nCOPY a.txt /a\n"),
			want: []string{"Dockerfile:2", "LABEL", "NUL"}},
		{name: "UTF-16", dockerfile: utf16LE("FROM scratch\n"), want: []string{"Dockerfile:1", "UTF-16"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			ctxDir := t.TempDir()
			writeContext(t, ctxDir, map[string]string{"a.txt": "a\n"})
			if err := os.WriteFile(filepath.Join(ctxDir, "Dockerfile"), tc.dockerfile, 0o644); err != nil {
				t.Fatal(err)
			}
			out := filepath.Join(t.TempDir(), "oci")
			r := runKiln(t, "build", "--context", ctxDir, "--output", "oci:"+out)
			wantRefused(t, r, 2, out, tc.want)
		})
	}
}

// wantRefused checks a refused build: exit code (any failure when 0), the
// substrings of stderr, one error line, no lexer noise, no output.
func wantRefused(t *testing.T, r result, code int, out string, want []string) {
	t.Helper()
	if code != 0 {
		mustExit(t, r, code)
	} else if r.code == 0 {
		t.Fatalf("the build succeeded:\n%s", r)
	}
	for _, w := range want {
		if !strings.Contains(r.stderr, w) {
			t.Errorf("stderr should say %q:\n%s", w, r)
		}
	}
	if n := strings.Count(r.stderr, "kiln: "); n != 1 {
		t.Errorf("want one error line, got %d:\n%s", n, r)
	}
	if strings.Contains(r.stderr, "<input>:") || strings.Contains(r.stderr, "panic:") {
		t.Errorf("stray output on stderr:\n%s", r)
	}
	if _, err := os.Stat(out); err == nil {
		t.Errorf("a failed build wrote its output %s", out)
	}
}

// utf16LE encodes ASCII s as UTF-16 little-endian with a byte order mark,
// as some Windows editors save a Dockerfile.
func utf16LE(s string) []byte {
	var b bytes.Buffer
	b.Write([]byte{0xff, 0xfe})
	for _, c := range []byte(s) {
		b.Write([]byte{c, 0})
	}
	return b.Bytes()
}
