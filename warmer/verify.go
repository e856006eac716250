package warmer

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
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
}

// VerifyReport says what Verify checked and found.
type VerifyReport struct {
	Blobs   int   `json:"blobs"`
	Bytes   int64 `json:"bytes"`
	Entries int   `json:"entries"`
	// Temps are the leftovers of killed writes, TempBytes their size: no
	// damage, but they take room until the next warm or prune removes them.
	Temps     int   `json:"temps"`
	TempBytes int64 `json:"temp_bytes"`
	// Writing counts temporary files that live processes are writing.
	Writing  int       `json:"writing"`
	Problems []Problem `json:"problems"`
}

// OK reports whether no damage was found.
func (v *VerifyReport) OK() bool { return len(v.Problems) == 0 }

// Verify rehashes every blob and checks that everything index.json
// references is stored whole. It needs no network. It holds the shared lock:
// it runs beside builds and warmers, never beside a prune.
func (w *Warmer) Verify(ctx context.Context) (*VerifyReport, error) {
	l, err := manifest.OpenExistingLayout(w.dir)
	if err != nil {
		return nil, fmt.Errorf("opening cache: %w", err)
	}
	unlock, err := l.LockShared(ctx)
	if err != nil {
		return nil, err
	}
	defer unlock()
	rep := &VerifyReport{Problems: []Problem{}}
	if err := countTemps(l, rep); err != nil {
		return rep, err
	}
	if err := w.rehashAll(ctx, l, rep); err != nil {
		return rep, err
	}
	if err := checkReferences(l, rep); err != nil {
		return rep, err
	}
	for _, p := range rep.Problems {
		w.o.log.Error("cache damage", "digest", p.Digest, "ref", p.Ref, "problem", p.Msg)
	}
	w.o.log.Info("verify done", "blobs", rep.Blobs, "bytes", rep.Bytes, "entries", rep.Entries, "problems", len(rep.Problems), "temps", rep.Temps, "temp_bytes", rep.TempBytes, "writing", rep.Writing)
	return rep, nil
}

func (w *Warmer) rehashAll(ctx context.Context, l *manifest.Layout, rep *VerifyReport) error {
	blobs, err := l.Blobs()
	if err != nil {
		return err
	}
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
			msg := rehash(b)
			mu.Lock()
			defer mu.Unlock()
			rep.Blobs++
			rep.Bytes += b.Size
			if msg != "" {
				rep.Problems = append(rep.Problems, Problem{Digest: b.Hash.String(), Msg: msg})
			}
			return nil
		})
	}
	return g.Wait()
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

// rehash returns "" if the file hashes to its name, else what is wrong.
func rehash(b manifest.StoredBlob) string {
	f, err := os.Open(b.Path)
	if err != nil {
		if os.IsNotExist(err) {
			return "" // pruned meanwhile is impossible under our lock; a rename race from a writer is fine
		}
		return err.Error()
	}
	defer f.Close()
	h := sha256.New()
	if _, err := io.Copy(h, f); err != nil {
		return "reading: " + err.Error()
	}
	if got := hex.EncodeToString(h.Sum(nil)); got != b.Hash.Hex {
		return "content hashes to sha256:" + got
	}
	return ""
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
		walk(d.Annotations[manifest.AnnotationRefName], d)
	}
	return nil
}
