package warmer

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"os"
	"sync"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"golang.org/x/sync/errgroup"

	"kiln/manifest"
)

// Problem is one piece of damage Verify found.
type Problem struct {
	Digest string `json:"digest,omitempty"`
	Ref    string `json:"ref,omitempty"`
	Msg    string `json:"message"`
	// Removed: with WithRepair, the damaged blob was deleted; the next
	// warm fetches it again.
	Removed bool `json:"removed,omitempty"`
}

// VerifyReport says what Verify checked and found.
type VerifyReport struct {
	Blobs   int   `json:"blobs"`
	Bytes   int64 `json:"bytes"`
	Entries int   `json:"entries"`
	// LayerCache counts the entries that are layer cache entries (kiln
	// build --cache), checked like every other.
	LayerCache int `json:"layer_cache"`
	// Temps are the leftovers of killed writes, TempBytes their size: no
	// damage, but they take room until the next warm or prune removes them.
	Temps     int   `json:"temps"`
	TempBytes int64 `json:"temp_bytes"`
	// Writing counts temporary files that live processes are writing.
	Writing int `json:"writing"`
	// Private counts blobs other users cannot read (written by an older
	// kiln, mode 0600): no damage, but builds running as another user fail
	// on them until a warm (or a verify with WithRepair) fixes their modes.
	Private  int       `json:"private,omitempty"`
	Problems []Problem `json:"problems"`
	// Repair is what WithRepair changed; nil without it.
	Repair *RepairReport `json:"repair,omitempty"`
}

// RepairReport says what Verify WithRepair changed.
type RepairReport struct {
	// Removed counts the damaged blobs deleted (see Problem.Removed).
	Removed int `json:"removed"`
	// Modes counts the files and folders whose mode was made what readers
	// need; ModeFailures those this user could not change, with why.
	Modes        int      `json:"modes"`
	ModeFailures []string `json:"mode_failures,omitempty"`
}

// VerifyOption configures one Verify.
type VerifyOption func(*verifyOptions)

type verifyOptions struct {
	repair bool
}

// WithRepair makes Verify fix what it can without a network: blobs whose
// content does not match their digest are deleted, so that the next warm
// fetches them again (a warm trusts a stored blob's name and would not),
// and files are given the modes every reader needs, in place. It needs
// write access to the cache.
func WithRepair() VerifyOption {
	return func(o *verifyOptions) { o.repair = true }
}

// OK reports whether no damage was found.
func (v *VerifyReport) OK() bool { return len(v.Problems) == 0 }

// Verify rehashes every blob and checks that everything index.json
// references is stored whole. It needs no network, and without WithRepair
// only read access: any user who may read the cache may verify it, also
// through a read-only mount. It holds the shared lock: it runs beside
// builds and warmers, never beside a prune (if the lock cannot be taken it
// says so and goes on, as a build does).
func (w *Warmer) Verify(ctx context.Context, opts ...VerifyOption) (*VerifyReport, error) {
	var o verifyOptions
	for _, opt := range opts {
		opt(&o)
	}
	l, err := manifest.OpenExistingLayout(w.dir)
	if err != nil {
		return nil, fmt.Errorf("opening cache: %w", err)
	}
	if o.repair {
		if err := l.CheckWritable(); err != nil {
			return nil, fmt.Errorf("--repair: %w", err)
		}
	}
	unlock, err := l.LockShared(ctx)
	switch {
	case errors.Is(err, manifest.ErrLockUnavailable) && !o.repair:
		w.o.log.Warn("verifying the cache without its lock: a prune meanwhile may report blobs missing", "cache", l.Dir(), "why", err.Error())
	case err != nil:
		return nil, err
	default:
		defer unlock()
	}
	rep := &VerifyReport{Problems: []Problem{}}
	if err := countTemps(l, rep); err != nil {
		return rep, err
	}
	damaged, err := w.rehashAll(ctx, l, rep)
	if err != nil {
		return rep, err
	}
	if err := checkReferences(l, rep); err != nil {
		return rep, err
	}
	if o.repair {
		w.repair(l, rep, damaged)
	}
	for _, p := range rep.Problems {
		w.o.log.Error("cache damage", "digest", p.Digest, "ref", p.Ref, "problem", p.Msg)
	}
	w.o.log.Info("verify done", "blobs", rep.Blobs, "bytes", rep.Bytes, "entries", rep.Entries, "layer_cache", rep.LayerCache, "problems", len(rep.Problems), "temps", rep.Temps, "temp_bytes", rep.TempBytes, "writing", rep.Writing)
	return rep, nil
}

// rehashAll rehashes every blob and returns those whose content does not
// match their name, as the files that were read.
func (w *Warmer) rehashAll(ctx context.Context, l *manifest.Layout, rep *VerifyReport) (map[v1.Hash]os.FileInfo, error) {
	blobs, err := l.Blobs()
	if err != nil {
		return nil, err
	}
	damaged := map[v1.Hash]os.FileInfo{}
	var mu sync.Mutex
	g, gctx := errgroup.WithContext(ctx)
	g.SetLimit(w.o.jobs)
	for _, b := range blobs {
		if b.Temp {
			continue // countTemps
		}
		g.Go(func() error {
			if err := gctx.Err(); err != nil {
				return err
			}
			msg, fi, bad := rehash(b)
			mu.Lock()
			defer mu.Unlock()
			rep.Blobs++
			rep.Bytes += b.Size
			if fi != nil && fi.Mode()&0o004 == 0 {
				rep.Private++
			}
			if msg != "" {
				rep.Problems = append(rep.Problems, Problem{Digest: b.Hash.String(), Msg: msg})
			}
			if bad {
				damaged[b.Hash] = fi
			}
			return nil
		})
	}
	return damaged, g.Wait()
}

// countTemps tells the leftovers of killed writes from live writes, by the
// rule warm and prune remove them by (manifest.TempFiles).
func countTemps(l *manifest.Layout, rep *VerifyReport) error {
	temps, err := l.TempFiles()
	for _, t := range temps {
		if t.Live {
			rep.Writing++
			continue
		}
		rep.Temps++
		rep.TempBytes += t.Size
	}
	return err
}

// rehash returns "" if the file hashes to its name, else what is wrong;
// fi is the file it read (nil if it could not open it), and bad says its
// content does not match its name.
func rehash(b manifest.StoredBlob) (msg string, fi os.FileInfo, bad bool) {
	f, err := os.Open(b.Path)
	if err != nil {
		if os.IsNotExist(err) {
			return "", nil, false // pruned meanwhile is impossible under our lock; a rename race from a writer is fine
		}
		if os.IsPermission(err) {
			if fi, serr := os.Stat(b.Path); serr == nil {
				return fmt.Sprintf("not readable by uid %d: mode %s; kiln warm, or kiln warm --verify --repair, run by its owner makes it readable", os.Geteuid(), fi.Mode()), fi, false
			}
		}
		return err.Error(), nil, false
	}
	defer f.Close()
	fi, err = f.Stat()
	if err != nil {
		return err.Error(), nil, false
	}
	h := sha256.New()
	if _, err := io.Copy(h, f); err != nil {
		return "reading: " + err.Error(), fi, false
	}
	if got := hex.EncodeToString(h.Sum(nil)); got != b.Hash.Hex {
		manifest.UnmarkVerified(f) // builds hash it again, and refuse it
		return "content hashes to sha256:" + got, fi, true
	}
	manifest.MarkVerified(f, b.Hash)
	return "", fi, false
}

// repair deletes the damaged blobs — each only if its name still names the
// file that was read, not a good copy a warmer renamed over it meanwhile —
// and repairs modes.
func (w *Warmer) repair(l *manifest.Layout, rep *VerifyReport, damaged map[v1.Hash]os.FileInfo) {
	rr := &RepairReport{}
	rep.Repair = rr
	for i, p := range rep.Problems {
		h, err := v1.NewHash(p.Digest)
		if err != nil || damaged[h] == nil {
			continue
		}
		now, err := os.Lstat(l.BlobPath(h))
		if err != nil || !os.SameFile(now, damaged[h]) {
			continue
		}
		if err := l.RemoveBlob(h); err != nil {
			w.o.log.Error("removing a damaged blob", "digest", p.Digest, "err", err)
			continue
		}
		delete(damaged, h) // one removal per blob, however many problems name it
		rep.Problems[i].Removed = true
		rr.Removed++
		w.o.log.Info("removed a damaged blob: the next warm fetches it again", "digest", p.Digest)
	}
	modes, err := l.RepairModes()
	if err != nil {
		w.o.log.Warn("repairing file modes", "cache", l.Dir(), "err", err)
	}
	rr.Modes, rr.ModeFailures = len(modes.Fixed), modes.Failed
	if rr.Modes > 0 {
		w.o.log.Info("made the cache readable to every user", "cache", l.Dir(), "files", rr.Modes)
	}
}

// checkReferences walks index.json and reports missing or wrong-size blobs
// and manifests that do not parse.
func checkReferences(l *manifest.Layout, rep *VerifyReport) error {
	idx, err := l.ReadIndex()
	if err != nil {
		return err
	}
	seen := map[v1.Hash]bool{}
	var walk func(ref string, d v1.Descriptor)
	walk = func(ref string, d v1.Descriptor) {
		if seen[d.Digest] {
			return
		}
		seen[d.Digest] = true
		if !l.HasBlob(d.Digest, -1) {
			rep.Problems = append(rep.Problems, Problem{Ref: ref, Digest: d.Digest.String(), Msg: "referenced blob is missing"})
			return
		}
		if !l.HasBlob(d.Digest, d.Size) {
			rep.Problems = append(rep.Problems, Problem{Ref: ref, Digest: d.Digest.String(), Msg: fmt.Sprintf("size differs from the %d bytes its descriptor says", d.Size)})
			return
		}
		if !d.MediaType.IsIndex() && !d.MediaType.IsImage() {
			return
		}
		data, err := l.ReadBlob(d.Digest)
		if err != nil {
			return // the rehash already reported it
		}
		kids, err := manifest.Children(d.MediaType, data)
		if err != nil {
			rep.Problems = append(rep.Problems, Problem{Ref: ref, Digest: d.Digest.String(), Msg: "manifest does not parse: " + err.Error()})
			return
		}
		for _, k := range kids {
			walk(ref, k)
		}
	}
	for _, d := range idx.Manifests {
		rep.Entries++
		if d.Annotations[manifest.AnnotationLayerCacheKey] != "" {
			rep.LayerCache++
		}
		walk(d.Annotations[manifest.AnnotationRefName], d)
	}
	return nil
}
