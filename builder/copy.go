package builder

import (
	"context"
	"errors"
	"fmt"
	"path"
	"strings"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/moby/buildkit/frontend/dockerfile/instructions"

	"kiln/builder/buildcontext"
	"kiln/builder/layercache"
	"kiln/platform"
)

// copySpec is a COPY or ADD after expansion.
type copySpec struct {
	inst     string // "COPY" or "ADD"
	srcs     []string
	contents []instructions.SourceContent // heredocs
	dest     string
	from     string
	chown    string
	chmod    string
	link     bool
	unpack   bool       // ADD: local archives are extracted
	exclude  []string   // --exclude patterns
	parents  bool       // --parents: keep the source's folders
	remote   []download // ADD: URLs, fetched
	history  []string   // the sources as written, for created_by
}

func (b *builder) copyCmd(ctx context.Context, s *stageState, c *instructions.CopyCommand) error {
	return b.copyFiles(ctx, s, copySpec{
		inst: "COPY", srcs: c.SourcePaths, contents: c.SourceContents, dest: c.DestPath,
		from: c.From, chown: c.Chown, chmod: c.Chmod, link: c.Link, exclude: c.ExcludePatterns,
		parents: c.Parents,
	})
}

func (b *builder) addCmd(ctx context.Context, s *stageState, c *instructions.AddCommand) error {
	for _, src := range c.SourcePaths {
		if isRemote(src) && !isURL(src) {
			return fmt.Errorf("ADD of %s: git sources are %w", src, ErrNotSupported)
		}
	}
	local, dls, err := b.fetchAll(ctx, c.SourcePaths, c.Checksum)
	if err != nil {
		return err
	}
	return b.copyFiles(ctx, s, copySpec{
		inst: "ADD", srcs: local, remote: dls, history: c.SourcePaths, contents: c.SourceContents,
		dest: c.DestPath, chown: c.Chown, chmod: c.Chmod, link: c.Link, unpack: c.Unpack == nil || *c.Unpack,
		exclude: c.ExcludePatterns,
	})
}

// isRemote says whether an ADD source is a URL or a git repository.
func isRemote(src string) bool {
	for _, p := range []string{"http://", "https://", "git://", "git@", "ssh://"} {
		if strings.HasPrefix(src, p) {
			return true
		}
	}
	return false
}

// copyFiles makes one layer of the copied files and applies it to the
// stage, or takes it from the layer cache.
func (b *builder) copyFiles(ctx context.Context, s *stageState, spec copySpec) error {
	createdBy := copyHistory(spec)
	var key layercache.Key
	if b.o.cache.CachesCopy() {
		var err error
		if key, err = b.copyKey(ctx, s, spec); err != nil {
			return err
		}
		if hit, err := b.cacheLookup(ctx, s, spec.inst, key, createdBy); hit || err != nil {
			return err
		}
	}
	layer, err := b.copyLayer(ctx, s, spec)
	if err != nil {
		return err
	}
	if layer != nil {
		if err := s.addLayer(ctx, layer); err != nil {
			return err
		}
	}
	s.history(b.created, createdBy, layer == nil)
	switch {
	case b.o.cache.CachesCopy():
		b.cacheStore(s, key, layer, createdBy)
	case b.o.cache != nil:
		return b.advanceKey(s, layer)
	}
	return nil
}

// copyLayer writes the layer of a COPY or ADD; nil when it copies nothing.
func (b *builder) copyLayer(ctx context.Context, s *stageState, spec copySpec) (v1.Layer, error) {
	src, err := b.copySource(ctx, s, spec.from)
	if err != nil {
		return nil, err
	}
	items, err := globAll(src, spec.srcs, spec.parents)
	if err != nil {
		return nil, err
	}
	cw, err := b.newCopyWriter(ctx, s, spec, src)
	if err != nil {
		return nil, err
	}
	if err := cw.copyAll(ctx, items, spec); err != nil {
		cw.lw.abort()
		return nil, err
	}
	return cw.lw.finish(s.layerType)
}

// srcItem is one matched source and, with --parents, the path it keeps
// under the destination.
type srcItem struct {
	rel  string
	keep string
}

// globAll expands every source pattern, in order. As in BuildKit, a
// wildcard that matches nothing is no error.
func globAll(src fileSource, patterns []string, parents bool) ([]srcItem, error) {
	var items []srcItem
	for _, p := range patterns {
		m, err := src.Glob(p)
		if errors.Is(err, buildcontext.ErrNoMatch) && hasMeta(p) {
			continue
		}
		if err != nil {
			return nil, err
		}
		for _, rel := range m {
			it := srcItem{rel: rel}
			if parents {
				it.keep = keptPath(p, rel)
			}
			items = append(items, it)
		}
	}
	return items, nil
}

// keptPath is what --parents keeps of rel: all of it, or what follows the
// "/./" pivot of its pattern.
func keptPath(pattern, rel string) string {
	rel = path.Clean("/" + rel)
	if i := strings.Index(pattern, "/./"); i >= 0 {
		pivot := path.Clean("/" + pattern[:i])
		if strings.HasPrefix(rel, pivot+"/") {
			rel = strings.TrimPrefix(rel, pivot)
		}
	}
	return rel
}

// copySource is where --from points: the context, a stage or an image.
func (b *builder) copySource(ctx context.Context, s *stageState, from string) (fileSource, error) {
	if from == "" {
		return contextSource{b.bc}, nil
	}
	st, err := b.sourceStage(ctx, s, from)
	if err != nil {
		return nil, err
	}
	root, err := b.ensureRoot(ctx, st)
	if err != nil {
		return nil, err
	}
	if root.Dir() == "/" {
		// Container isolation: that stage is the live "/", mount points and
		// all; read its files from a copy made from its layers instead.
		st.root = nil
		if root, err = b.ensureRoot(ctx, st); err != nil {
			return nil, err
		}
		if b.onSlash == st {
			b.onSlash = nil
		}
	}
	return rootSource{root: root, owners: st.owners}, nil
}

// sourceStage is the stage or image --from names, built (or fetched) but
// not unpacked.
func (b *builder) sourceStage(ctx context.Context, s *stageState, from string) (*stageState, error) {
	if i := b.plan.StageIndex(from, true); i >= 0 {
		return b.stage(ctx, i)
	}
	return b.imageStage(ctx, from, s)
}

// imageStage is an image named by --from, for the platform of the stage
// copying from it, fetched once per build.
func (b *builder) imageStage(ctx context.Context, ref string, s *stageState) (*stageState, error) {
	key := ref + "@" + platform.Format(s.platform)
	if st, ok := b.images[key]; ok {
		return st, nil
	}
	img, err := b.pull(ctx, ref, s.platform)
	if err != nil {
		return nil, b.stageHint(ref, err)
	}
	st, err := b.newStage(ref, s.platform, img)
	if err != nil {
		return nil, err
	}
	b.images[key] = st
	return st, nil
}

// copyHistory is BuildKit's created_by for a COPY or ADD.
func copyHistory(spec copySpec) string {
	var parts []string
	parts = append(parts, spec.inst)
	for _, f := range [][2]string{{"--from=", spec.from}, {"--chown=", spec.chown}, {"--chmod=", spec.chmod}} {
		if f[1] != "" {
			parts = append(parts, f[0]+f[1])
		}
	}
	if spec.link {
		parts = append(parts, "--link")
	}
	if spec.parents {
		parts = append(parts, "--parents")
	}
	for _, x := range spec.exclude {
		parts = append(parts, "--exclude="+x)
	}
	srcs := spec.history
	if srcs == nil {
		srcs = spec.srcs
	}
	parts = append(parts, srcs...)
	for _, c := range spec.contents {
		parts = append(parts, "<<"+c.Path)
	}
	parts = append(parts, spec.dest)
	return strings.Join(parts, " ") + " # buildkit"
}

// errMultipleSources is the error for several sources into a file path.
var errMultipleSources = errors.New("when using COPY with more than one source file, the destination must be a directory and end with a /")

// destPath makes dest absolute against the working directory; dir says it
// names a folder (trailing slash, "." or ".." as the last element).
func destPath(workdir, dest string) (p string, dir bool) {
	dir = strings.HasSuffix(dest, "/") || dest == "." || dest == ".." ||
		strings.HasSuffix(dest, "/.") || strings.HasSuffix(dest, "/..")
	if !path.IsAbs(dest) {
		if workdir == "" {
			workdir = "/"
		}
		dest = path.Join(workdir, dest)
	}
	return path.Clean(dest), dir
}
