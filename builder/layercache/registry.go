package layercache

import (
	"context"
	"fmt"

	"github.com/google/go-containerregistry/pkg/name"

	"kiln/manifest"
)

// Registry is a store in a registry repository (kaniko's --cache-repo):
// each entry an image tagged with its key. Layers of a hit are read from
// the registry only when the build needs their files; a push to the same
// registry mounts them instead of uploading them again.
type Registry struct {
	client *manifest.Client
	repo   name.Repository
}

// NewRegistry is the store in repo, reached through client (its
// credentials, mirrors, retries and insecure registries).
func NewRegistry(client *manifest.Client, repo name.Repository) *Registry {
	return &Registry{client: client, repo: repo}
}

func (r *Registry) String() string { return "registry " + r.repo.Name() }

// Get reads the entry tagged key.
func (r *Registry) Get(ctx context.Context, key Key) (*Entry, error) {
	tag := r.repo.Tag(key.String())
	desc, _, err := r.client.Get(ctx, tag)
	if manifest.IsNotFound(err) {
		return nil, ErrMiss
	}
	if err != nil {
		return nil, err
	}
	if !desc.MediaType.IsImage() {
		return nil, fmt.Errorf("%w: %s is a %s, not an image", ErrMiss, tag, desc.MediaType)
	}
	img, err := desc.Image()
	if err != nil {
		return nil, err
	}
	return entryOf(key, img, "layer cache entry "+tag.String())
}

// Put pushes e tagged key.
func (r *Registry) Put(ctx context.Context, key Key, e *Entry) error {
	img, err := entryImage(key, e)
	if err != nil {
		return err
	}
	_, err = r.client.Push(ctx, img, []name.Reference{r.repo.Tag(key.String())})
	return err
}
