package builder

import (
	"archive/tar"
	"bytes"
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	specs "github.com/opencontainers/image-spec/specs-go/v1"

	"kiln/builder/dockerfile"
	"kiln/builder/run"
	"kiln/platform"
)

// writeContext makes a context folder of name → content.
func writeContext(t *testing.T, files map[string]string) string {
	t.Helper()
	dir := t.TempDir()
	for name, body := range files {
		p := filepath.Join(dir, name)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte(body), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	return dir
}

func TestReproducible(t *testing.T) {
	files := map[string]string{
		"Dockerfile": "FROM base:1 AS b\nCOPY a.txt /a/\nWORKDIR /w\nFROM b\nCOPY --from=b /a /copy\nENV X=1\n",
		"a.txt":      "a\n",
	}
	epoch := time.Unix(1_700_000_000, 0)
	tests := []struct {
		name  string
		epoch *time.Time
	}{
		{name: "zero epoch"},
		{name: "SOURCE_DATE_EPOCH", epoch: &epoch},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var digests []string
			for i, clock := range []time.Time{time.Unix(1, 0), time.Unix(2_000_000_000, 0)} {
				dir := writeContext(t, files)
				// A different mtime on the context files must not matter.
				mt := clock.Add(time.Duration(i) * time.Hour)
				if err := os.Chtimes(filepath.Join(dir, "a.txt"), mt, mt); err != nil {
					t.Fatal(err)
				}
				res, err := Build(context.Background(), Request{
					Context: dir, Platform: amd64, Reproducible: true, SourceDateEpoch: tt.epoch,
				}, WithBaseImages(fixtures(t)), WithWorkDir(t.TempDir()), withClock(func() time.Time { return clock }))
				if err != nil {
					t.Fatal(err)
				}
				digests = append(digests, res.Digest.String())
				cf, err := res.Image.ConfigFile()
				if err != nil {
					t.Fatal(err)
				}
				want := time.Unix(0, 0).UTC()
				if tt.epoch != nil {
					want = tt.epoch.UTC()
				}
				if !cf.Created.Time.Equal(want) {
					t.Errorf("created = %v, want %v", cf.Created.Time, want)
				}
				_ = res.Close()
			}
			if digests[0] != digests[1] {
				t.Errorf("two builds gave %s and %s", digests[0], digests[1])
			}
		})
	}
}

func TestNotReproducibleUsesClock(t *testing.T) {
	dir := writeContext(t, map[string]string{"Dockerfile": "FROM scratch\nENV A=1\n"})
	now := time.Date(2030, 1, 2, 3, 4, 5, 0, time.UTC)
	res, err := Build(context.Background(), Request{Context: dir, Platform: amd64},
		WithWorkDir(t.TempDir()), withClock(func() time.Time { return now }))
	if err != nil {
		t.Fatal(err)
	}
	defer res.Close()
	cf, err := res.Image.ConfigFile()
	if err != nil {
		t.Fatal(err)
	}
	if !cf.Created.Time.Equal(now) || !cf.History[0].Created.Time.Equal(now) {
		t.Errorf("created = %v, history %v; want %v", cf.Created.Time, cf.History[0].Created.Time, now)
	}
}

func TestErrors(t *testing.T) {
	tests := []struct {
		name       string
		dockerfile string
		bases      BaseImages
		foreign    bool // build for a platform this machine cannot execute
		wantIs     error
		wantLine   int
	}{
		{name: "foreign RUN in the target", dockerfile: "FROM scratch\nENV A=1\nRUN true\n", foreign: true, wantIs: ErrForeignRun, wantLine: 3},
		{name: "foreign RUN in a needed stage", dockerfile: "FROM scratch AS a\n\nRUN true\nFROM scratch\nCOPY --from=a / /\n", foreign: true, wantIs: ErrForeignRun, wantLine: 3},
		{name: "foreign RUN from an image trigger", dockerfile: "FROM trig:1\n", bases: triggerBases(t, foreignPlatform(), "RUN make"), foreign: true, wantIs: ErrForeignRun, wantLine: 1},
		{name: "RUN without a shell", dockerfile: "FROM scratch\nENV A=1\nRUN true\n", wantIs: run.ErrSetup, wantLine: 3},
		{name: "no base images", dockerfile: "FROM base:1\n", wantIs: ErrNoBaseImages, wantLine: 1},
		{name: "ADD of a git repository", dockerfile: "FROM scratch\nADD git@github.com:moby/buildkit.git /src\n", wantIs: ErrNotSupported, wantLine: 2},
		{name: "unknown target", dockerfile: "FROM scratch AS a\n", wantIs: dockerfile.ErrUnknownTarget},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dir := writeContext(t, map[string]string{"Dockerfile": tt.dockerfile})
			req := Request{Context: dir, Platform: platform.Host()}
			if tt.foreign {
				req.Platform = foreignPlatform()
			}
			if tt.wantIs == dockerfile.ErrUnknownTarget {
				req.Target = "nope"
			}
			opts := []Option{WithWorkDir(t.TempDir())}
			if tt.bases != nil {
				opts = append(opts, WithBaseImages(tt.bases))
			}
			_, err := Build(context.Background(), req, opts...)
			if !errors.Is(err, tt.wantIs) {
				t.Fatalf("err = %v, want %v", err, tt.wantIs)
			}
			if tt.wantLine == 0 {
				return
			}
			var derr *dockerfile.Error
			if !errors.As(err, &derr) || derr.Line != tt.wantLine {
				t.Errorf("err = %v, want a *dockerfile.Error at line %d", err, tt.wantLine)
			}
		})
	}
}

// triggerBases serves "trig:1", an image whose ONBUILD triggers are given.
func triggerBases(t *testing.T, p specs.Platform, triggers ...string) fakeBases {
	cfg := fixtureImage(t, p, configWithTriggers(triggers), fixtureLayer(t, fdir("etc")))
	return fakeBases{"library/trig:1@" + platform.Format(p): cfg}
}

// foreignPlatform is a platform this machine cannot execute natively.
func foreignPlatform() specs.Platform {
	if platform.Host().Architecture == "amd64" {
		return specs.Platform{OS: "linux", Architecture: "arm64"}
	}
	return specs.Platform{OS: "linux", Architecture: "amd64"}
}

func TestStdinContext(t *testing.T) {
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	for name, body := range map[string]string{"Dockerfile": "FROM scratch\nCOPY f /f\n", "f": "from stdin\n"} {
		if err := tw.WriteHeader(&tar.Header{Name: name, Mode: 0o644, Size: int64(len(body)), Typeflag: tar.TypeReg}); err != nil {
			t.Fatal(err)
		}
		if _, err := tw.Write([]byte(body)); err != nil {
			t.Fatal(err)
		}
	}
	if err := tw.Close(); err != nil {
		t.Fatal(err)
	}
	res, err := Build(context.Background(), Request{Context: "-", Platform: amd64, Reproducible: true},
		WithStdin(&buf), WithWorkDir(t.TempDir()))
	if err != nil {
		t.Fatal(err)
	}
	defer res.Close()
	files := listFiles(t, res.Image)
	if len(files) != 1 || files[0].Path != "/f" || files[0].Size != int64(len("from stdin\n")) {
		t.Errorf("files = %+v", files)
	}
}

func TestResultCloseRemovesWork(t *testing.T) {
	work := t.TempDir()
	dir := writeContext(t, map[string]string{"Dockerfile": "FROM scratch\nCOPY a /\n", "a": "a"})
	res, err := Build(context.Background(), Request{Context: dir, Platform: amd64}, WithWorkDir(work))
	if err != nil {
		t.Fatal(err)
	}
	if err := res.Close(); err != nil {
		t.Fatal(err)
	}
	left, err := os.ReadDir(work)
	if err != nil || len(left) != 0 {
		t.Errorf("work folder holds %v (%v) after Close", left, err)
	}
}

func TestCopyKeepsHardlinks(t *testing.T) {
	dir := writeContext(t, map[string]string{"Dockerfile": "FROM scratch\nCOPY d /d\n", "d/a": "same\n"})
	if err := os.Link(filepath.Join(dir, "d/a"), filepath.Join(dir, "d/b")); err != nil {
		t.Fatal(err)
	}
	res, err := Build(context.Background(), Request{Context: dir, Platform: amd64}, WithWorkDir(t.TempDir()))
	if err != nil {
		t.Fatal(err)
	}
	defer res.Close()
	got := map[string]fileInfo{}
	for _, f := range listFiles(t, res.Image) {
		got[f.Path] = f
	}
	if got["/d/a"].Type != "file" || got["/d/b"].Type != "hardlink" || got["/d/b"].Link != "d/a" {
		t.Errorf("tree = %+v", got)
	}
}

func TestCompressionLevel(t *testing.T) {
	files := map[string]string{
		"Dockerfile": "FROM scratch\nCOPY big.txt /\n",
		"big.txt":    strings.Repeat("kiln compresses this line well\n", 4096),
	}
	tests := []struct {
		name    string
		level   int
		wantErr bool
	}{
		{name: "none", level: 0},
		{name: "best", level: 9},
		{name: "default", level: -1},
		{name: "out of range", level: 10, wantErr: true},
	}
	sizes := map[string]int64{}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			res, err := Build(context.Background(), Request{Context: writeContext(t, files), Platform: amd64},
				WithWorkDir(t.TempDir()), WithCompressionLevel(tt.level))
			if tt.wantErr {
				if err == nil {
					res.Close()
					t.Fatal("built with an impossible gzip level")
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			defer res.Close()
			layers, err := res.Image.Layers()
			if err != nil || len(layers) != 1 {
				t.Fatalf("layers %d, %v: want 1", len(layers), err)
			}
			if sizes[tt.name], err = layers[0].Size(); err != nil {
				t.Fatal(err)
			}
		})
	}
	if !(sizes["none"] > sizes["default"] && sizes["default"] >= sizes["best"]) {
		t.Errorf("layer sizes %v: want none > default >= best", sizes)
	}
}
