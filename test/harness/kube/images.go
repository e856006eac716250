//go:build linux

package kube

import (
	"archive/tar"
	"bytes"
	"context"
	"fmt"
	"io"
	"os"
	"os/exec"
	"strings"
	"time"

	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/google/go-containerregistry/pkg/v1/tarball"
	"github.com/google/go-containerregistry/pkg/v1/types"
)

// imageFile is one entry of a hand-made image layer.
type imageFile struct {
	name  string
	mode  int64
	body  []byte
	link  string // a symlink to link when set
	isDir bool
}

// layerTar returns a tar of files, with fixed times and root ownership.
func layerTar(files []imageFile) ([]byte, error) {
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	mtime := time.Unix(946684800, 0)
	for _, f := range files {
		h := &tar.Header{Name: f.name, Mode: f.mode, ModTime: mtime, Typeflag: tar.TypeReg, Size: int64(len(f.body)), Format: tar.FormatPAX}
		switch {
		case f.isDir:
			h.Typeflag, h.Size, h.Name = tar.TypeDir, 0, f.name+"/"
		case f.link != "":
			h.Typeflag, h.Size, h.Linkname = tar.TypeSymlink, 0, f.link
		}
		if err := tw.WriteHeader(h); err != nil {
			return nil, err
		}
		if h.Typeflag == tar.TypeReg {
			if _, err := tw.Write(f.body); err != nil {
				return nil, err
			}
		}
	}
	if err := tw.Close(); err != nil {
		return nil, err
	}
	return buf.Bytes(), nil
}

// pushFilesImage pushes, over plain HTTP, a linux/amd64 OCI image of one
// layer holding files, with config cfg, and returns its reference by
// digest (repo@sha256:...), which never needs a tag resolved again.
func pushFilesImage(ctx context.Context, ref string, cfg v1.Config, files []imageFile) (string, error) {
	tb, err := layerTar(files)
	if err != nil {
		return "", err
	}
	layer, err := tarball.LayerFromOpener(func() (io.ReadCloser, error) { return io.NopCloser(bytes.NewReader(tb)), nil },
		tarball.WithMediaType(types.OCILayer))
	if err != nil {
		return "", err
	}
	img := mutate.MediaType(empty.Image, types.OCIManifestSchema1)
	img = mutate.ConfigMediaType(img, types.OCIConfigJSON)
	img, err = mutate.ConfigFile(img, &v1.ConfigFile{
		OS: "linux", Architecture: "amd64", Config: cfg, RootFS: v1.RootFS{Type: "layers"},
	})
	if err != nil {
		return "", err
	}
	if img, err = mutate.AppendLayers(img, layer); err != nil {
		return "", err
	}
	r, err := name.ParseReference(ref, name.Insecure)
	if err != nil {
		return "", fmt.Errorf("parsing %s: %w", ref, err)
	}
	if err := remote.Write(r, img, remote.WithContext(ctx)); err != nil {
		return "", fmt.Errorf("pushing %s: %w", ref, err)
	}
	d, err := img.Digest()
	if err != nil {
		return "", err
	}
	return r.Context().Name() + "@" + d.String(), nil
}

// pushPause pushes the pause program .ci/k8s.sh built as the real node's
// sandbox image, registry/kiln-test/pause:1.
func pushPause(ctx context.Context, registry, pauseBin string) (string, error) {
	b, err := os.ReadFile(pauseBin)
	if err != nil {
		return "", err
	}
	ref := registry + "/kiln-test/pause:1"
	if _, err := pushFilesImage(ctx, ref, v1.Config{Entrypoint: []string{"/pause"}},
		[]imageFile{{name: "pause", mode: 0o755, body: b}}); err != nil {
		return "", err
	}
	return ref, nil
}

// HostBusybox is the static busybox PushBusybox puts in its image (Debian's
// busybox-static, which .ci/deps.sh installs).
const HostBusybox = "/bin/busybox"

// PushBusybox pushes a linux/amd64 image of the host's static busybox, with
// a symlink per applet in /bin, /tmp and /dev, to registry (host:port) as
// kiln-test/busybox:1 over plain HTTP, and returns its reference by
// digest. The real node of a Cluster runs it; the Cmd is sh.
func PushBusybox(ctx context.Context, registry string) (string, error) {
	b, err := os.ReadFile(HostBusybox)
	if err != nil {
		return "", fmt.Errorf("reading %s (apt-get install busybox-static): %w", HostBusybox, err)
	}
	out, err := exec.CommandContext(ctx, HostBusybox, "--list").Output()
	if err != nil {
		return "", fmt.Errorf("%s --list: %w", HostBusybox, err)
	}
	files := []imageFile{
		{name: "bin", mode: 0o755, isDir: true},
		{name: "bin/busybox", mode: 0o755, body: b},
		{name: "dev", mode: 0o755, isDir: true},
		{name: "etc", mode: 0o755, isDir: true},
		{name: "etc/passwd", mode: 0o644, body: []byte("root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/nonexistent:/bin/false\n")},
		{name: "etc/group", mode: 0o644, body: []byte("root:x:0:\nnogroup:x:65534:\n")},
		{name: "proc", mode: 0o755, isDir: true},
		{name: "root", mode: 0o700, isDir: true},
		{name: "sys", mode: 0o755, isDir: true},
		{name: "tmp", mode: 0o1777, isDir: true},
	}
	for _, a := range strings.Fields(string(out)) {
		if a != "busybox" && !strings.Contains(a, "/") {
			files = append(files, imageFile{name: "bin/" + a, mode: 0o777, link: "busybox"})
		}
	}
	return pushFilesImage(ctx, registry+"/kiln-test/busybox:1", v1.Config{
		Env: []string{"PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"},
		Cmd: []string{"sh"},
	}, files)
}
