package warmer

import (
	"context"
	"fmt"
	"sort"
	"time"

	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"

	"kiln/manifest"
)

// PruneReport says what Prune removed.
type PruneReport struct {
	// Entries are the references dropped from index.json.
	Entries []string `json:"entries"`
	// Blobs deleted because nothing referenced them, and their bytes.
	Blobs int   `json:"blobs"`
	Bytes int64 `json:"bytes"`
	// Temps are leftover temporary files of interrupted writes.
	Temps int `json:"temps"`
	// Kept is how many blobs remain.
	Kept int `json:"kept"`
	// Grace counts the blobs kept only because an entry that reached them
	// left index.json within the grace period (WithPruneGrace).
	Grace int `json:"grace,omitempty"`
	// LayerCache counts the layer cache entries kept (younger than the
	// TTL) and LayerCacheDropped those dropped (older).
	LayerCache        int `json:"layer_cache"`
	LayerCacheDropped int `json:"layer_cache_dropped"`
}

// Prune drops every cache entry whose reference is not in keep, then deletes
// every blob no remaining entry reaches.
//
// What protects the builds reading the cache:
//
//   - The shared "in use" lock. Prune takes it exclusively, so it waits for
//     every running build and warmer, and none can start until it is done.
//     A build takes it on a read-only descriptor, so this holds for a build
//     that mounts the cache read-only while prune runs through a
//     read-write mount: flock locks the file, not the mount, on one node
//     and across nodes on NFS with working locks.
//   - The grace period (WithPruneGrace), for builds that cannot lock: a
//     cache without a lock file mounted read-only, a filesystem without
//     flock (such builds say so when they start). Every entry that leaves
//     index.json — dropped here, or replaced by a warm because its tag
//     moved — is remembered with when it left (.kiln/retired.json), and a
//     blob that such an entry reached within the grace period is kept. A
//     build that found an entry before it left therefore keeps its blobs
//     for at least the grace period: set it longer than the longest build.
func (w *Warmer) Prune(ctx context.Context, keep []string) (*PruneReport, error) {
	l, err := manifest.OpenLayout(w.dir, manifest.WithLayoutClock(w.o.now), manifest.WithRetiredEntries())
	if err != nil {
		return nil, fmt.Errorf("opening cache: %w", err)
	}
	if err := l.CheckWritable(); err != nil {
		return nil, err
	}
	keepSet, err := w.keepSet(keep)
	if err != nil {
		return nil, err
	}
	unlock, err := l.LockExclusive(ctx, func() {
		w.o.log.Info("prune waiting for builds and warmers using the cache to finish", "cache", l.Dir())
	})
	if err != nil {
		return nil, err
	}
	defer unlock()

	rep := &PruneReport{}
	err = l.UpdateIndex(ctx, func(idx *v1.IndexManifest) (bool, error) {
		kept := idx.Manifests[:0]
		for _, d := range idx.Manifests {
			if fresh, isLayer := w.layerCacheEntry(d); isLayer {
				if !fresh {
					rep.LayerCacheDropped++
					continue
				}
				rep.LayerCache++
				kept = append(kept, d)
				continue
			}
			if !keepSet.keeps(d) {
				rep.Entries = append(rep.Entries, d.Annotations[manifest.AnnotationRefName])
				continue
			}
			kept = append(kept, d)
		}
		idx.Manifests = kept
		return len(rep.Entries) > 0 || rep.LayerCacheDropped > 0, nil
	})
	if err != nil {
		return nil, err
	}
	cutoff := w.o.now().Add(-w.o.grace)
	live, err := reachable(l, cutoff)
	if err != nil {
		return nil, err
	}
	if err := sweep(l, live, rep); err != nil {
		return rep, err
	}
	if err := l.ForgetRetired(ctx, cutoff); err != nil {
		return rep, fmt.Errorf("forgetting retired entries: %w", err)
	}
	if rep.Grace > 0 {
		w.o.log.Info("prune kept the blobs of entries that left the index within the grace period", "blobs", rep.Grace, "grace", w.o.grace.String())
	}
	for _, e := range rep.Entries {
		w.o.log.Info("pruned entry", "ref", e)
	}
	w.o.log.Info("prune done", "entries", len(rep.Entries), "blobs", rep.Blobs, "bytes", rep.Bytes, "temps", rep.Temps, "kept", rep.Kept,
		"layer_cache", rep.LayerCache, "layer_cache_dropped", rep.LayerCacheDropped, "layer_cache_ttl", w.o.layerTTL.String())
	return rep, nil
}

// layerCacheEntry says whether d is a layer cache entry (kiln build
// --cache), and if so whether it is younger than the TTL. An entry whose
// time cannot be read is stale.
func (w *Warmer) layerCacheEntry(d v1.Descriptor) (fresh, isLayer bool) {
	if d.Annotations[manifest.AnnotationLayerCacheKey] == "" {
		return false, false
	}
	t, err := time.Parse(time.RFC3339, d.Annotations[manifest.AnnotationLayerCacheCreated])
	return err == nil && w.o.now().Sub(t) <= w.o.layerTTL, true
}

// keepSet is what prune must not drop: entries filed under a configured
// reference, and entries whose source digest a configured digest
// reference ("repo@sha256:…") names in the same repository — warm serves
// such a reference from the tag entry that holds it.
type keepSet struct {
	keys    map[string]bool
	digests map[string]bool // "repo@sha256:…" with repo canonical
}

func (w *Warmer) keepSet(keep []string) (keepSet, error) {
	ks := keepSet{keys: map[string]bool{}, digests: map[string]bool{}}
	for _, k := range keep {
		ref, err := w.o.client.ParseReference(k)
		if err != nil {
			return ks, fmt.Errorf("prune: bad reference %q: %w", k, err)
		}
		ks.keys[manifest.CacheKey(ref)] = true
		if d, ok := ref.(name.Digest); ok {
			ks.digests[ref.Context().Name()+"@"+d.DigestStr()] = true
		}
	}
	return ks, nil
}

func (ks keepSet) keeps(d v1.Descriptor) bool {
	key := d.Annotations[manifest.AnnotationRefName]
	if ks.keys[key] {
		return true
	}
	ref, err := name.ParseReference(key)
	if err != nil {
		return false
	}
	return ks.digests[ref.Context().Name()+"@"+d.Annotations[manifest.AnnotationSourceDigest]]
}

// reachable walks index.json down to every blob it references, and the
// entries that left it after cutoff down to theirs: those map to false,
// the others to true.
func reachable(l *manifest.Layout, cutoff time.Time) (map[v1.Hash]bool, error) {
	idx, err := l.ReadIndex()
	if err != nil {
		return nil, err
	}
	retired, err := l.Retired()
	if err != nil {
		return nil, err
	}
	live := map[v1.Hash]bool{}
	var walk func(d v1.Descriptor, fromIndex bool)
	walk = func(d v1.Descriptor, fromIndex bool) {
		if _, seen := live[d.Digest]; seen {
			return
		}
		live[d.Digest] = fromIndex
		if !d.MediaType.IsIndex() && !d.MediaType.IsImage() {
			return
		}
		data, err := l.ReadBlob(d.Digest)
		if err != nil {
			return // missing or damaged: nothing below it to keep
		}
		kids, err := manifest.Children(d.MediaType, data)
		if err != nil {
			return
		}
		for _, k := range kids {
			walk(k, fromIndex)
		}
	}
	for _, d := range idx.Manifests {
		walk(d, true)
	}
	for _, d := range retired {
		if manifest.RetiredAt(d).After(cutoff) {
			walk(d, false)
		}
	}
	return live, nil
}

// sweep deletes unreachable blobs (those live does not hold) and the
// temporary files of killed writes. Callers hold the exclusive lock, so no
// warmer is midway, but a process opening the cache may be writing
// index.json: temporary files go by the same rule as at the start of a
// warm (manifest.RemoveDeadTemps).
func sweep(l *manifest.Layout, live map[v1.Hash]bool, rep *PruneReport) error {
	blobs, err := l.Blobs()
	if err != nil {
		return err
	}
	sort.Slice(blobs, func(i, j int) bool { return blobs[i].Path < blobs[j].Path })
	for _, b := range blobs {
		if b.Temp {
			// Temporary files below; anything else that is not named by a
			// digest is not kiln's to delete.
			continue
		}
		if fromIndex, ok := live[b.Hash]; ok {
			rep.Kept++
			if !fromIndex {
				rep.Grace++
			}
			continue
		}
		if err := l.RemoveBlob(b.Hash); err != nil {
			return fmt.Errorf("deleting blob %s: %w", b.Hash, err)
		}
		rep.Blobs++
		rep.Bytes += b.Size
	}
	removed, err := l.RemoveDeadTemps()
	rep.Temps += len(removed)
	return err
}
