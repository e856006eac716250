package layercache

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sync"
	"time"

	v1 "github.com/google/go-containerregistry/pkg/v1"

	"kiln/manifest"
)

// Local is a store in the warm cache's OCI layout: entries are images whose
// blobs sit beside the base images' (shared when equal), filed in
// index.json under the name "kiln-layer-cache:KEY" with AnnotationKey and
// AnnotationCreated on the descriptor. It holds the layout's shared lock
// from first use until Close, as a build reading base images does, so a
// prune never deletes what it is reading.
type Local struct {
	layout *manifest.Layout

	mu       sync.Mutex
	unlock   func() error
	lockErr  error
	stamp    [2]int64 // index.json's mtime and size when byKey was read
	byKey    map[string]v1.Descriptor
	verified map[v1.Hash]bool // layer blobs rehashed by this process
}

// NewLocal is the store in the layout l.
func NewLocal(l *manifest.Layout) *Local {
	return &Local{layout: l, verified: map[v1.Hash]bool{}}
}

func (s *Local) String() string { return "local " + s.layout.Dir() }

// RefName is the index.json name an entry is filed under.
func RefName(key Key) string { return "kiln-layer-cache:" + key.String() }

// lock takes the shared lock once. s.mu is held.
func (s *Local) lock(ctx context.Context) error {
	if s.unlock != nil || s.lockErr != nil {
		return s.lockErr
	}
	unlock, err := s.layout.LockShared(ctx)
	if err != nil {
		s.lockErr = err
		return err
	}
	s.unlock = unlock
	return nil
}

// Close releases the shared lock.
func (s *Local) Close() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.unlock == nil {
		return nil
	}
	err := s.unlock()
	s.unlock = nil
	return err
}

// find looks key up in index.json, read again only when it changed.
func (s *Local) find(key Key) (v1.Descriptor, bool, error) {
	fi, err := os.Stat(filepath.Join(s.layout.Dir(), "index.json"))
	if err != nil {
		return v1.Descriptor{}, false, err
	}
	if stamp := [2]int64{fi.ModTime().UnixNano(), fi.Size()}; s.byKey == nil || stamp != s.stamp {
		idx, err := s.layout.ReadIndex()
		if err != nil {
			return v1.Descriptor{}, false, err
		}
		s.byKey = map[string]v1.Descriptor{}
		for _, d := range idx.Manifests {
			if k := d.Annotations[AnnotationKey]; k != "" {
				s.byKey[k] = d
			}
		}
		s.stamp = stamp
	}
	d, ok := s.byKey[key.String()]
	return d, ok, nil
}

// Get reads the entry filed under key. A layer blob is rehashed before it
// is trusted; a damaged entry is dropped from index.json and is a miss.
func (s *Local) Get(ctx context.Context, key Key) (*Entry, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if err := s.lock(ctx); err != nil && !errors.Is(err, manifest.ErrLockUnavailable) {
		return nil, err
	}
	desc, ok, err := s.find(key)
	if err != nil {
		return nil, err
	}
	if !ok {
		return nil, ErrMiss
	}
	what := "layer cache entry " + key.Short() + " in " + s.layout.Dir()
	e, err := s.read(key, desc, what)
	if err != nil {
		if errors.Is(err, ErrMiss) || errors.Is(err, manifest.ErrIntegrity) || errors.Is(err, os.ErrNotExist) || errors.Is(err, manifest.ErrDigestMismatch) {
			s.drop(ctx, key)
			return nil, fmt.Errorf("%w: damaged, dropped from the store: %v", ErrMiss, err)
		}
		return nil, err
	}
	return e, nil
}

func (s *Local) read(key Key, desc v1.Descriptor, what string) (*Entry, error) {
	if !s.layout.HasBlob(desc.Digest, desc.Size) {
		return nil, fmt.Errorf("%w: its manifest blob %s is missing", ErrMiss, desc.Digest)
	}
	img, err := s.layout.ImageByDigest(desc.Digest)
	if err != nil {
		return nil, err
	}
	e, err := entryOf(key, img, what)
	if err != nil {
		return nil, err
	}
	if e.Layer != nil {
		if err := s.rehash(e.Layer); err != nil {
			return nil, err
		}
	}
	return e, nil
}

// rehash checks a layer blob's content against its digest, once per
// process: a hit must never hand a build bytes that are not the entry's.
func (s *Local) rehash(l v1.Layer) error {
	h, err := l.Digest()
	if err != nil {
		return err
	}
	if s.verified[h] {
		return nil
	}
	size, err := l.Size()
	if err != nil {
		return err
	}
	f, err := s.layout.OpenBlob(h)
	if err != nil {
		return err
	}
	defer f.Close()
	sum := sha256.New()
	n, err := io.Copy(sum, f)
	if err != nil {
		return err
	}
	if n != size || hex.EncodeToString(sum.Sum(nil)) != h.Hex {
		// Removed, so that storing the step again writes it anew (a blob
		// of the right size is otherwise taken as present).
		_ = s.layout.RemoveBlob(h)
		return fmt.Errorf("layer blob %s: %w (removed)", h, manifest.ErrDigestMismatch)
	}
	s.verified[h] = true
	return nil
}

// drop removes key's entry from index.json; its blobs go with the next
// prune.
func (s *Local) drop(ctx context.Context, key Key) {
	_ = s.layout.UpdateIndex(ctx, func(idx *v1.IndexManifest) (bool, error) {
		kept := idx.Manifests[:0]
		for _, d := range idx.Manifests {
			if d.Annotations[AnnotationKey] != key.String() {
				kept = append(kept, d)
			}
		}
		changed := len(kept) != len(idx.Manifests)
		idx.Manifests = kept
		return changed, nil
	})
	s.byKey = nil
}

// Put stores e's blobs, then files it in index.json (replacing an entry of
// the same key): a kill at any moment leaves either no entry or a whole
// one, and at worst blobs the next prune deletes.
func (s *Local) Put(ctx context.Context, key Key, e *Entry) error {
	s.mu.Lock()
	if err := s.lock(ctx); err != nil && !errors.Is(err, manifest.ErrLockUnavailable) {
		s.mu.Unlock()
		return err
	}
	s.mu.Unlock()
	img, err := entryImage(key, e)
	if err != nil {
		return err
	}
	desc, err := s.layout.PutImage(ctx, img)
	if err != nil {
		return err
	}
	desc.Platform = nil
	desc.Annotations = map[string]string{
		manifest.AnnotationRefName: RefName(key),
		AnnotationKey:              key.String(),
		AnnotationCreated:          e.Created.UTC().Format(time.RFC3339),
	}
	return s.layout.UpdateIndex(ctx, func(idx *v1.IndexManifest) (bool, error) {
		kept := idx.Manifests[:0]
		for _, d := range idx.Manifests {
			if d.Annotations[AnnotationKey] != key.String() {
				kept = append(kept, d)
			}
		}
		idx.Manifests = append(kept, desc)
		return true, nil
	})
}
