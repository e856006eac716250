package buildall

import (
	"time"

	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/types"
	specs "github.com/opencontainers/image-spec/specs-go/v1"

	"kiln/builder/runner"
)

// Status is what became of one (image, platform).
type Status string

const (
	StatusBuilt   Status = "built"   // built, and in the index if the image's index was made
	StatusFailed  Status = "failed"  // a required platform that did not build: the image has no index
	StatusDropped Status = "dropped" // an optional platform that did not build: left out of the index
	StatusSkipped Status = "skipped" // not built, or stopped, because a required platform of the image failed
)

// Report is what Run did, in the plan's order.
type Report struct {
	Images []ImageResult
}

// Failed reports whether some image got no index: a required platform
// failed, or the index could not be pushed or written.
func (r *Report) Failed() bool {
	for _, im := range r.Images {
		if im.Err != nil {
			return true
		}
	}
	return false
}

// ImageResult is one image: its platforms and its index.
type ImageResult struct {
	Name      string
	Index     v1.Hash         // zero when no index was made
	MediaType types.MediaType // the index's
	Tags      []name.Reference
	Pushed    bool   // the index is under every tag
	OCIDir    string // the OCI layout the index was written to; "" for none
	RefName   string // its name there
	Err       error  // why the image has no index, or what failed pushing or writing it (Name says whose)
	Platforms []PlatformResult
}

// PlatformResult is one (image, platform).
type PlatformResult struct {
	Platform specs.Platform
	Required bool
	Status   Status
	Digest   v1.Hash // the platform image; zero unless built
	Size     int64
	Duration time.Duration
	Where    string      // the runner's answer: "local", a node
	Mode     runner.Mode // as planned
	Emulated bool
	// CacheHits and CacheMisses: the layer cache's steps served and not.
	CacheHits, CacheMisses int
	Err                    error
}
