package builder

import (
	"context"
	"path"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/moby/buildkit/frontend/dockerfile/instructions"

	"kiln/builder/layercache"
)

// workdir sets the working directory, relative to the current one, and
// creates it in a layer (owned by USER) when the stage lacks it.
func (b *builder) workdir(ctx context.Context, s *stageState, c *instructions.WorkdirCommand) error {
	wd, _ := destPath(s.cfg.Config.WorkingDir, c.Path)
	s.cfg.Config.WorkingDir = wd
	msg := "WORKDIR " + wd
	if wd == "/" {
		s.history(b.created, msg, true)
		return nil
	}
	var key layercache.Key
	if b.o.cache != nil {
		key = b.stepKey(s, "WORKDIR").Add("path", wd).Sum()
		if hit, err := b.cacheLookup(ctx, s, "WORKDIR", key, msg); hit || err != nil {
			return err
		}
	}
	layer, err := b.workdirLayer(ctx, s, wd, msg)
	if err != nil {
		return err
	}
	if b.o.cache != nil {
		b.cacheStore(s, key, layer, msg)
	}
	return nil
}

// workdirLayer makes folder wd (owned by USER) in a layer when the stage
// lacks it, and records the history line; nil when it has it.
func (b *builder) workdirLayer(ctx context.Context, s *stageState, wd, msg string) (v1.Layer, error) {
	files, err := b.stageFiles(ctx, s)
	if err != nil {
		return nil, err
	}
	resolved, err := files.resolve(wd, true)
	if err != nil {
		return nil, err
	}
	if _, ok := existing(files, resolved); ok {
		s.history(b.created, msg, true)
		return nil, nil
	}
	own, err := b.resolveOwner(ctx, s, s.cfg.Config.User)
	if err != nil {
		return nil, err
	}
	return b.mkdirLayer(ctx, s, resolved, own, msg)
}

// mkdirLayer adds a layer holding folder p and its parents.
func (b *builder) mkdirLayer(ctx context.Context, s *stageState, p string, own *owner, msg string) (v1.Layer, error) {
	lw, err := newLayerWriter(b.layerPath(), b.epoch, b.o)
	if err != nil {
		return nil, err
	}
	files, err := b.stageFiles(ctx, s)
	if err != nil {
		return nil, err
	}
	cw := &copyWriter{b: b, s: s, lw: lw, own: own, files: files, written: map[string]bool{}}
	if err := cw.mkdirs(path.Clean(p)); err != nil {
		lw.abort()
		return nil, err
	}
	layer, err := lw.finish(s.layerType)
	if err != nil {
		return nil, err
	}
	if layer == nil {
		s.history(b.created, msg, true)
		return nil, nil
	}
	if err := s.addLayer(ctx, layer); err != nil {
		return nil, err
	}
	s.history(b.created, msg, false)
	return layer, nil
}
