package dockerfile

import (
	"github.com/moby/buildkit/frontend/dockerfile/shell"
	specs "github.com/opencontainers/image-spec/specs-go/v1"

	"kiln/platform"
)

// Options say how to evaluate the Dockerfile.
type Options struct {
	Args           map[string]string // build args: override ARG defaults and the automatic platform ARGs
	Target         string            // stage to build; "" = last stage
	TargetPlatform specs.Platform    // the platform being built; zero value = platform.Host()
	BuildPlatform  specs.Platform    // the platform doing the build; zero value = TargetPlatform (kiln builds natively)
	AllStages      bool              // true: every stage's images, not only those the target needs
}

// Kinds of BaseImage: the instruction that names the image.
const (
	KindFrom      = "from"       // FROM image
	KindCopyFrom  = "copy-from"  // COPY --from=image
	KindMountFrom = "mount-from" // RUN --mount=...,from=image
)

// BaseImage is an image a Dockerfile pulls.
type BaseImage struct {
	Ref      string         // image reference after ARG expansion, as written (e.g. "golang:1.22-alpine", "alpine@sha256:...")
	Platform specs.Platform // FROM --platform=... when given (expanded, parsed, normalised), else TargetPlatform
	Stage    string         // name (or index as string) of the stage that uses it
	Line     int            // 1-based Dockerfile line of the FROM / COPY --from / RUN --mount from
	Kind     string         // KindFrom, KindCopyFrom or KindMountFrom
}

// BaseImages parses a Dockerfile (dockerfile: its bytes, filename for error
// messages) and returns every external image it needs, deduplicated on (Ref,
// Platform), in order of first appearance. It skips "scratch" and references to
// stages (by name, case-insensitively, or by index in COPY --from). It includes
// images named in COPY --from=<image> and RUN --mount=...,from=<image>, also
// through ONBUILD triggers of a stage that a later stage builds on; ONBUILD
// triggers inside base images are not seen, they need the image itself.
//
// Problems in the Dockerfile are *Error values; an unknown Options.Target wraps
// ErrUnknownTarget.
func BaseImages(dockerfile []byte, filename string, opts Options) ([]BaseImage, error) {
	f, target, err := open(dockerfile, filename, opts)
	if err != nil {
		return nil, err
	}
	stages, _, err := f.evaluate(opts, target)
	if err != nil {
		return nil, err
	}
	need := needed(stages, target)
	for i := range need {
		need[i] = need[i] || opts.AllStages
	}
	return collect(stages, need), nil
}

// open parses a Dockerfile and finds the target stage's index.
func open(dockerfile []byte, filename string, opts Options) (*file, int, error) {
	if filename == "" {
		filename = "Dockerfile"
	}
	f, err := parse(dockerfile, filename)
	if err != nil {
		return nil, 0, err
	}
	target, err := f.target(opts.Target)
	if err != nil {
		return nil, 0, err
	}
	return f, target, nil
}

// evaluate expands the FROM lines with the global ARGs for opts' platforms and
// checks the stage graph. It also returns the global ARGs.
func (f *file) evaluate(opts Options, target int) ([]stage, *argEnv, error) {
	tp, bp := platforms(opts)
	lex := shell.NewLex(f.escape)
	env, err := f.globalArgs(lex, automaticArgs(tp, bp, f.stages[target].Name), opts.Args)
	if err != nil {
		return nil, nil, err
	}
	ev := &evaluator{f: f, lex: lex, env: env, target: tp, buildArgs: opts.Args}
	stages, err := ev.evaluate()
	if err != nil {
		return nil, nil, err
	}
	return stages, env, f.checkCycles(stages)
}

// platforms returns the target and build platforms, defaults filled in.
func platforms(opts Options) (target, build specs.Platform) {
	target, build = opts.TargetPlatform, opts.BuildPlatform
	if isZero(target) {
		target = platform.Host()
	}
	if isZero(build) {
		build = target
	}
	return platform.Normalize(target), platform.Normalize(build)
}

func isZero(p specs.Platform) bool {
	return p.OS == "" && p.Architecture == ""
}

// collect lists the images of the needed stages in order, each (Ref, Platform)
// once.
func collect(stages []stage, need []bool) []BaseImage {
	var out []BaseImage
	seen := map[[2]string]bool{}
	for i, st := range stages {
		if !need[i] {
			continue
		}
		for _, src := range st.sources {
			key := [2]string{src.ref, platform.Format(src.platform)}
			if src.stage >= 0 || src.ref == scratch || seen[key] {
				continue
			}
			seen[key] = true
			out = append(out, BaseImage{Ref: src.ref, Platform: src.platform, Stage: st.label, Line: src.line, Kind: src.kind})
		}
	}
	return out
}
