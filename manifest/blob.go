package manifest

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"
	"os"

	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/google/go-containerregistry/pkg/v1/tarball"
	"github.com/google/go-containerregistry/pkg/v1/types"
)

// PushBlob uploads the file at path (a gzipped tar) to repo as a blob, with
// the usual retries and the skip when the registry has it already, and
// returns its digest and size. It is how build-all hands a build context to
// a pod: by digest, nothing in the Job but the reference.
func (c *Client) PushBlob(ctx context.Context, repo name.Repository, path string) (v1.Hash, int64, error) {
	repo = c.repoFor(repo, Push)
	l, err := tarball.LayerFromFile(path, tarball.WithMediaType(types.OCILayer))
	if err != nil {
		return v1.Hash{}, 0, fmt.Errorf("blob %s: %w", path, err)
	}
	d, err := l.Digest()
	if err != nil {
		return v1.Hash{}, 0, fmt.Errorf("blob %s: %w", path, err)
	}
	size, err := l.Size()
	if err != nil {
		return v1.Hash{}, 0, fmt.Errorf("blob %s: %w", path, err)
	}
	if err := remote.WriteLayer(repo, l, c.PushOptions(ctx, repo)...); err != nil {
		return v1.Hash{}, 0, RedactError(fmt.Errorf("pushing blob %s to %s: %w", d, repo, err))
	}
	return d, size, nil
}

// DownloadBlob copies the blob ref names to w, reading it to its end and
// checking its sha256 digest: a blob that does not match is an error, and
// what was written must then not be used.
func (c *Client) DownloadBlob(ctx context.Context, ref name.Digest, w io.Writer) (int64, error) {
	want, err := v1.NewHash(ref.DigestStr())
	if err != nil || want.Algorithm != "sha256" {
		return 0, fmt.Errorf("blob %s: want a sha256 digest", ref)
	}
	ref = c.withAccess(ref, Pull).(name.Digest)
	opts, err := c.RemoteOptions(ctx, ref.Context())
	if err != nil {
		return 0, err
	}
	l, err := remote.Layer(ref, opts...)
	if err != nil {
		return 0, fmt.Errorf("blob %s: %w", ref, err)
	}
	rc, err := l.Compressed()
	if err != nil {
		return 0, fmt.Errorf("blob %s: %w", ref, err)
	}
	defer rc.Close()
	h := sha256.New()
	n, err := io.Copy(io.MultiWriter(w, h), rc)
	if err != nil {
		return n, fmt.Errorf("blob %s: %w", ref, err)
	}
	if got := hex.EncodeToString(h.Sum(nil)); got != want.Hex {
		return n, fmt.Errorf("blob %s: %w: %w: the registry sent sha256:%s (%d bytes)", ref, ErrIntegrity, ErrDigestMismatch, got, n)
	}
	return n, nil
}

// DownloadBlobFile is DownloadBlob into a new file at path, removed again
// when the download fails or does not match.
func (c *Client) DownloadBlobFile(ctx context.Context, ref name.Digest, path string) error {
	f, err := os.OpenFile(path, os.O_CREATE|os.O_EXCL|os.O_WRONLY, 0o600)
	if err != nil {
		return err
	}
	_, err = c.DownloadBlob(ctx, ref, f)
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		os.Remove(path)
	}
	return err
}
