package test

import (
	"archive/tar"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"testing"
	"time"

	"kiln/test/harness"
)

// TestBuildReproducible builds the same inputs twice with --reproducible
// and SOURCE_DATE_EPOCH, the second time from a copy of the context in
// another folder whose files all have new modification times: the digests
// must be equal, every timestamp kiln writes must be the epoch, and another
// epoch must give another digest.
func TestBuildReproducible(t *testing.T) {
	t.Parallel()
	reg := harness.NewRegistry(t)
	bases := pushBaseImages(t, reg.Addr)
	files := map[string]string{
		"Dockerfile": "FROM " + reg.Addr + "/library/base:1\nCOPY . /src/\nWORKDIR /work\n" +
			"COPY --chmod=0755 run.sh /usr/local/bin/\nENV STAMP=fixed\nCMD [\"run.sh\"]\n",
		"run.sh":      "#!/bin/sh\necho run\n",
		"lib/a.txt":   "a\n",
		"lib/b/c.txt": "c\n",
	}
	const epoch = 1_700_000_000
	env := []string{"SOURCE_DATE_EPOCH=1700000000"}
	build := func(ctxDir string, env []string) (string, string) {
		out := filepath.Join(t.TempDir(), "oci")
		digest := filepath.Join(t.TempDir(), "digest")
		r := runKilnOpts(t, runOpts{env: env}, "build", "--context", ctxDir, "--reproducible", "--digest-file", digest,
			"--output", "oci:"+out, "--work-dir", t.TempDir())
		mustExit(t, r, 0)
		return readDigestFile(t, digest).String(), out
	}

	first := t.TempDir()
	writeContext(t, first, files)
	setMtimes(t, first, time.Unix(1_600_000_000, 0))
	d1, out1 := build(first, env)

	second := filepath.Join(t.TempDir(), "elsewhere", "ctx")
	writeContext(t, second, files)
	setMtimes(t, second, time.Now().Add(time.Hour)) // touched: every mtime differs from the first's
	d2, _ := build(second, env)
	if d1 != d2 {
		t.Errorf("two reproducible builds of the same inputs: %s and %s", d1, d2)
	}

	img := layoutImage(t, out1, "image")
	cf := configOf(t, img)
	want := time.Unix(epoch, 0).UTC()
	if !cf.Created.Time.Equal(want) {
		t.Errorf("config created %s, want %s", cf.Created.Time, want)
	}
	baseLayers := len(layerDigests(t, bases["amd64"]))
	for i, h := range cf.History[1:] { // the base's own entry keeps its time
		if !h.Created.Time.Equal(want) {
			t.Errorf("history %d (%s) created %s, want %s", i+1, h.CreatedBy, h.Created.Time, want)
		}
	}
	eachLayerEntry(t, img, func(i int, hdr *tar.Header, _ io.Reader) {
		if i >= baseLayers && !hdr.ModTime.Equal(want) {
			t.Errorf("layer %d: %s has mtime %s, want %s", i, hdr.Name, hdr.ModTime.UTC(), want)
		}
	})

	if d3, _ := build(first, []string{"SOURCE_DATE_EPOCH=1700000001"}); d3 == d1 {
		t.Errorf("another SOURCE_DATE_EPOCH gave the same digest %s", d3)
	}
}

// setMtimes sets the modification time of everything under dir.
func setMtimes(t *testing.T, dir string, when time.Time) {
	t.Helper()
	err := filepath.WalkDir(dir, func(p string, _ fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		return os.Chtimes(p, when, when)
	})
	if err != nil {
		t.Fatal(err)
	}
}
