package test

import (
	"archive/tar"
	"fmt"
	"io"
	"maps"
	"slices"
	"strings"
	"testing"

	v1 "github.com/google/go-containerregistry/pkg/v1"
)

// layerListing lists each layer of img: its digest and entries.
func layerListing(t *testing.T, img v1.Image) ([]v1.Hash, [][]layerEntry) {
	t.Helper()
	var digests []v1.Hash
	var out [][]layerEntry
	eachLayer(t, img, func(i int, l v1.Layer, r io.Reader) {
		d, err := l.Digest()
		if err != nil {
			t.Fatal(err)
		}
		digests = append(digests, d)
		out = append(out, readLayerEntries(t, tar.NewReader(r), i))
	})
	return digests, out
}

// compareSnapshots lists how the overlay build differs from the walk build
// ("- " overlay, "+ " walk): outcome, config, flattened tree, and per layer
// the entries other than whiteouts and the tree the layers give up to it;
// then every file name of the final image, read: its content and the other
// names of its inode (a hardlink entry says only what it pointed to when
// written). The whiteouts themselves may legitimately take different forms
// (one opaque marker or one whiteout per name: builder/snapshot/doc.go), so
// they are compared through their effect. Whether the layers are
// byte-identical is logged, and with sameBytes a difference.
func compareSnapshots(t *testing.T, overlay, walk runBuild, sameBytes bool) []string {
	t.Helper()
	if (overlay.img == nil) != (walk.img == nil) || overlay.res.code != walk.res.code {
		return []string{fmt.Sprintf("- exit %d", overlay.res.code), fmt.Sprintf("+ exit %d", walk.res.code)}
	}
	if overlay.img == nil {
		return nil
	}
	out := diffConfigs(configOf(t, overlay.img), configOf(t, walk.img))
	od, ol := layerListing(t, overlay.img)
	wd, wl := layerListing(t, walk.img)
	if len(ol) != len(wl) {
		return append(out, fmt.Sprintf("- %d layers", len(ol)), fmt.Sprintf("+ %d layers", len(wl)))
	}
	identical := 0
	otree, wtree := map[string]fsEntry{}, map[string]fsEntry{}
	for i := range ol {
		switch {
		case od[i] == wd[i]:
			identical++
		case sameBytes:
			out = append(out, fmt.Sprintf("- layer %d %s", i, od[i]), fmt.Sprintf("+ layer %d %s", i, wd[i]))
		default:
			t.Logf("layer %d differs in bytes: overlay %s, walk %s", i, od[i], wd[i])
		}
		out = append(out, prefixed(fmt.Sprintf("layer %d: ", i), diffTrees(nonWhiteouts(ol[i]), nonWhiteouts(wl[i])))...)
		applyEntries(otree, ol[i], i)
		applyEntries(wtree, wl[i], i)
		out = append(out, prefixed(fmt.Sprintf("tree after layer %d: ", i), diffTrees(sortedTree(otree), sortedTree(wtree)))...)
	}
	t.Logf("overlay and walk: %d of %d layers byte-identical", identical, len(ol))
	return append(out, diffNames(imageFiles(t, overlay.img), imageFiles(t, walk.img))...)
}

// diffNames compares two images' file names as read: content digest and
// the names of the same inode.
func diffNames(overlay, walk map[string]imageFile) []string {
	describe := func(files map[string]imageFile, links map[string][]string, p string) (string, bool) {
		f, ok := files[p]
		if !ok {
			return "", false
		}
		return fmt.Sprintf("read %s %dB %s, names %s", p, f.size, f.sum, strings.Join(links[p], " ")), true
	}
	ol, wl := linkNames(overlay), linkNames(walk)
	paths := slices.Sorted(maps.Keys(overlay))
	for p := range walk {
		if _, ok := overlay[p]; !ok {
			paths = append(paths, p)
		}
	}
	slices.Sort(paths)
	var out []string
	for _, p := range paths {
		o, inO := describe(overlay, ol, p)
		w, inW := describe(walk, wl, p)
		switch {
		case !inO:
			out = append(out, "+ "+w)
		case !inW:
			out = append(out, "- "+o)
		case o != w:
			out = append(out, "- "+o, "+ "+w)
		}
	}
	return out
}

func prefixed(prefix string, lines []string) []string {
	for i, l := range lines {
		lines[i] = l[:2] + prefix + l[2:]
	}
	return lines
}

func nonWhiteouts(l []layerEntry) []fsEntry {
	var out []fsEntry
	for _, e := range l {
		if !e.whiteout {
			out = append(out, e.fsEntry)
		}
	}
	return out
}

func sortedTree(tree map[string]fsEntry) []fsEntry {
	out := slices.Collect(maps.Values(tree))
	slices.SortFunc(out, func(a, b fsEntry) int { return strings.Compare(a.Path, b.Path) })
	return out
}
