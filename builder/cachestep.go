package builder

import (
	"context"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/moby/buildkit/frontend/dockerfile/instructions"

	"kiln/builder/layercache"
)

// CacheStep is one step's layer cache outcome, in build order.
type CacheStep struct {
	Stage       string `json:"stage"`
	Line        int    `json:"line"`
	Instruction string `json:"instruction"` // "RUN", "COPY", "ADD", "WORKDIR"
	Key         string `json:"key"`         // the key's short form
	Hit         bool   `json:"hit"`
}

// WithLayerCache makes the build look each RUN, COPY, ADD and WORKDIR step
// up in c before running it and store what it made (see
// builder/layercache for the keys). nil: no layer cache.
func WithLayerCache(c *layercache.Cache) Option { return func(o *options) { o.cache = c } }

// stateKey is the key of a stage's starting state: a base image's
// manifest digest, or scratch, with the platform.
func stateKey(img v1.Image, s *stageState, scratch bool) (layercache.Key, error) {
	kb := layercache.NewBuilder("state").Add("platform", platformKey(s))
	if scratch {
		return kb.Add("base", "scratch").Sum(), nil
	}
	d, err := img.Digest()
	if err != nil {
		return layercache.Key{}, fmt.Errorf("the base's manifest digest: %w", err)
	}
	return kb.Add("base", d.String()).Sum(), nil
}

func platformKey(s *stageState) string {
	p := s.platform
	return strings.Join([]string{p.OS, p.Architecture, p.Variant, p.OSVersion}, "/")
}

// stepKey starts the key of a step of s: the state it starts from and what
// every step sees.
func (b *builder) stepKey(s *stageState, inst string) *layercache.Builder {
	epoch := "none"
	if b.epoch != nil {
		epoch = strconv.FormatInt(b.epoch.Unix(), 10)
	}
	return layercache.NewBuilder("step").
		AddKey("state", s.key).
		Add("platform", platformKey(s)).
		Add("epoch", epoch).
		Add("instruction", inst).
		Add("user", s.cfg.Config.User).
		Add("workdir", s.cfg.Config.WorkingDir).
		AddList("shell", s.cfg.Config.Shell)
}

// cacheLookup applies key's entry to s when the cache has one: the layer
// (or none) and the history line the step would have written. It records
// the outcome either way.
func (b *builder) cacheLookup(ctx context.Context, s *stageState, inst string, key layercache.Key, createdBy string) (bool, error) {
	step := CacheStep{Stage: s.name, Line: b.line, Instruction: inst, Key: key.Short()}
	e, ok := b.o.cache.Get(ctx, key)
	if ok && e.Value != "" {
		ok = false // a value entry under a step key: not ours
	}
	step.Hit = ok
	b.cacheSteps = append(b.cacheSteps, step)
	if !ok {
		b.o.log.Info("layer cache miss", "stage", s.name, "line", b.line, "instruction", inst, "key", key.Short())
		return false, nil
	}
	if e.Layer != nil {
		if err := s.addLayer(ctx, e.Layer); err != nil {
			return false, err
		}
	}
	s.history(b.created, createdBy, e.Layer == nil)
	s.key = key
	b.o.log.Info("layer cache hit", "stage", s.name, "line", b.line, "instruction", inst, "key", key.Short(), "empty", e.Layer == nil)
	return true, nil
}

// cacheStore files what a step made (layer, or nil for no change) under
// key, in the background, and moves s on to key.
func (b *builder) cacheStore(s *stageState, key layercache.Key, layer v1.Layer, createdBy string) {
	s.key = key
	b.o.cache.Put(key, &layercache.Entry{Layer: layer, Step: createdBy, Created: b.o.now()})
}

// advanceKey moves s past a step the cache does not keep
// (--cache-copy-layers=false, --cache-run-layers=false): the next key must
// still change with what the step made, so it hashes the layer it made.
func (b *builder) advanceKey(s *stageState, layer v1.Layer) error {
	made := "no change"
	if layer != nil {
		d, err := layer.DiffID()
		if err != nil {
			return err
		}
		made = d.String()
	}
	s.key = layercache.NewBuilder("uncached").AddKey("state", s.key).Add("made", made).Sum()
	return nil
}

// copyKey is the key of a COPY or ADD: its flags, sources and destination
// as written (after expansion) and the digest of the files it selects.
func (b *builder) copyKey(ctx context.Context, s *stageState, spec copySpec) (layercache.Key, error) {
	files, err := b.selectionDigest(ctx, s, spec.from, spec.srcs, spec.parents, func(fs *layercache.Files) error {
		for _, dl := range spec.remote {
			if err := hashFile(fs, "download:"+dl.base, dl.host); err != nil {
				return err
			}
		}
		for _, c := range spec.contents {
			fs.AddValue("heredoc", fmt.Sprintf("%s\x00%t\x00%s", c.Path, c.Expand, c.Data))
		}
		return nil
	})
	if err != nil {
		return layercache.Key{}, err
	}
	return b.stepKey(s, spec.inst).
		Add("command", copyHistory(spec)).
		Add("unpack", strconv.FormatBool(spec.unpack)).
		AddKey("files", files).Sum(), nil
}

// selectionDigest hashes the files that patterns select in from ("" for
// the context, else a stage or image). For a stage or image, whose files
// may need unpacking to be read, the digest is remembered in a value entry
// keyed by the stage's layer diff_ids and the patterns: the same content
// never needs unpacking twice.
func (b *builder) selectionDigest(ctx context.Context, s *stageState, from string, patterns []string, parents bool, extra func(*layercache.Files) error) (layercache.Key, error) {
	if from == "" {
		return hashSelection(contextSource{b.bc}, patterns, parents, extra)
	}
	st, err := b.sourceStage(ctx, s, from)
	if err != nil {
		return layercache.Key{}, err
	}
	ident, err := contentKey(st)
	if err != nil {
		return layercache.Key{}, err
	}
	memo := layercache.NewBuilder("selection").AddKey("content", ident).
		AddList("patterns", patterns).Add("parents", strconv.FormatBool(parents)).Sum()
	digest := func() (layercache.Key, error) {
		src, err := b.copySource(ctx, s, from)
		if err != nil {
			return layercache.Key{}, err
		}
		return hashSelection(src, patterns, parents, nil)
	}
	var d layercache.Key
	if e, ok := b.o.cache.Get(ctx, memo); ok && e.Value != "" {
		if d, err = layercache.ParseKey(e.Value); err != nil {
			b.o.log.Warn("layer cache value entry unusable", "key", memo.Short(), "err", err)
		}
	}
	if d.IsZero() {
		if d, err = digest(); err != nil {
			return layercache.Key{}, err
		}
		b.o.cache.Put(memo, &layercache.Entry{Value: d.String(), Step: "files " + strings.Join(patterns, " ") + " of " + from, Created: b.o.now()})
	}
	if extra == nil {
		return d, nil
	}
	fs := layercache.NewFiles()
	fs.AddValue("selection", d.String())
	if err := extra(fs); err != nil {
		return layercache.Key{}, err
	}
	return fs.Sum(), nil
}

// contentKey identifies a stage's files: its layers' diff_ids, which a
// cached layer knows without being read.
func contentKey(st *stageState) (layercache.Key, error) {
	img, err := st.image()
	if err != nil {
		return layercache.Key{}, err
	}
	layers, err := img.Layers()
	if err != nil {
		return layercache.Key{}, err
	}
	ids := make([]string, 0, len(layers))
	for _, l := range layers {
		d, err := l.DiffID()
		if err != nil {
			return layercache.Key{}, fmt.Errorf("stage %s: %w", st.name, err)
		}
		ids = append(ids, d.String())
	}
	return layercache.NewBuilder("content").AddList("diff_ids", ids).Sum(), nil
}

// hashSelection hashes what patterns match in src: each match's path, then
// every file under it (path, type, mode, owner, size, link target,
// content), in the order a copy visits them.
func hashSelection(src fileSource, patterns []string, parents bool, extra func(*layercache.Files) error) (layercache.Key, error) {
	items, err := globAll(src, patterns, parents)
	if err != nil {
		return layercache.Key{}, err
	}
	fs := layercache.NewFiles()
	for _, p := range patterns {
		fs.AddValue("pattern", p)
	}
	for _, it := range items {
		fs.AddValue("item", it.rel+"\x00"+it.keep)
		if err := hashItem(fs, src, it.rel); err != nil {
			return layercache.Key{}, err
		}
	}
	if extra != nil {
		if err := extra(fs); err != nil {
			return layercache.Key{}, err
		}
	}
	return fs.Sum(), nil
}

func hashItem(files *layercache.Files, src fileSource, rel string) error {
	host, err := src.Resolve(rel)
	if err != nil {
		return err
	}
	fi, err := os.Stat(host)
	if err != nil {
		return err
	}
	if err := addFile(files, src, ".", host, fi); err != nil {
		return err
	}
	if !fi.IsDir() {
		return nil
	}
	return src.Walk(rel, func(sub string, info fs.FileInfo) error {
		return addFile(files, src, sub, filepath.Join(host, filepath.FromSlash(sub)), info)
	})
}

func addFile(files *layercache.Files, src fileSource, rel, host string, fi fs.FileInfo) error {
	uid, gid := src.owner(host, fi)
	f := layercache.File{Path: path.Clean(rel), Mode: fi.Mode(), UID: uid, GID: gid, Size: fi.Size()}
	switch {
	case fi.Mode()&fs.ModeSymlink != 0:
		target, err := os.Readlink(host)
		if err != nil {
			return err
		}
		f.Link = target
		return files.Add(f, nil)
	case fi.Mode().IsRegular():
		r, err := os.Open(host)
		if err != nil {
			return err
		}
		defer r.Close()
		return files.Add(f, r)
	}
	return files.Add(f, nil)
}

func hashFile(files *layercache.Files, name, host string) error {
	fi, err := os.Stat(host)
	if err != nil {
		return err
	}
	r, err := os.Open(host)
	if err != nil {
		return err
	}
	defer r.Close()
	return files.Add(layercache.File{Path: name, Mode: fi.Mode().Perm(), Size: fi.Size()}, io.Reader(r))
}

// runKey is the key of a RUN: its argv, environment, network and mounts
// (bind sources by content; secrets by id, never by value).
func (b *builder) runKey(ctx context.Context, s *stageState, c *instructions.RunCommand, args []string, script *instructions.ShellInlineFile) (layercache.Key, error) {
	kb := b.stepKey(s, "RUN").
		AddList("args", args).
		AddList("env", runEnviron(s)).
		Add("network", instructions.GetNetwork(c)).
		AddList("security", []string{instructions.GetSecurity(c)})
	if script != nil {
		kb.Add("script", script.Name+"\x00"+script.Data)
	}
	for _, m := range instructions.GetMounts(c) {
		kb.Add("mount", mountSpec(m))
		if m.Type != instructions.MountTypeBind {
			continue
		}
		src := m.Source
		if src == "" {
			src = "."
		}
		d, err := b.selectionDigest(ctx, s, m.From, []string{src}, false, nil)
		if err != nil {
			return layercache.Key{}, fmt.Errorf("RUN --mount=type=bind,source=%s: %w", m.Source, err)
		}
		kb.AddKey("bind", d)
	}
	return kb.Sum(), nil
}

// mountSpec is a RUN --mount as a key sees it: every field, values of
// pointers rather than addresses. A secret's value is never in it.
func mountSpec(m *instructions.Mount) string {
	opt := func(p *uint64) string {
		if p == nil {
			return "-"
		}
		return strconv.FormatUint(*p, 8)
	}
	env := "-"
	if m.Env != nil {
		env = *m.Env
	}
	return strings.Join([]string{
		string(m.Type), m.From, m.Source, m.Target, strconv.FormatBool(m.ReadOnly),
		strconv.FormatInt(m.SizeLimit, 10), m.CacheID, string(m.CacheSharing), strconv.FormatBool(m.Required),
		env, opt(m.Mode), opt(m.UID), opt(m.GID),
	}, "\x00")
}

// cacheWait waits (at most a minute after the build) for entries still
// being stored.
func (b *builder) cacheWait() {
	if b.o.cache == nil {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	b.o.cache.Wait(ctx)
}
