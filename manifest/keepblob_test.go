package manifest

import (
	"bytes"
	"context"
	"errors"
	"io"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/random"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/google/go-containerregistry/pkg/v1/static"
	"github.com/google/go-containerregistry/pkg/v1/types"
	"golang.org/x/sys/unix"
)

// counted is a layer that counts the reads of its blob, as a registry
// would count downloads.
type counted struct {
	v1.Layer
	reads *atomic.Int32
}

func (c counted) Compressed() (io.ReadCloser, error) {
	c.reads.Add(1)
	return c.Layer.Compressed()
}

// unpackAll reads every layer as a build's unpack does.
func unpackAll(t *testing.T, img v1.Image) error {
	t.Helper()
	layers, _ := img.Layers()
	for _, l := range layers {
		rc, err := l.Uncompressed()
		if err != nil {
			return err
		}
		if _, err := io.Copy(io.Discard, rc); err != nil {
			rc.Close()
			return err
		}
		if err := rc.Close(); err != nil {
			return err
		}
	}
	return nil
}

// A registry's layers read by the build are copied as they are read: the
// output reads the copies, never the registry again.
func TestKeepBlobsSpoolsWhatTheBuildReads(t *testing.T) {
	var reads atomic.Int32
	src, err := random.Layer(4096, types.OCILayer)
	if err != nil {
		t.Fatal(err)
	}
	ref, _ := name.ParseReference("example.com/base:1")
	img, err := VerifiedImage(imageOf(t, &remote.MountableLayer{Layer: counted{src, &reads}, Reference: ref}), "remote")
	if err != nil {
		t.Fatal(err)
	}
	work := t.TempDir()
	KeepBlobs(context.Background(), img, work)
	if err := unpackAll(t, img); err != nil {
		t.Fatal(err)
	}
	out, err := OpenLayout(filepath.Join(t.TempDir(), "out"))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := out.WriteImage(context.Background(), img, "app"); err != nil {
		t.Fatal(err)
	}
	if n := reads.Load(); n != 1 {
		t.Errorf("the layer's blob was read %d times, want once", n)
	}
	h, _ := src.Digest()
	rc, _ := src.Compressed()
	want, _ := io.ReadAll(rc)
	if got := readBytes(t, out.BlobPath(h)); !bytes.Equal(got, want) {
		t.Errorf("the output's blob differs from the layer's")
	}
}

// A blob that does not match its digest is not kept: the build's read
// fails, and so does the output's, which reads the source again.
func TestKeepBlobsDropsAMismatch(t *testing.T) {
	orig := static.NewLayer(tarOf(t, "good"), types.OCIUncompressedLayer)
	img, err := VerifiedImage(imageOf(t, swapped{Layer: orig, bytes: tarOf(t, "EVIL")}), "remote")
	if err != nil {
		t.Fatal(err)
	}
	work := t.TempDir()
	KeepBlobs(context.Background(), img, work)
	if err := unpackAll(t, img); !errors.Is(err, ErrIntegrity) {
		t.Fatalf("unpacking a tampered layer: %v, want ErrIntegrity", err)
	}
	if left, _ := os.ReadDir(work); len(left) != 0 {
		t.Errorf("the work folder holds %d files after a mismatch, want none", len(left))
	}
	out, err := OpenLayout(filepath.Join(t.TempDir(), "out"))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := out.WriteImage(context.Background(), img, "app"); !errors.Is(err, ErrIntegrity) {
		t.Errorf("writing the image: %v, want ErrIntegrity", err)
	}
}

// A cache's blobs are checked ahead and linked into an output on their
// filesystem; one damaged before the check is refused as without it.
func TestKeepBlobsChecksCachedBlobsAhead(t *testing.T) {
	for _, damage := range []bool{false, true} {
		t.Run(map[bool]string{false: "intact", true: "damaged"}[damage], func(t *testing.T) {
			root := t.TempDir()
			cache, img := cachedImage(t, filepath.Join(root, "cache"))
			h := layerDigests(t, img)[0]
			if damage {
				p := cache.BlobPath(h)
				data := readBytes(t, p)
				data[len(data)/2] ^= 0xff
				writeFile(t, p, data)
				if err := os.Chmod(p, blobMode); err != nil {
					t.Fatal(err)
				}
			}
			KeepBlobs(context.Background(), img, filepath.Join(root, "work"))
			out, err := OpenLayout(filepath.Join(root, "out"))
			if err != nil {
				t.Fatal(err)
			}
			_, err = out.WriteImage(context.Background(), img, "app")
			if damage {
				if !errors.Is(err, ErrIntegrity) || !strings.Contains(err.Error(), h.String()) {
					t.Fatalf("writing an image with a damaged cached layer: %v, want ErrIntegrity naming %s", err, h)
				}
				if out.HasBlob(h, -1) {
					t.Errorf("the damaged layer is in the output")
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			for _, h := range layerDigests(t, img) {
				if !sameFile(t, cache.BlobPath(h), out.BlobPath(h)) {
					t.Errorf("layer %s was copied, want a link to the cache's blob", h)
				}
			}
		})
	}
}

// A blob kiln committed carries the mark of its check: its output link
// then needs no second read. One written in place since (same inode, new
// mtime) is hashed again and refused.
func TestKeepBlobsTrustsMarkedBlobs(t *testing.T) {
	root := t.TempDir()
	cache, img := cachedImage(t, filepath.Join(root, "cache"))
	h := layerDigests(t, img)[0]
	p := cache.BlobPath(h)
	if _, err := unix.Getxattr(p, markXattr, make([]byte, 256)); errors.Is(err, unix.ENOTSUP) {
		t.Skip("no user xattrs on this filesystem: blobs are hashed on every use")
	} else if err != nil {
		t.Fatalf("a committed blob carries no mark: %v", err)
	}
	kept := func(img v1.Image) *keptBlob {
		layers, _ := img.Layers()
		for _, l := range layers {
			if d, _ := l.Digest(); d == h {
				return unwrapVerified(l).kept.Load()
			}
		}
		t.Fatalf("no layer %s", h)
		return nil
	}
	KeepBlobs(context.Background(), img, filepath.Join(root, "work"))
	select {
	case <-kept(img).ahead:
	default:
		t.Fatal("a marked blob is being read ahead, want it kept at once")
	}
	if kept(img).file == nil {
		t.Fatal("a marked blob was not kept")
	}

	// Damaged in place: the inode keeps its mark, but its mtime moves on.
	if err := os.Chmod(p, 0o644); err != nil {
		t.Fatal(err)
	}
	f, err := os.OpenFile(p, os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := f.WriteAt([]byte{'!'}, 10); err != nil {
		t.Fatal(err)
	}
	f.Close()
	if err := os.Chmod(p, blobMode); err != nil {
		t.Fatal(err)
	}
	d, err := img.Digest()
	if err != nil {
		t.Fatal(err)
	}
	raw, err := cache.ImageByDigest(d)
	if err != nil {
		t.Fatal(err)
	}
	if img, err = VerifiedImage(raw, "base"); err != nil {
		t.Fatal(err)
	}
	KeepBlobs(context.Background(), img, filepath.Join(root, "work"))
	out, err := OpenLayout(filepath.Join(root, "out"))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := out.WriteImage(context.Background(), img, "app"); !errors.Is(err, ErrIntegrity) {
		t.Fatalf("writing an image with a blob damaged in place: %v, want ErrIntegrity", err)
	}
}
