package builder

import (
	"context"
	"path"

	"github.com/moby/buildkit/frontend/dockerfile/instructions"
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
	files, err := b.stageFiles(ctx, s)
	if err != nil {
		return err
	}
	resolved, err := files.resolve(wd, true)
	if err != nil {
		return err
	}
	if _, ok := existing(files, resolved); ok {
		s.history(b.created, msg, true)
		return nil
	}
	own, err := b.resolveOwner(ctx, s, s.cfg.Config.User)
	if err != nil {
		return err
	}
	return b.mkdirLayer(ctx, s, resolved, own, msg)
}

// mkdirLayer adds a layer holding folder p and its parents.
func (b *builder) mkdirLayer(ctx context.Context, s *stageState, p string, own *owner, msg string) error {
	lw, err := newLayerWriter(b.layerPath(), b.epoch)
	if err != nil {
		return err
	}
	files, err := b.stageFiles(ctx, s)
	if err != nil {
		return err
	}
	cw := &copyWriter{b: b, s: s, lw: lw, own: own, files: files, written: map[string]bool{}}
	if err := cw.mkdirs(path.Clean(p)); err != nil {
		lw.abort()
		return err
	}
	layer, err := lw.finish(s.layerType)
	if err != nil {
		return err
	}
	if err := s.addLayer(ctx, layer); err != nil {
		return err
	}
	s.history(b.created, msg, false)
	return nil
}
