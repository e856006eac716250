package builder

import (
	"context"
	"fmt"
	"time"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/types"
	specs "github.com/opencontainers/image-spec/specs-go/v1"

	"kiln/builder/layercache"
	"kiln/builder/layerstore"
	"kiln/builder/rootfs"
)

// historyComment marks history entries as BuildKit's Dockerfile front end
// does, so tools that read history treat kiln's the same way.
const historyComment = "buildkit.dockerfile.v0"

// stageState is a stage being built: its base, the layers added so far, the
// config being edited and, once needed, its filesystem.
type stageState struct {
	name      string
	platform  specs.Platform
	base      v1.Image
	cfg       *v1.ConfigFile // base config plus this stage's changes; RootFS is fixed up by image()
	layers    []v1.Layer
	layerType types.MediaType
	vars      *vars    // ENV and ARGs, for expansion
	buildArgs []string // the ARGs declared in scope, in order, for RUN's history
	cmdSet    bool     // this stage set CMD (ENTRYPOINT keeps it)
	// key is the layer cache's key of the files so far (layercache doc).
	key layercache.Key

	root   *rootfs.Root            // nil until an instruction needs the files
	stack  *layerstore.Stack       // root's folders when it is an overlay of stored layers (mountStored)
	index  *rootfs.Index           // the files as the layers' headers tell, while there is no root
	owners map[string]rootfs.Owner // ownership the root could not apply, by container path
}

// history records one instruction.
func (s *stageState) history(created time.Time, createdBy string, emptyLayer bool) {
	s.cfg.History = append(s.cfg.History, v1.History{
		Created:    v1.Time{Time: created},
		CreatedBy:  createdBy,
		Comment:    historyComment,
		EmptyLayer: emptyLayer,
	})
}

// addLayer appends a layer to the stage and to its filesystem, if unpacked,
// or its index.
func (s *stageState) addLayer(ctx context.Context, l v1.Layer) error {
	s.layers = append(s.layers, l)
	if s.root == nil && s.index == nil {
		return nil
	}
	rc, err := l.Uncompressed()
	if err != nil {
		return err
	}
	defer rc.Close()
	if s.root == nil {
		if err := s.index.AddLayer(ctx, rc); err != nil {
			return fmt.Errorf("indexing a new layer of stage %s: %w", s.name, err)
		}
		return nil
	}
	stats, err := s.root.ApplyLayer(ctx, rc)
	if err != nil {
		return fmt.Errorf("applying a new layer to the filesystem of stage %s: %w", s.name, err)
	}
	s.noteOwners(stats)
	return nil
}

// noteOwners remembers ownership the root could not apply (unprivileged).
func (s *stageState) noteOwners(stats *rootfs.ApplyStats) {
	for p, o := range stats.SkippedOwners {
		s.owners[p] = o
	}
}

// image is the stage as an image: the base, the new layers, the config.
func (s *stageState) image() (v1.Image, error) {
	img, err := mutate.AppendLayers(s.base, s.layers...)
	if err != nil {
		return nil, fmt.Errorf("adding layers to stage %s: %w", s.name, err)
	}
	appended, err := img.ConfigFile()
	if err != nil {
		return nil, fmt.Errorf("computing the config of stage %s: %w", s.name, err)
	}
	cfg := s.cfg.DeepCopy()
	cfg.RootFS = appended.RootFS
	return mutate.ConfigFile(img, cfg)
}
