package builder

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"golang.org/x/sys/unix"

	"kiln/builder/dockerfile"
	"kiln/builder/rootfs"
)

// TestCopyRefusesWhiteoutNames: a file whose name a layer would read as a
// whiteout (".wh.NAME", ".wh..wh..opq", AUFS metadata) never enters a layer
// through COPY, ADD (archives included), COPY --from or WORKDIR: the build
// fails naming the file where it comes from, and the Dockerfile line.
func TestCopyRefusesWhiteoutNames(t *testing.T) {
	// A base whose layer left names below an opaque marker and an AUFS
	// folder: unpacking creates those folders to hold the files.
	hostile := fixtureImage(t, amd64, v1.Config{}, fixtureLayer(t,
		fdir("a"), ffile("a/keep", "k\n"),
		fdir("a/.wh..wh..opq"), ffile("a/.wh..wh..opq/x", "x\n"),
		fdir("b"), fdir("b/.wh..wh.plnk"), ffile("b/.wh..wh.plnk/123.456", "l\n"),
	))
	bases := fakeBases{"library/hostile:1@linux/amd64": hostile}
	tests := []struct {
		name       string
		dockerfile string
		files      map[string]string
		tars       map[string][]tfile // archives written into the context, gzipped when named .tgz
		wantLine   int
		wantMsg    string // a substring of the error
	}{
		{name: "context file", dockerfile: "FROM scratch\nCOPY .wh.passwd /etc/\n",
			files: map[string]string{".wh.passwd": "x\n"}, wantLine: 2, wantMsg: ".wh.passwd"},
		{name: "renamed on the way", dockerfile: "FROM scratch\nCOPY .wh.passwd /etc/passwd\n",
			files: map[string]string{".wh.passwd": "x\n"}, wantLine: 2, wantMsg: ".wh.passwd"},
		{name: "opaque marker in a context folder", dockerfile: "FROM scratch\nCOPY d /d\n",
			files: map[string]string{"d/ok": "o\n", "d/.wh..wh..opq": ""}, wantLine: 2, wantMsg: "d/.wh..wh..opq"},
		{name: "whole context", dockerfile: "FROM scratch\nCOPY . /app/\n",
			files: map[string]string{"sub/.wh..wh.aufs": ""}, wantLine: 2, wantMsg: "sub/.wh..wh.aufs"},
		{name: "wildcard", dockerfile: "FROM scratch\nCOPY * /x/\n",
			files: map[string]string{".wh.etc": "x\n"}, wantLine: 2, wantMsg: ".wh.etc"},
		{name: "folder named as a whiteout", dockerfile: "FROM scratch\nCOPY . /app/\n",
			files: map[string]string{".wh.dir/f": "x\n"}, wantLine: 2, wantMsg: ".wh.dir"},
		{name: "ADD of a file", dockerfile: "FROM scratch\nCOPY a.txt /a\nADD .wh.passwd /etc/\n",
			files: map[string]string{".wh.passwd": "x\n"}, wantLine: 3, wantMsg: ".wh.passwd"},
		{name: "ADD of an archive", dockerfile: "FROM scratch\nADD x.tar /\n",
			tars: map[string][]tfile{"x.tar": {fdir("etc"), ffile("etc/.wh.passwd", "")}}, wantLine: 2, wantMsg: "etc/.wh.passwd"},
		{name: "ADD of a gzip archive with an opaque marker", dockerfile: "FROM scratch\nADD x.tgz /\n",
			tars: map[string][]tfile{"x.tgz": {fdir("etc"), ffile("etc/.wh..wh..opq", "")}}, wantLine: 2, wantMsg: "etc/.wh..wh..opq"},
		{name: "destination", dockerfile: "FROM scratch\nCOPY a.txt /etc/.wh.passwd\n", wantLine: 2, wantMsg: "/etc/.wh.passwd"},
		{name: "destination folder", dockerfile: "FROM scratch\nCOPY a.txt /.wh.etc/\n", wantLine: 2, wantMsg: "/.wh.etc"},
		{name: "heredoc", dockerfile: "FROM scratch\nCOPY <<.wh.passwd /etc/\nx\n.wh.passwd\n", wantLine: 2, wantMsg: "/etc/.wh.passwd"},
		{name: "WORKDIR", dockerfile: "FROM scratch\nWORKDIR /.wh.app\n", wantLine: 2, wantMsg: "/.wh.app"},
		{name: "opaque folder of an image", dockerfile: "FROM scratch\nCOPY --from=hostile:1 /a /a\n",
			wantLine: 2, wantMsg: "--from=hostile:1: /a/.wh..wh..opq"},
		{name: "AUFS folder of an image", dockerfile: "FROM scratch\nCOPY --from=hostile:1 / /all/\n",
			wantLine: 2, wantMsg: ".wh..wh."},
		{name: "opaque folder of a stage", dockerfile: "FROM hostile:1 AS h\nCOPY a.txt /a.txt\nFROM scratch\nCOPY --from=h /a/ /a/\n",
			wantLine: 4, wantMsg: "--from=h: /a/.wh..wh..opq"},
		{name: "named in an image", dockerfile: "FROM scratch\nCOPY --from=hostile:1 /b/.wh..wh.plnk /x/\n",
			wantLine: 2, wantMsg: "--from=hostile:1: /b/.wh..wh.plnk"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			files := map[string]string{"Dockerfile": tc.dockerfile, "a.txt": "a\n"}
			for k, v := range tc.files {
				files[k] = v
			}
			dir := writeContext(t, files)
			for name, entries := range tc.tars {
				writeArchive(t, filepath.Join(dir, name), strings.HasSuffix(name, ".tgz"), entries)
			}
			_, err := Build(context.Background(), Request{Context: dir, Platform: amd64},
				WithBaseImages(bases), WithWorkDir(t.TempDir()))
			if !errors.Is(err, rootfs.ErrReservedName) {
				t.Fatalf("err = %v, want %v", err, rootfs.ErrReservedName)
			}
			wantLineError(t, err, tc.wantLine, tc.wantMsg)
		})
	}
}

// TestCopyWhiteoutNamesExcluded: a whiteout name left out by --exclude or
// .dockerignore is no error, as it is not copied.
func TestCopyWhiteoutNamesExcluded(t *testing.T) {
	dir := writeContext(t, map[string]string{
		"Dockerfile":    "FROM scratch\nCOPY --exclude=**/.wh.* . /app/\n",
		".dockerignore": ".wh.top\n",
		".wh.top":       "x\n", "d/.wh..wh..opq": "", "d/ok": "o\n",
	})
	res, err := Build(context.Background(), Request{Context: dir, Platform: amd64}, WithWorkDir(t.TempDir()))
	if err != nil {
		t.Fatal(err)
	}
	defer res.Close()
	for _, f := range listFiles(t, res.Image) {
		if strings.Contains(f.Path, ".wh.") {
			t.Errorf("the image holds %s", f.Path)
		}
	}
}

// TestCopyRefusesSpecialFiles: COPY of a fifo, a socket or a device (from
// the context, walked or named, or from a stage) is an error naming it, not
// a file silently left out.
func TestCopyRefusesSpecialFiles(t *testing.T) {
	withFifo := fixtureImage(t, amd64, v1.Config{}, fixtureLayer(t,
		fdir("run"), ffile("run/ok", "o\n"), tfile{name: "run/pipe", typ: tar.TypeFifo, mode: 0o644},
	))
	bases := fakeBases{"library/fifo:1@linux/amd64": withFifo}
	tests := []struct {
		name       string
		dockerfile string
		special    map[string]uint32 // context path → S_IFIFO or S_IFSOCK
		wantLine   int
		wantMsg    string
	}{
		{name: "named fifo", dockerfile: "FROM scratch\nCOPY pipe /p\n",
			special: map[string]uint32{"pipe": unix.S_IFIFO}, wantLine: 2, wantMsg: "pipe is a named pipe (fifo)"},
		{name: "fifo in a folder", dockerfile: "FROM scratch\nCOPY . /app/\n",
			special: map[string]uint32{"d/pipe": unix.S_IFIFO}, wantLine: 2, wantMsg: "d/pipe is a named pipe (fifo)"},
		{name: "socket", dockerfile: "FROM scratch\nCOPY d/ /app/\n",
			special: map[string]uint32{"d/sock": unix.S_IFSOCK}, wantLine: 2, wantMsg: "d/sock is a socket"},
		{name: "ADD of a fifo", dockerfile: "FROM scratch\nADD pipe /p\n",
			special: map[string]uint32{"pipe": unix.S_IFIFO}, wantLine: 2, wantMsg: "pipe is a named pipe (fifo)"},
		{name: "fifo of a stage", dockerfile: "FROM fifo:1 AS f\nFROM scratch\nCOPY --from=f /run /run\n",
			wantLine: 3, wantMsg: "--from=f: /run/pipe is a named pipe (fifo)"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			dir := writeContext(t, map[string]string{"Dockerfile": tc.dockerfile, "d/ok": "o\n"})
			for name, kind := range tc.special {
				if err := unix.Mknod(filepath.Join(dir, name), kind|0o644, 0); err != nil {
					t.Skipf("mknod %s: %v", name, err)
				}
			}
			_, err := Build(context.Background(), Request{Context: dir, Platform: amd64},
				WithBaseImages(bases), WithWorkDir(t.TempDir()))
			if !errors.Is(err, errSpecialFile) {
				t.Fatalf("err = %v, want %v", err, errSpecialFile)
			}
			wantLineError(t, err, tc.wantLine, tc.wantMsg)
		})
	}
}

// wantLineError checks that err is a *dockerfile.Error at line saying msg.
func wantLineError(t *testing.T, err error, line int, msg string) {
	t.Helper()
	var de *dockerfile.Error
	if !errors.As(err, &de) || de.Line != line {
		t.Errorf("err = %v, want a *dockerfile.Error at line %d", err, line)
	}
	if !strings.Contains(err.Error(), msg) {
		t.Errorf("err = %v, want it to say %q", err, msg)
	}
}

// writeArchive writes entries as a tar (gzipped when gz) at p.
func writeArchive(t *testing.T, p string, gz bool, entries []tfile) {
	t.Helper()
	rc, err := fixtureLayer(t, entries...).Uncompressed()
	if err != nil {
		t.Fatal(err)
	}
	defer rc.Close()
	var buf bytes.Buffer
	if _, err := buf.ReadFrom(rc); err != nil {
		t.Fatal(err)
	}
	data := buf.Bytes()
	if gz {
		var z bytes.Buffer
		zw := gzip.NewWriter(&z)
		if _, err := zw.Write(data); err != nil {
			t.Fatal(err)
		}
		if err := zw.Close(); err != nil {
			t.Fatal(err)
		}
		data = z.Bytes()
	}
	if err := os.WriteFile(p, data, 0o644); err != nil {
		t.Fatal(err)
	}
}
