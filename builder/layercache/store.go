package layercache

import (
	"context"
	"errors"
	"fmt"
	"time"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/types"

	"kiln/manifest"
)

// Annotations of an entry's manifest (and, in the local store, of its
// index.json descriptor).
const (
	AnnotationKey     = manifest.AnnotationLayerCacheKey
	AnnotationCreated = manifest.AnnotationLayerCacheCreated
	// AnnotationStep is the instruction that made the entry, for people
	// reading the store (at most 1 KiB of it).
	AnnotationStep = "io.kiln.layercache.step"
	// AnnotationValue holds a value entry's value.
	AnnotationValue = "io.kiln.layercache.value"
	// AnnotationEmpty marks a step that changed no file.
	AnnotationEmpty = "io.kiln.layercache.empty"
)

// DefaultTTL is how long an entry serves, as kaniko's --cache-ttl: two weeks.
const DefaultTTL = 14 * 24 * time.Hour

// ErrMiss is returned by Get when a store has no usable entry for a key.
var ErrMiss = errors.New("not in the layer cache")

// Entry is what a step left: its layer, or nothing, or a value.
type Entry struct {
	Layer   v1.Layer // the step's layer; nil when it changed no file (or for a value)
	Value   string   // a value entry's value ("" for a step)
	Step    string   // the instruction that made it
	Created time.Time
}

// Store holds entries by key: a registry repository or a local layout.
type Store interface {
	// Get returns the entry filed under key, ErrMiss when there is none
	// (or it is damaged), or another error when the store cannot be read.
	Get(ctx context.Context, key Key) (*Entry, error)
	// Put files e under key, replacing what was there.
	Put(ctx context.Context, key Key, e *Entry) error
	// String names the store for log lines ("registry REPO", "local DIR").
	String() string
}

// entryImage is e as the small image a store keeps.
func entryImage(key Key, e *Entry) (v1.Image, error) {
	img := mutate.MediaType(empty.Image, types.OCIManifestSchema1)
	img = mutate.ConfigMediaType(img, types.OCIConfigJSON)
	if e.Layer != nil {
		var err error
		if img, err = mutate.AppendLayers(img, e.Layer); err != nil {
			return nil, fmt.Errorf("layer cache entry %s: %w", key.Short(), err)
		}
	}
	cf, err := img.ConfigFile()
	if err != nil {
		return nil, err
	}
	cf = cf.DeepCopy()
	cf.Created = v1.Time{Time: e.Created.UTC().Truncate(time.Second)}
	cf.History = []v1.History{{Created: cf.Created, CreatedBy: e.Step, Comment: "kiln layer cache", EmptyLayer: e.Layer == nil}}
	if img, err = mutate.ConfigFile(img, cf); err != nil {
		return nil, err
	}
	ann := map[string]string{
		AnnotationKey:     key.String(),
		AnnotationCreated: e.Created.UTC().Format(time.RFC3339),
		AnnotationStep:    truncate(e.Step, 1024),
	}
	if e.Value != "" {
		ann[AnnotationValue] = e.Value
	}
	if e.Layer == nil && e.Value == "" {
		ann[AnnotationEmpty] = "true"
	}
	return mutate.Annotations(img, ann).(v1.Image), nil
}

// entryOf reads an entry back from its image, checking that it is the one
// filed under key and that its content matches its digests as it is read.
func entryOf(key Key, img v1.Image, what string) (*Entry, error) {
	m, err := img.Manifest()
	if err != nil {
		return nil, err
	}
	if m.Annotations[AnnotationKey] != key.String() {
		return nil, fmt.Errorf("%w: %s is filed under key %s but says %q", ErrMiss, what, key.Short(), m.Annotations[AnnotationKey])
	}
	created, err := time.Parse(time.RFC3339, m.Annotations[AnnotationCreated])
	if err != nil {
		return nil, fmt.Errorf("%w: %s has no valid %s annotation", ErrMiss, what, AnnotationCreated)
	}
	vimg, err := manifest.VerifiedImage(img, what)
	if err != nil {
		return nil, fmt.Errorf("%w: %v", ErrMiss, err)
	}
	e := &Entry{Value: m.Annotations[AnnotationValue], Step: m.Annotations[AnnotationStep], Created: created}
	layers, err := vimg.Layers()
	if err != nil {
		return nil, err
	}
	switch {
	case len(layers) == 1 && e.Value == "":
		e.Layer = layers[0]
	case len(layers) == 0 && (e.Value != "" || m.Annotations[AnnotationEmpty] == "true"):
	default:
		return nil, fmt.Errorf("%w: %s has %d layers", ErrMiss, what, len(layers))
	}
	return e, nil
}

func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:n]
}
