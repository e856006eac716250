package manifest

import (
	"context"
	"errors"
	"io"
	"os"
	"path/filepath"
	"sync"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/remote"
)

// KeepBlobs makes the layers of img, an image VerifiedImage returned, keep
// a local copy of their blobs that was checked against their digests in
// this process, for an output layout or tarball written after the build:
// it then neither fetches a registry's blob a second time nor hashes a
// cache's blob at its end.
//
//   - A layer whose blob is a file (a layout's, the warm cache's) is read
//     and hashed now, in the background, while the build goes on; its open
//     file is kept for the output, and marked as checked (markXattr). A
//     file that carries the mark of this blob for its size and mtime now
//     is kept at once, unread.
//   - A layer read from a registry is copied into dir (a private folder
//     that outlives the output: the build's work folder) as it is read
//     whole for the first time, the build unpacking it, and kept there if
//     it matches its digest; later reads of the layer read that copy.
//
// ctx bounds the background reads. Layers of other images are left as
// they are.
func KeepBlobs(ctx context.Context, img v1.Image, dir string) {
	v, ok := img.(*verifiedImage)
	if !ok {
		return
	}
	for _, l := range v.layers {
		vl := unwrapVerified(l)
		if vl == nil {
			continue
		}
		k := &keptBlob{dir: dir, ahead: make(chan struct{})}
		if !vl.kept.CompareAndSwap(nil, k) {
			continue // kept already
		}
		if vl.remote {
			close(k.ahead) // spooled when read: opening it is a request
			continue
		}
		rc, err := vl.Layer.Compressed()
		if err != nil {
			close(k.ahead)
			continue
		}
		f, ok := rc.(*os.File)
		if !ok {
			rc.Close()
			close(k.ahead) // spooled when read
			continue
		}
		if markedVerified(f, vl.desc.Digest, vl.desc.Size) {
			k.file = f // read whole and checked before, unchanged since (markXattr)
			close(k.ahead)
			continue
		}
		go k.checkAhead(ctx, newVerifyReader(f, vl.desc.Digest, vl.desc.Size, vl.what+" ("+vl.desc.Digest.String()+")"), f, vl.desc.Digest)
	}
}

func unwrapVerified(l v1.Layer) *verifiedLayer {
	if ml, ok := l.(*remote.MountableLayer); ok {
		l = ml.Layer
	}
	vl, _ := l.(*verifiedLayer)
	return vl
}

// keptBlob is a verified layer's local, checked copy of its blob.
type keptBlob struct {
	dir   string
	ahead chan struct{} // closed once the check ahead (if any) is over

	mu       sync.Mutex
	file     *os.File // a layout's blob file, checked whole; handed out once
	spooled  string   // a registry's blob, copied into dir and checked
	spooling bool     // a read is copying it now
}

// checkAhead reads the blob file f whole through vr, keeping (and
// marking) f if it matches blob h. A mismatch is left for the output to
// find and report, reading the blob again as it would have without
// KeepBlobs.
func (k *keptBlob) checkAhead(ctx context.Context, vr *verifyReader, f *os.File, h v1.Hash) {
	defer close(k.ahead)
	if err := drain(ctx, vr); err != nil {
		f.Close()
		return
	}
	markVerified(f, h, false)
	k.mu.Lock()
	k.file = f
	k.mu.Unlock()
}

// drain reads r to its end; a verifying reader's io.EOF means a match.
func drain(ctx context.Context, r io.Reader) error {
	buf := make([]byte, hashBufferSize)
	for {
		_, err := ctxReader{ctx, r}.Read(buf)
		if errors.Is(err, io.EOF) {
			return nil
		}
		if err != nil {
			return err
		}
	}
}

// checked returns a file that holds the blob, checked in this process, or
// nil; it waits for a check ahead to end. The caller closes the file.
func (k *keptBlob) checked(ctx context.Context) *os.File {
	select {
	case <-k.ahead:
	case <-ctx.Done():
		return nil
	}
	k.mu.Lock()
	defer k.mu.Unlock()
	if f := k.file; f != nil {
		k.file = nil
		if _, err := f.Seek(0, io.SeekStart); err != nil {
			f.Close()
			return nil
		}
		return f
	}
	if k.spooled != "" {
		if f, err := os.Open(k.spooled); err == nil {
			return f
		}
	}
	return nil
}

// spool returns the stream of a registry's blob, vr, copying it into the
// folder as it is read when no other read does: the copy is kept if the
// stream ends matching the digest.
func (k *keptBlob) spool(vr *verifyReader) io.ReadCloser {
	k.mu.Lock()
	defer k.mu.Unlock()
	if k.spooling || k.spooled != "" || k.dir == "" {
		return vr
	}
	f, err := os.CreateTemp(k.dir, ".blob-"+vr.want.Hex[:12]+"-")
	if err != nil {
		return vr
	}
	k.spooling = true
	return &spoolReader{vr: vr, f: f, k: k, final: filepath.Join(k.dir, "blob-"+vr.want.Hex)}
}

// spoolReader copies what it reads into a file, renamed to final when the
// verifying reader under it reports a match.
type spoolReader struct {
	vr    *verifyReader
	f     *os.File // nil once committed or dropped
	k     *keptBlob
	final string
}

func (s *spoolReader) Read(p []byte) (int, error) {
	n, err := s.vr.Read(p)
	if s.f != nil && n > 0 {
		if _, werr := s.f.Write(p[:n]); werr != nil {
			s.finish(false)
		}
	}
	switch {
	case errors.Is(err, io.EOF):
		s.finish(true)
	case err != nil:
		s.finish(false)
	}
	return n, err
}

// Close reads what the consumer left (a tar reader stops at the end of
// the archive), as the verifying reader's Close would, so that the copy is
// whole.
func (s *spoolReader) Close() error {
	if s.f != nil {
		io.Copy(io.Discard, io.LimitReader(s, drainLimit))
		s.finish(false)
	}
	return s.vr.Close()
}

// finish keeps the copy (ok: the stream matched) or drops it.
func (s *spoolReader) finish(ok bool) {
	if s.f == nil {
		return
	}
	f := s.f
	s.f = nil
	if ok {
		ok = f.Chmod(blobMode) == nil && f.Close() == nil && os.Rename(f.Name(), s.final) == nil
	} else {
		f.Close()
	}
	s.k.mu.Lock()
	defer s.k.mu.Unlock()
	s.k.spooling = false
	if ok {
		s.k.spooled = s.final
		return
	}
	os.Remove(f.Name())
}

// CheckedFile is a layer whose blob is a whole file this process wrote and
// hashed as it wrote it (a build's own layer): an output stores it from
// that file without hashing it again, linked where it can (putChecked).
// A layer that cannot give it returns an error, and is read as any other.
type CheckedFile interface {
	CheckedFile() (*os.File, error)
}

// checkedBlob is layer's kept blob, if it has one (see KeepBlobs), or its
// CheckedFile.
func checkedBlob(ctx context.Context, layer v1.Layer) *os.File {
	if cf, ok := layer.(CheckedFile); ok {
		if f, err := cf.CheckedFile(); err == nil {
			return f
		}
		return nil
	}
	vl := unwrapVerified(layer)
	if vl == nil {
		return nil
	}
	k := vl.kept.Load()
	if k == nil {
		return nil
	}
	return k.checked(ctx)
}

// compressedStream is layer's compressed stream for an output: never
// spooled (see KeepBlobs).
func compressedStream(layer v1.Layer) (io.ReadCloser, error) {
	if vl := unwrapVerified(layer); vl != nil {
		return vl.compressed(false)
	}
	return layer.Compressed()
}
