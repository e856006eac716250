package manifest

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"maps"
	"os"
	"path/filepath"
	"time"

	v1 "github.com/google/go-containerregistry/pkg/v1"
)

// Entries that left index.json, and why the layout remembers them.
//
// A build holds the shared "in use" lock while it reads, and prune waits
// for it. A reader that cannot take the lock (ErrLockUnavailable: a cache
// without a lock file mounted read-only, a filesystem without flock) has
// only time to protect it: an entry it found in index.json may leave it —
// dropped by prune, or replaced because its tag moved — while it still
// reads the entry's blobs. So every entry that leaves index.json is
// recorded, with when, in .kiln/retired.json (an OCI index whose
// descriptors carry AnnotationRetired), and a prune with a grace period
// keeps whatever an entry retired within that period reaches. Layouts
// opened WithRetiredEntries (the warmer's) keep this record.

const retiredFile = "retired.json"

// AnnotationRetired is when an entry of .kiln/retired.json left index.json
// (RFC 3339).
const AnnotationRetired = "io.kiln.cache.retired"

// Retired lists the entries that left index.json and are still
// remembered, each with AnnotationRetired set.
func (l *Layout) Retired() ([]v1.Descriptor, error) {
	data, err := os.ReadFile(filepath.Join(l.dir, kilnDir, retiredFile))
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("reading the retired entries: %w", err)
	}
	var idx v1.IndexManifest
	if err := json.Unmarshal(data, &idx); err != nil {
		return nil, fmt.Errorf("reading the retired entries: %s: %w", retiredFile, err)
	}
	return idx.Manifests, nil
}

// RetiredAt is when d (from Retired) left index.json; zero if unknown.
func RetiredAt(d v1.Descriptor) time.Time {
	t, _ := time.Parse(time.RFC3339Nano, d.Annotations[AnnotationRetired])
	return t
}

// recordRetired records the entries of before that after no longer holds.
// The caller holds the index lock.
func (l *Layout) recordRetired(before, after []v1.Descriptor) error {
	kept := map[v1.Hash]bool{}
	for _, d := range after {
		kept[d.Digest] = true
	}
	now := l.now().UTC().Format(time.RFC3339Nano)
	var gone []v1.Descriptor
	for _, d := range before {
		if kept[d.Digest] {
			continue
		}
		d.Annotations = maps.Clone(d.Annotations)
		if d.Annotations == nil {
			d.Annotations = map[string]string{}
		}
		d.Annotations[AnnotationRetired] = now
		gone = append(gone, d)
	}
	if len(gone) == 0 {
		return nil
	}
	old, err := l.Retired()
	if err != nil {
		old = nil // unreadable: start afresh rather than block every index update
	}
	return l.writeRetired(append(old, gone...))
}

// ForgetRetired drops the records of the entries that left index.json
// before cutoff (prune, once their grace period is over).
func (l *Layout) ForgetRetired(ctx context.Context, cutoff time.Time) error {
	l.indexMu.Lock()
	defer l.indexMu.Unlock()
	lock, err := lockFile(ctx, filepath.Join(l.dir, kilnDir, indexLockFile), true, nil)
	if err != nil {
		return err
	}
	defer lock.unlock()
	all, err := l.Retired()
	if err != nil {
		all = nil
	}
	var keep []v1.Descriptor
	for _, d := range all {
		if RetiredAt(d).After(cutoff) {
			keep = append(keep, d)
		}
	}
	if len(keep) == len(all) && err == nil {
		return nil
	}
	if len(keep) == 0 {
		if err := os.Remove(filepath.Join(l.dir, kilnDir, retiredFile)); err != nil && !errors.Is(err, fs.ErrNotExist) {
			return err
		}
		return nil
	}
	return l.writeRetired(keep)
}

func (l *Layout) writeRetired(ds []v1.Descriptor) error {
	idx := emptyIndex()
	idx.Manifests = ds
	data, err := json.MarshalIndent(idx, "", "  ")
	if err != nil {
		return err
	}
	return writeFileIn(l.dir, filepath.Join(l.dir, kilnDir, retiredFile), append(data, '\n'), l.perm.file)
}
