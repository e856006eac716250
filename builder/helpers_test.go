package builder

import (
	"archive/tar"
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"sort"
	"testing"
	"time"

	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/tarball"
	"github.com/google/go-containerregistry/pkg/v1/types"
	specs "github.com/opencontainers/image-spec/specs-go/v1"

	"kiln/platform"
)

// fileInfo is one entry of an image's flattened file tree.
type fileInfo struct {
	Path   string `json:"path"`
	Type   string `json:"type"`
	Mode   string `json:"mode"`
	UID    int    `json:"uid"`
	GID    int    `json:"gid"`
	Size   int64  `json:"size,omitempty"`
	SHA256 string `json:"sha256,omitempty"`
	Link   string `json:"link,omitempty"`
}

// listFiles flattens img with mutate.Extract into a sorted listing.
func listFiles(t testing.TB, img v1.Image) []fileInfo {
	t.Helper()
	rc := mutate.Extract(img)
	defer rc.Close()
	tr := tar.NewReader(rc)
	var out []fileInfo
	for {
		hdr, err := tr.Next()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		fi := fileInfo{Path: "/" + trimSlash(hdr.Name), Type: typeName(hdr.Typeflag),
			Mode: fmt.Sprintf("%04o", hdr.Mode&0o7777), UID: hdr.Uid, GID: hdr.Gid, Link: hdr.Linkname}
		if hdr.Typeflag == tar.TypeReg {
			h := sha256.New()
			n, err := io.Copy(h, tr)
			if err != nil {
				t.Fatal(err)
			}
			fi.Size, fi.SHA256 = n, hex.EncodeToString(h.Sum(nil))[:16]
		}
		out = append(out, fi)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Path < out[j].Path })
	return out
}

func trimSlash(s string) string {
	for len(s) > 0 && s[len(s)-1] == '/' {
		s = s[:len(s)-1]
	}
	return s
}

func typeName(t byte) string {
	switch t {
	case tar.TypeDir:
		return "dir"
	case tar.TypeReg:
		return "file"
	case tar.TypeSymlink:
		return "symlink"
	case tar.TypeLink:
		return "hardlink"
	}
	return string(t)
}

// tfile is an entry of a fixture layer.
type tfile struct {
	name, body, link string
	typ              byte
	mode             int64
	uid, gid         int
}

func fdir(name string) tfile { return tfile{name: name, typ: tar.TypeDir, mode: 0o755} }
func ffile(name, body string) tfile {
	return tfile{name: name, body: body, typ: tar.TypeReg, mode: 0o644}
}
func flink(name, target string) tfile {
	return tfile{name: name, link: target, typ: tar.TypeSymlink, mode: 0o777}
}
func fowned(f tfile, uid, gid int) tfile { f.uid, f.gid = uid, gid; return f }

// fixtureLayer builds a layer from entries, deterministically.
func fixtureLayer(t testing.TB, files ...tfile) v1.Layer {
	t.Helper()
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	for _, f := range files {
		hdr := &tar.Header{Name: f.name, Typeflag: f.typ, Mode: f.mode, Linkname: f.link,
			Uid: f.uid, Gid: f.gid, Size: int64(len(f.body)), ModTime: time.Unix(1_600_000_000, 0)}
		if f.typ != tar.TypeReg {
			hdr.Size = 0
		}
		if err := tw.WriteHeader(hdr); err != nil {
			t.Fatal(err)
		}
		if _, err := tw.Write([]byte(f.body[:hdr.Size])); err != nil {
			t.Fatal(err)
		}
	}
	if err := tw.Close(); err != nil {
		t.Fatal(err)
	}
	data := buf.Bytes()
	l, err := tarball.LayerFromOpener(func() (io.ReadCloser, error) { return io.NopCloser(bytes.NewReader(data)), nil },
		tarball.WithMediaType(types.OCILayer))
	if err != nil {
		t.Fatal(err)
	}
	return l
}

// fixtureImage builds an OCI image of layers with cfg for p.
func fixtureImage(t testing.TB, p specs.Platform, cfg v1.Config, layers ...v1.Layer) v1.Image {
	t.Helper()
	img := mutate.ConfigMediaType(mutate.MediaType(empty.Image, types.OCIManifestSchema1), types.OCIConfigJSON)
	img, err := mutate.AppendLayers(img, layers...)
	if err != nil {
		t.Fatal(err)
	}
	cf, err := img.ConfigFile()
	if err != nil {
		t.Fatal(err)
	}
	cf = cf.DeepCopy()
	cf.OS, cf.Architecture, cf.Variant = p.OS, p.Architecture, p.Variant
	cf.Config = cfg
	cf.Created = v1.Time{Time: time.Unix(1_600_000_000, 0).UTC()}
	img, err = mutate.ConfigFile(img, cf)
	if err != nil {
		t.Fatal(err)
	}
	return img
}

// baseLayer is the filesystem of the fixture "base:1" for arch.
func baseLayer(t testing.TB, arch string) v1.Layer {
	return fixtureLayer(t,
		fdir("bin"), ffile("bin/sh", "#!fake shell\n"),
		fdir("etc"), ffile("etc/arch", arch+"\n"),
		ffile("etc/passwd", "root:x:0:0:root:/root:/bin/sh\napp:x:1000:1001:app:/home/app:/bin/sh\n"),
		ffile("etc/group", "root:x:0:\nstaff:x:50:\napp:x:1001:\n"),
		fdir("home"), fowned(fdir("home/app"), 1000, 1001), fowned(ffile("home/app/.profile", "x\n"), 1000, 1001),
		fdir("run"), fdir("var"), flink("var/run", "/run"),
		fdir("usr"), fdir("usr/local"), fdir("usr/local/bin"),
	)
}

// fakeBases serves fixture images by reference and architecture.
type fakeBases map[string]v1.Image

func (f fakeBases) Image(_ context.Context, ref name.Reference, p specs.Platform) (v1.Image, error) {
	key := ref.Context().RepositoryStr() + ":" + ref.Identifier() + "@" + platform.Format(p)
	if img, ok := f[key]; ok {
		return img, nil
	}
	return nil, fmt.Errorf("%s: fixture not found", key)
}

var (
	amd64 = platform.MustParse("linux/amd64")
	arm64 = platform.MustParse("linux/arm64")
)

// fixtures are the base images the corpus builds on.
func fixtures(t testing.TB) fakeBases {
	f := fakeBases{}
	for _, p := range []specs.Platform{amd64, arm64} {
		base := fixtureImage(t, p, v1.Config{
			Env: []string{"PATH=/usr/local/bin:/usr/bin:/bin", "BASE=1"}, Cmd: []string{"/bin/sh"},
			Labels: map[string]string{"base": "1"},
		}, baseLayer(t, p.Architecture))
		f["library/base:1@"+platform.Format(p)] = base
		f["library/onbuild:1@"+platform.Format(p)] = fixtureImage(t, p, v1.Config{
			Env:     []string{"PATH=/usr/local/bin:/usr/bin:/bin"},
			OnBuild: []string{"COPY trigger.txt /from-trigger.txt", "ENV TRIGGERED=yes"},
		}, baseLayer(t, p.Architecture))
	}
	return f
}

func configWithTriggers(triggers []string) v1.Config {
	return v1.Config{OnBuild: triggers}
}
