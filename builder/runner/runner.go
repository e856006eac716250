package runner

import (
	"context"
	"io"

	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	specs "github.com/opencontainers/image-spec/specs-go/v1"

	"kiln/builder"
)

// Job is one (image, platform) to build: plain data.
type Job struct {
	Image    string         // the image's name in build.toml, for messages
	Platform specs.Platform // the platform to build; overrides Request.Platform (zero: that, else the host's)
	Request  builder.Request
	// Tags are the image's tags. A runner that pushes pushes the platform
	// image by digest into the first tag's repository, never to a tag: the
	// coordinator tags the index once every platform is there.
	Tags []name.Reference
	// Log receives the build's log lines; the coordinator prefixes them with
	// "[name platform] ". nil: the runner's own logger.
	Log io.Writer
	// Progress receives the build's steps as they run, where the runner
	// can tell them (the local runner); nil: none.
	Progress func(builder.StepEvent)
}

// Outcome is a built platform image.
type Outcome struct {
	Digest v1.Hash  // the image manifest's digest
	Image  v1.Image // nil when the image lives only in a registry (pushed by digest)
	Where  string   // where it was built: "local", a node's name
	Size   int64    // config and layers, compressed
	// Emulated is true when some RUN ran under a binfmt_misc emulator.
	Emulated bool
	// CacheHits and CacheMisses count the steps the layer cache served
	// and those it did not (both 0 without a layer cache).
	CacheHits, CacheMisses int
	// Release frees what Image holds (Local: the layer files in the job's
	// work folder). Call it once the image has been pushed or written; nil
	// when there is nothing to free.
	Release func() error
}

// Runner builds one (image, platform). Implementations must be safe for
// concurrent use: the coordinator runs several jobs at once.
type Runner interface {
	// Name says which runner this is ("local", "kubernetes"), for plans and
	// summaries.
	Name() string
	// Run builds job. An error names what failed; it never stops other jobs.
	Run(ctx context.Context, job Job) (*Outcome, error)
}

// Decider is a Runner that decides itself how each platform builds, in
// place of Decide's view from this host: a Kubernetes runner builds every
// platform natively on a node of its own, and refuses one no node can
// build (wrapping ErrNoNode) before anything starts.
type Decider interface {
	Decide(ctx context.Context, p specs.Platform) (Execution, error)
}

// Close calls Release, if there is one; it is safe on a nil Outcome.
func (o *Outcome) Close() error {
	if o == nil || o.Release == nil {
		return nil
	}
	return o.Release()
}
