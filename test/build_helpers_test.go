package test

import (
	"archive/tar"
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path"
	"path/filepath"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/layout"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/google/go-containerregistry/pkg/v1/tarball"
	"github.com/google/go-containerregistry/pkg/v1/types"
)

// This file holds what the `kiln build` end-to-end tests share: base images
// made of hand-written layers, pushed to the harness registry, and a flat
// listing of an image's file tree to compare builds by.

// lentry is one entry of a hand-written layer.
type lentry struct {
	name     string
	typ      byte
	mode     int64
	uid, gid int
	body     string
	link     string
}

func ldir(name string) lentry { return lentry{name: name, typ: tar.TypeDir, mode: 0o755} }
func lfile(name, body string) lentry {
	return lentry{name: name, typ: tar.TypeReg, mode: 0o644, body: body}
}
func lsymlink(name, target string) lentry {
	return lentry{name: name, typ: tar.TypeSymlink, mode: 0o777, link: target}
}
func lhardlink(name, target string) lentry {
	return lentry{name: name, typ: tar.TypeLink, mode: 0o644, link: target}
}
func lowned(e lentry, uid, gid int) lentry { e.uid, e.gid = uid, gid; return e }

// layerModTimeBuild is the mtime of every hand-written layer entry.
var layerModTimeBuild = time.Unix(1_600_000_000, 0)

// rawLayerTar writes entries as an uncompressed tar, exactly as given: no
// cleaning of names, so hostile layers can be written too.
func rawLayerTar(t *testing.T, entries ...lentry) []byte {
	t.Helper()
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	for _, e := range entries {
		hdr := &tar.Header{Name: e.name, Typeflag: e.typ, Mode: e.mode, Uid: e.uid, Gid: e.gid,
			Linkname: e.link, ModTime: layerModTimeBuild, Format: tar.FormatPAX}
		if e.typ == tar.TypeReg {
			hdr.Size = int64(len(e.body))
		}
		if err := tw.WriteHeader(hdr); err != nil {
			t.Fatalf("layer entry %s: %v", e.name, err)
		}
		if e.typ == tar.TypeReg {
			if _, err := io.WriteString(tw, e.body); err != nil {
				t.Fatal(err)
			}
		}
	}
	if err := tw.Close(); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

// handLayer is a gzip OCI layer of entries.
func handLayer(t *testing.T, entries ...lentry) v1.Layer {
	t.Helper()
	data := rawLayerTar(t, entries...)
	l, err := tarball.LayerFromOpener(func() (io.ReadCloser, error) { return io.NopCloser(bytes.NewReader(data)), nil },
		tarball.WithMediaType(types.OCILayer))
	if err != nil {
		t.Fatal(err)
	}
	return l
}

// handImage is an OCI image for plat ("os/arch") with cfg and layers.
func handImage(t *testing.T, plat string, cfg v1.Config, layers ...v1.Layer) v1.Image {
	t.Helper()
	p, err := v1.ParsePlatform(plat)
	if err != nil {
		t.Fatal(err)
	}
	img := mutate.ConfigMediaType(mutate.MediaType(empty.Image, types.OCIManifestSchema1), types.OCIConfigJSON)
	img, err = mutate.ConfigFile(img, &v1.ConfigFile{
		OS: p.OS, Architecture: p.Architecture, Variant: p.Variant, Config: cfg,
		Created: v1.Time{Time: layerModTimeBuild.UTC()}, RootFS: v1.RootFS{Type: "layers"},
	})
	if err != nil {
		t.Fatal(err)
	}
	img, err = mutate.AppendLayers(img, layers...)
	if err != nil {
		t.Fatal(err)
	}
	return img
}

// pushHandImage pushes img to ref (plain HTTP) and returns its digest.
func pushHandImage(t *testing.T, ref string, img v1.Image) v1.Hash {
	t.Helper()
	r, err := name.ParseReference(ref, name.Insecure)
	if err != nil {
		t.Fatal(err)
	}
	if err := remote.Write(r, img, remote.WithContext(t.Context())); err != nil {
		t.Fatalf("pushing %s: %v", ref, err)
	}
	h, err := img.Digest()
	if err != nil {
		t.Fatal(err)
	}
	return h
}

// pushHandIndex pushes imgs as an OCI index to ref, each descriptor with the
// platform its config names.
func pushHandIndex(t *testing.T, ref string, imgs ...v1.Image) v1.Hash {
	t.Helper()
	idx := mutate.IndexMediaType(empty.Index, types.OCIImageIndex)
	for _, img := range imgs {
		cf, err := img.ConfigFile()
		if err != nil {
			t.Fatal(err)
		}
		idx = mutate.AppendManifests(idx, mutate.IndexAddendum{Add: img, Descriptor: v1.Descriptor{Platform: cf.Platform()}})
	}
	r, err := name.ParseReference(ref, name.Insecure)
	if err != nil {
		t.Fatal(err)
	}
	if err := remote.WriteIndex(r, idx, remote.WithContext(t.Context())); err != nil {
		t.Fatalf("pushing index %s: %v", ref, err)
	}
	h, err := idx.Digest()
	if err != nil {
		t.Fatal(err)
	}
	return h
}

// baseFSLayer is the file tree of the "base" images the build tests start
// from, the same as the builder corpus' fake base:1: users and groups, a
// home owned by a user, and a symlinked folder (/var/run → /run).
func baseFSLayer(t *testing.T, arch string) v1.Layer {
	return handLayer(t,
		ldir("bin"), lfile("bin/sh", "#!fake shell\n"),
		ldir("etc"), lfile("etc/arch", arch+"\n"),
		lfile("etc/passwd", "root:x:0:0:root:/root:/bin/sh\napp:x:1000:1001:app:/home/app:/bin/sh\n"),
		lfile("etc/group", "root:x:0:\nstaff:x:50:\napp:x:1001:\n"),
		ldir("home"), lowned(ldir("home/app"), 1000, 1001), lowned(lfile("home/app/.profile", "x\n"), 1000, 1001),
		ldir("run"), ldir("var"), lsymlink("var/run", "/run"),
		ldir("usr"), ldir("usr/local"), ldir("usr/local/bin"),
	)
}

// baseConfig is the config of the base images, as the corpus' base:1.
func baseConfig() v1.Config {
	return v1.Config{
		Env: []string{"PATH=/usr/local/bin:/usr/bin:/bin", "BASE=1"}, Cmd: []string{"/bin/sh"},
		Labels: map[string]string{"base": "1"},
	}
}

// pushBaseImages pushes library/base:1 (an index of linux/amd64 and
// linux/arm64, each with its own layer) to addr and returns the images by
// architecture.
func pushBaseImages(t *testing.T, addr string) map[string]v1.Image {
	t.Helper()
	imgs := map[string]v1.Image{}
	for _, arch := range []string{"amd64", "arm64"} {
		imgs[arch] = handImage(t, "linux/"+arch, baseConfig(), baseFSLayer(t, arch))
	}
	pushHandIndex(t, addr+"/library/base:1", imgs["amd64"], imgs["arm64"])
	return imgs
}

// fsEntry is one entry of an image's flattened file tree.
type fsEntry struct {
	Path   string
	Type   string
	Mode   string
	UID    int
	GID    int
	Size   int64
	SHA256 string
	Link   string
}

func (e fsEntry) String() string {
	s := fmt.Sprintf("%s %s %s %d:%d", e.Path, e.Type, e.Mode, e.UID, e.GID)
	if e.Type == "file" {
		s += fmt.Sprintf(" %dB %s", e.Size, e.SHA256)
	}
	if e.Link != "" {
		s += " -> " + e.Link
	}
	return s
}

// flatten lists img's file tree as a container runtime unpacks it: layers
// applied in order, a later entry replacing an earlier one of the same path
// (within a layer too, as tar extraction does, where mutate.Extract would
// keep the first), whiteouts and opaque folders removing lower entries, a
// non-folder replacing a folder removing what it held. It also returns the
// paths a single layer holds more than once: readers disagree on which copy
// counts, so an image should have none.
func flatten(t *testing.T, img v1.Image) ([]fsEntry, []string) {
	t.Helper()
	layers, err := img.Layers()
	if err != nil {
		t.Fatal(err)
	}
	tree := map[string]fsEntry{}
	var dups []string
	for i, l := range layers {
		rc, err := l.Uncompressed()
		if err != nil {
			t.Fatalf("layer %d: %v", i, err)
		}
		dups = append(dups, applyLayer(t, tree, tar.NewReader(rc), i)...)
		rc.Close()
	}
	out := make([]fsEntry, 0, len(tree))
	for _, e := range tree {
		out = append(out, e)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Path < out[j].Path })
	return out, dups
}

// applyLayer applies one layer's entries to tree and returns the paths it
// holds twice.
func applyLayer(t *testing.T, tree map[string]fsEntry, tr *tar.Reader, n int) []string {
	t.Helper()
	return applyEntries(tree, readLayerEntries(t, tr, n), n)
}

// layerEntry is one tar entry of a layer, whiteouts included (their Path
// is the whiteout's own).
type layerEntry struct {
	fsEntry
	whiteout bool
}

// readLayerEntries lists a layer's tar entries in order.
func readLayerEntries(t *testing.T, tr *tar.Reader, n int) []layerEntry {
	t.Helper()
	var out []layerEntry
	for {
		hdr, err := tr.Next()
		if errors.Is(err, io.EOF) {
			return out
		}
		if err != nil {
			t.Fatalf("layer %d: %v", n, err)
		}
		p := path.Clean("/" + hdr.Name)
		e := fsEntry{Path: p, Type: tarTypeName(hdr.Typeflag), Mode: fmt.Sprintf("%04o", hdr.Mode&0o7777),
			UID: hdr.Uid, GID: hdr.Gid, Link: hdr.Linkname}
		if hdr.Typeflag == tar.TypeLink {
			e.Link = path.Clean("/" + hdr.Linkname)
		}
		if hdr.Typeflag == tar.TypeReg {
			h := sha256.New()
			size, err := io.Copy(h, tr)
			if err != nil {
				t.Fatal(err)
			}
			e.Size, e.SHA256 = size, hex.EncodeToString(h.Sum(nil))[:16]
		}
		out = append(out, layerEntry{fsEntry: e, whiteout: strings.HasPrefix(path.Base(p), ".wh.")})
	}
}

// applyEntries applies layer n's entries to tree and returns the paths it
// holds twice.
func applyEntries(tree map[string]fsEntry, entries []layerEntry, n int) []string {
	seen := map[string]bool{}
	var dups []string
	for _, le := range entries {
		e := le.fsEntry
		dir, base := path.Split(e.Path)
		switch {
		case base == ".wh..wh..opq":
			removeUnder(tree, path.Clean(dir), func(e fsEntry) bool { return !seen[e.Path] })
			continue
		case strings.HasPrefix(base, ".wh."):
			gone := path.Join(dir, strings.TrimPrefix(base, ".wh."))
			delete(tree, gone)
			removeUnder(tree, gone, func(fsEntry) bool { return true })
			continue
		}
		if seen[e.Path] {
			dups = append(dups, fmt.Sprintf("layer %d has %s twice", n, e.Path))
		}
		seen[e.Path] = true
		if old, ok := tree[e.Path]; ok && old.Type == "dir" && e.Type != "dir" {
			removeUnder(tree, e.Path, func(fsEntry) bool { return true })
		}
		tree[e.Path] = e
	}
	return dups
}

// removeUnder deletes the entries below folder dir that drop says to.
func removeUnder(tree map[string]fsEntry, dir string, drop func(fsEntry) bool) {
	prefix := strings.TrimSuffix(dir, "/") + "/"
	for p, e := range tree {
		if strings.HasPrefix(p, prefix) && drop(e) {
			delete(tree, p)
		}
	}
}

func tarTypeName(t byte) string {
	switch t {
	case tar.TypeDir:
		return "dir"
	case tar.TypeReg:
		return "file"
	case tar.TypeSymlink:
		return "symlink"
	case tar.TypeLink:
		return "hardlink"
	case tar.TypeChar:
		return "char"
	case tar.TypeBlock:
		return "block"
	case tar.TypeFifo:
		return "fifo"
	}
	return fmt.Sprintf("type%q", t)
}

// byPath indexes a listing.
func byPath(list []fsEntry) map[string]fsEntry {
	out := make(map[string]fsEntry, len(list))
	for _, e := range list {
		out[e.Path] = e
	}
	return out
}

// layoutImage reads the image named refName from the OCI layout in dir.
func layoutImage(t *testing.T, dir, refName string) v1.Image {
	t.Helper()
	idx, err := layout.ImageIndexFromPath(dir)
	if err != nil {
		t.Fatalf("OCI layout %s: %v", dir, err)
	}
	im, err := idx.IndexManifest()
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, d := range im.Manifests {
		n := d.Annotations[refNameAnnotation]
		if n == refName {
			img, err := idx.Image(d.Digest)
			if err != nil {
				t.Fatalf("OCI layout %s, %s: %v", dir, refName, err)
			}
			return img
		}
		names = append(names, n)
	}
	t.Fatalf("OCI layout %s has no image named %q (names: %q)", dir, refName, names)
	return nil
}

// configOf reads an image's config file.
func configOf(t *testing.T, img v1.Image) *v1.ConfigFile {
	t.Helper()
	cf, err := img.ConfigFile()
	if err != nil {
		t.Fatal(err)
	}
	return cf
}

// needTool skips the test when a program is not installed.
func needTool(t *testing.T, prog string) {
	t.Helper()
	if _, err := exec.LookPath(prog); err != nil {
		t.Skipf("%s is not installed (.ci/deps.sh installs it): skipping", prog)
	}
}

// runTool runs an external program, fails the test if it fails, and
// returns its standard output.
func runTool(t *testing.T, dir string, prog string, args ...string) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), defaultTimeout)
	defer cancel()
	stdout, stderr, err := toolRun(ctx, t, dir, prog, args...)
	if err != nil {
		t.Fatalf("%s %s: %v\n%s%s", prog, strings.Join(args, " "), err, stdout, stderr)
	}
	return stdout
}

// toolOutput runs an external program in dir and returns its standard
// output and error together.
func toolOutput(t *testing.T, dir string, prog string, args ...string) (string, error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), defaultTimeout)
	defer cancel()
	return toolOutputCtx(ctx, t, dir, prog, args...)
}

// toolOutputCtx is toolOutput under ctx (cleanups run after t.Context()
// is cancelled).
func toolOutputCtx(ctx context.Context, t *testing.T, dir string, prog string, args ...string) (string, error) {
	t.Helper()
	stdout, stderr, err := toolRun(ctx, t, dir, prog, args...)
	return stdout + stderr, err
}

// toolRun runs an external program with a hermetic environment.
func toolRun(ctx context.Context, t *testing.T, dir string, prog string, args ...string) (string, string, error) {
	t.Helper()
	return toolRunEnv(ctx, t, dir, nil, prog, args...)
}

// toolRunEnv is toolRun with env added to the environment (later wins).
func toolRunEnv(ctx context.Context, t *testing.T, dir string, env []string, prog string, args ...string) (string, string, error) {
	t.Helper()
	cmd := exec.CommandContext(ctx, prog, args...)
	cmd.Dir = dir
	// The containers tools insist on an auth file existing when
	// DOCKER_CONFIG is set: give them an empty one of their own.
	cmd.Env = append(append(baseEnv(), "REGISTRY_AUTH_FILE="+emptyAuthFile(t)), env...)
	cmd.WaitDelay = 5 * time.Second
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	start := time.Now()
	err := cmd.Run()
	t.Logf("%s %s: %v in %.1fs", prog, strings.Join(args, " "), err, time.Since(start).Seconds())
	return stdout.String(), stderr.String(), err
}

// emptyAuthFile writes a credential-free auth.json for the containers
// tools, next to the kiln binary (TestMain's folder, removed at the end).
func emptyAuthFile(t *testing.T) string {
	t.Helper()
	dir := filepath.Dir(kilnBin)
	p := filepath.Join(dir, "containers-auth.json")
	if _, err := os.Stat(p); err == nil {
		return p
	}
	tmp, err := os.CreateTemp(dir, "auth-*")
	if err != nil {
		t.Fatal(err)
	}
	defer os.Remove(tmp.Name())
	if _, err := tmp.WriteString(`{"auths":{}}`); err != nil {
		t.Fatal(err)
	}
	if err := tmp.Close(); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(tmp.Name(), p); err != nil { // atomic: parallel tests may race here
		t.Fatal(err)
	}
	return p
}

// writeContext writes files (slash paths → contents) under dir with modes
// fixed to 0644 (files) and 0755 (folders), whatever the umask.
func writeContext(t *testing.T, dir string, files map[string]string) {
	t.Helper()
	for p, body := range files {
		full := filepath.Join(dir, filepath.FromSlash(p))
		if err := os.MkdirAll(filepath.Dir(full), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(full, []byte(body), 0o644); err != nil {
			t.Fatal(err)
		}
		if err := os.Chmod(full, 0o644); err != nil {
			t.Fatal(err)
		}
	}
}

// readDigestFile reads a --digest-file.
func readDigestFile(t *testing.T, path string) v1.Hash {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("digest file: %v", err)
	}
	h, err := v1.NewHash(strings.TrimSpace(string(data)))
	if err != nil {
		t.Fatalf("digest file %s holds %q: %v", path, data, err)
	}
	return h
}
