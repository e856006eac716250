package kube

import (
	"bufio"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"
	"os"

	"github.com/google/go-containerregistry/pkg/name"

	"kiln/builder"
	"kiln/builder/buildcontext"
)

// PodContext is an image's build context made ready for a pod.
type PodContext struct {
	// Ref is what the pod's kiln reads: blob://REPO@sha256:... for a
	// packed context, a git URL as given (the pod fetches it itself).
	Ref        string
	Dockerfile []byte
	// Pack is the packed context's file (a gzipped tar, removed by
	// Close), to push to Repository; "" for a git URL.
	Pack       string
	Repository name.Repository
}

// PrepareContext opens req's context, reads its Dockerfile and, unless it
// is a git URL, packs it (buildcontext.Pack) into a file under tempDir,
// naming it by digest in repo. The runner pushes the file; kiln render
// only needs the name, which is the same.
func PrepareContext(ctx context.Context, req builder.Request, repo name.Repository, tempDir string) (*PodContext, error) {
	c, err := buildcontext.Open(ctx, req.Context, buildcontext.Options{Dockerfile: req.Dockerfile, TempDir: tempDir, Exclude: req.Exclude})
	if err != nil {
		return nil, err
	}
	defer c.Close()
	df, err := c.Dockerfile()
	if err != nil {
		return nil, err
	}
	pc := &PodContext{Dockerfile: df, Repository: repo}
	if _, isGit := buildcontext.ParseGitURL(req.Context); isGit {
		if _, statErr := os.Stat(req.Context); statErr != nil {
			pc.Ref = req.Context
			return pc, nil
		}
	}
	f, err := os.CreateTemp(tempDir, "kiln-context-*.tar.gz")
	if err != nil {
		return nil, err
	}
	pc.Pack = f.Name()
	h := sha256.New()
	bw := bufio.NewWriterSize(io.MultiWriter(f, h), 1<<20)
	err = c.Pack(bw)
	if err == nil {
		err = bw.Flush()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		pc.Close()
		return nil, err
	}
	pc.Ref = "blob://" + repo.Digest("sha256:"+hex.EncodeToString(h.Sum(nil))).String()
	return pc, nil
}

// Close removes the packed file.
func (pc *PodContext) Close() error {
	if pc.Pack == "" {
		return nil
	}
	return os.Remove(pc.Pack)
}

// ContextRepository is where an image's packed context goes: the
// configured repository, else the image's first tag's.
func ContextRepository(configured string, tags []name.Reference) (name.Repository, error) {
	if configured != "" {
		repo, err := name.NewRepository(configured)
		if err != nil {
			return name.Repository{}, fmt.Errorf("runner.kubernetes.context_repository: %w", err)
		}
		return repo, nil
	}
	if len(tags) == 0 {
		return name.Repository{}, fmt.Errorf("the Kubernetes runner pushes the build context to the first tag's repository, or to runner.kubernetes.context_repository: give the image tags")
	}
	return tags[0].Context(), nil
}
