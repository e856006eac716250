package test

import (
	"archive/tar"
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"maps"
	"os"
	"path"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	v1 "github.com/google/go-containerregistry/pkg/v1"
)

// checkRunCase checks case.json's expectations of the built image.
func checkRunCase(t *testing.T, c runCase, b runBuild, probs *problems) {
	t.Helper()
	if b.img == nil {
		return
	}
	errorf := func(format string, args ...any) { probs.add(&b, fmt.Sprintf(format, args...)) }
	tree, dups := flatten(t, b.img)
	for _, d := range dups {
		errorf("%s", d)
	}
	files := byPath(tree)
	for _, p := range c.Exists {
		if _, ok := files[p]; !ok {
			errorf("%s is missing from the image", p)
		}
	}
	for _, p := range c.Absent {
		if e, ok := files[p]; ok {
			errorf("%s should not be in the image: %s", p, e)
		}
	}
	for p, want := range c.Entries {
		e, ok := files[p]
		if got := strings.TrimPrefix(e.String(), p+" "); !ok || !strings.HasPrefix(got, want) {
			errorf("%s is %q, want %q", p, got, want)
		}
	}
	regular := imageFiles(t, b.img)
	contents := contentsOf(regular)
	links := linkNames(regular)
	for _, group := range c.Linked {
		for _, p := range group[1:] {
			if !slices.Contains(links[group[0]], p) {
				errorf("%s and %s should be one file; the names of each: %q, %q", group[0], p, links[group[0]], links[p])
			}
		}
	}
	for p, want := range c.Contains {
		if got, ok := contents[p]; !ok || !strings.Contains(got, want) {
			errorf("%s should hold %q; it holds %q (in image: %v)", p, want, got, ok)
		}
	}
	for p, want := range c.Equals {
		if got, ok := contents[p]; !ok || got != want {
			errorf("%s should be %q; it is %q (in image: %v)", p, want, got, ok)
		}
	}
	if c.Count != nil {
		n := 0
		for _, e := range tree {
			if strings.HasPrefix(e.Path, c.Count.Under+"/") {
				n++
			}
		}
		if n != c.Count.Want {
			errorf("%d entries under %s, want %d", n, c.Count.Under, c.Count.Want)
		}
	}
	cf := configOf(t, b.img)
	checkRunConfig(t, c, cf, errorf)
	hidden := slices.Concat(c.Hidden, slices.Collect(maps.Values(c.SecretFiles)), slices.Collect(maps.Values(c.SecretEnv)))
	if len(hidden) > 0 {
		for _, where := range findInLayout(t, b.out, b.img, hidden) {
			errorf("%s", where)
		}
		for _, s := range c.Hidden {
			if strings.Contains(b.res.output(), s) {
				errorf("%q shows in kiln's output", s)
			}
		}
	}
	if len(c.Mtimes) > 0 {
		mtimes := map[string]int64{}
		eachLayerEntry(t, b.img, func(_ int, hdr *tar.Header, _ io.Reader) {
			mtimes[path.Clean("/"+hdr.Name)] = hdr.ModTime.Unix()
		})
		for p, want := range c.Mtimes {
			if got, ok := mtimes[p]; !ok || got != want {
				errorf("%s has mtime %d, want %d (in a layer: %v)", p, got, want, ok)
			}
		}
	}
	for _, name := range c.CacheFiles {
		found, _ := filepath.Glob(filepath.Join(b.cacheDir, ".kiln", "run-cache", "*", name))
		if len(found) == 0 {
			errorf("no %s under %s/.kiln/run-cache/*/", name, b.cacheDir)
		}
	}
}

// checkRunConfig checks the config fields, the ARGs left out of Env and
// the empty_layer marks of RUN steps.
func checkRunConfig(t *testing.T, c runCase, cf *v1.ConfigFile, errorf func(string, ...any)) {
	t.Helper()
	raw, err := json.Marshal(cf.Config)
	if err != nil {
		t.Fatal(err)
	}
	var fields map[string]json.RawMessage
	if err := json.Unmarshal(raw, &fields); err != nil {
		t.Fatal(err)
	}
	for k, want := range c.Config {
		var w, g bytes.Buffer
		_ = json.Compact(&w, []byte(want))
		_ = json.Compact(&g, fields[k])
		if w.String() != g.String() {
			errorf("config %s is %s, want %s", k, g.String(), w.String())
		}
	}
	for _, name := range c.EnvLacks {
		for _, kv := range cf.Config.Env {
			if strings.HasPrefix(kv, name+"=") {
				errorf("config Env has %s: an ARG is no ENV", kv)
			}
		}
	}
	nonEmpty := 0
	emptyRuns := 0
	for _, h := range cf.History {
		if !h.EmptyLayer {
			nonEmpty++
		} else if strings.Contains(h.CreatedBy, "RUN") {
			emptyRuns++
		}
	}
	if nonEmpty != len(cf.RootFS.DiffIDs) {
		errorf("history has %d non-empty entries for %d layers", nonEmpty, len(cf.RootFS.DiffIDs))
	}
	if c.EmptyRunLayers != nil && emptyRuns != *c.EmptyRunLayers {
		errorf("history marks %d RUN steps empty_layer, want %d:\n%+v", emptyRuns, *c.EmptyRunLayers, cf.History)
	}
	for _, want := range c.History {
		if !slices.ContainsFunc(cf.History, func(h v1.History) bool { return h.CreatedBy == want }) {
			errorf("no history entry is created_by %q:\n%+v", want, cf.History)
		}
	}
}

// contentsOf is the content of every file of imageFiles up to 1 MiB.
func contentsOf(files map[string]imageFile) map[string]string {
	out := map[string]string{}
	for p, f := range files {
		if f.size <= 1<<20 {
			out[p] = f.content
		}
	}
	return out
}

// imageFile is a regular file of an image's flattened tree as a runtime
// extracting the layers in order leaves it: its content (up to 1 MiB),
// digest and inode. A hardlink entry is another name of its target's inode
// as the target is then; a later regular entry of a name is a new inode,
// which the name's former links do not follow.
type imageFile struct {
	content string
	sum     string
	size    int64
	inode   int
}

// imageFiles reads every regular file name of img's flattened tree.
func imageFiles(t *testing.T, img v1.Image) map[string]imageFile {
	t.Helper()
	out := map[string]imageFile{}
	inodes := 0
	eachLayerEntry(t, img, func(_ int, hdr *tar.Header, r io.Reader) {
		p := path.Clean("/" + hdr.Name)
		dir, base := path.Split(p)
		switch {
		case base == ".wh..wh..opq":
			// the layer's own entries below come after the marker in kiln's
			// and buildah's order; drop what lower layers held
			removeFiles(out, path.Clean(dir))
		case strings.HasPrefix(base, ".wh."):
			gone := path.Join(dir, strings.TrimPrefix(base, ".wh."))
			delete(out, gone)
			removeFiles(out, gone)
		case hdr.Typeflag == tar.TypeReg:
			h := sha256.New()
			var body bytes.Buffer
			n, err := io.Copy(io.MultiWriter(h, &limitedBuffer{&body, 1 << 20}), r)
			if err != nil {
				t.Fatal(err)
			}
			inodes++
			out[p] = imageFile{content: body.String(), sum: hex.EncodeToString(h.Sum(nil))[:16], size: n, inode: inodes}
		case hdr.Typeflag == tar.TypeLink:
			if f, ok := out[path.Clean("/"+hdr.Linkname)]; ok {
				out[p] = f
			} else {
				delete(out, p)
			}
		case hdr.Typeflag == tar.TypeDir:
			delete(out, p) // a folder keeps what it holds
		default:
			delete(out, p)
			removeFiles(out, p)
		}
	})
	return out
}

// limitedBuffer keeps the first n bytes written to it and takes the rest
// without keeping it.
type limitedBuffer struct {
	b *bytes.Buffer
	n int
}

func (l *limitedBuffer) Write(p []byte) (int, error) {
	if room := l.n - l.b.Len(); room > 0 {
		l.b.Write(p[:min(room, len(p))])
	}
	return len(p), nil
}

// linkNames is, for every name of files, the names of its inode (itself
// included), sorted.
func linkNames(files map[string]imageFile) map[string][]string {
	byInode := map[int][]string{}
	for p, f := range files {
		byInode[f.inode] = append(byInode[f.inode], p)
	}
	out := map[string][]string{}
	for _, names := range byInode {
		slices.Sort(names)
		for _, n := range names {
			out[n] = names
		}
	}
	return out
}

func removeFiles(m map[string]imageFile, dir string) {
	for p := range m {
		if strings.HasPrefix(p, dir+"/") {
			delete(m, p)
		}
	}
}

// eachLayer calls fn with each layer of img and its uncompressed tar, in
// order.
func eachLayer(t *testing.T, img v1.Image, fn func(i int, l v1.Layer, r io.Reader)) {
	t.Helper()
	layers, err := img.Layers()
	if err != nil {
		t.Fatal(err)
	}
	for i, l := range layers {
		rc, err := l.Uncompressed()
		if err != nil {
			t.Fatalf("layer %d: %v", i, err)
		}
		fn(i, l, rc)
		rc.Close()
	}
}

// eachLayerEntry calls fn for every tar entry of every layer of img, in
// order, with the layer's index.
func eachLayerEntry(t *testing.T, img v1.Image, fn func(int, *tar.Header, io.Reader)) {
	t.Helper()
	eachLayer(t, img, func(i int, _ v1.Layer, r io.Reader) {
		tr := tar.NewReader(r)
		for {
			hdr, err := tr.Next()
			if errors.Is(err, io.EOF) {
				return
			}
			if err != nil {
				t.Fatalf("layer %d: %v", i, err)
			}
			fn(i, hdr, tr)
		}
	})
}

// findInLayout says where any of texts shows in the OCI layout dir: any
// blob file as stored, and every layer of img uncompressed (names, link
// targets, PAX records and contents).
func findInLayout(t *testing.T, dir string, img v1.Image, texts []string) []string {
	t.Helper()
	var found []string
	look := func(where string, data []byte) {
		for _, s := range texts {
			if bytes.Contains(data, []byte(s)) {
				found = append(found, fmt.Sprintf("%q is in %s", s, where))
			}
		}
	}
	err := filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		data, err := os.ReadFile(p)
		look(p, data)
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	eachLayer(t, img, func(i int, _ v1.Layer, r io.Reader) {
		data, err := io.ReadAll(r)
		if err != nil {
			t.Fatalf("layer %d: %v", i, err)
		}
		look(fmt.Sprintf("layer %d (uncompressed)", i), data)
	})
	return found
}
