package dockerfile

import (
	"errors"
	"fmt"
	"strconv"
	"strings"

	"github.com/google/go-containerregistry/pkg/name"
	"github.com/moby/buildkit/frontend/dockerfile/instructions"
	"github.com/moby/buildkit/frontend/dockerfile/shell"
	specs "github.com/opencontainers/image-spec/specs-go/v1"

	"kiln/platform"
)

// scratch is the empty base image: nothing to pull.
const scratch = "scratch"

// source is something a stage reads from: an image or another stage.
type source struct {
	ref      string         // the image reference, or the stage's name or index as written
	stage    int            // the stage it names, or -1 for an image
	platform specs.Platform // the platform an image is pulled for
	line     int
	kind     string
}

// stage is one evaluated stage: its FROM first, then every --from it reads.
type stage struct {
	label   string
	sources []source
}

// evaluator turns parsed stages into sources, expanding FROM lines with the
// global ARGs.
type evaluator struct {
	f         *file
	lex       *shell.Lex
	env       *argEnv
	target    specs.Platform
	buildArgs map[string]string // to tell a build arg no ARG declares
}

// evaluate evaluates every stage, needed or not: like buildkit, a FROM that
// cannot be resolved is an error even in a stage the target skips.
func (ev *evaluator) evaluate() ([]stage, error) {
	out := make([]stage, len(ev.f.stages))
	for i := range ev.f.stages {
		from, err := ev.from(i)
		if err != nil {
			return nil, err
		}
		out[i] = stage{label: ev.f.stageLabel(i), sources: []source{from}}
		if from.stage >= 0 {
			if out[i].sources, err = ev.triggers(from.stage, out[i].sources); err != nil {
				return nil, err
			}
		}
		for _, cmd := range ev.f.stages[i].Commands {
			if out[i].sources, err = ev.commandSources(cmd, lineOf(cmd.Location()), out[i].sources); err != nil {
				return nil, err
			}
		}
	}
	return out, nil
}

// from evaluates the FROM of stage i: an earlier stage, scratch or an image.
func (ev *evaluator) from(i int) (source, error) {
	st := ev.f.stages[i]
	line := lineOf(st.Location)
	res, err := ev.lex.ProcessWordWithMatches(st.BaseName, ev.env)
	if err != nil {
		return source{}, ev.f.errAt(line, "FROM", err)
	}
	ref := res.Result
	if ref == "" {
		err := fmt.Errorf("image name %q expands to an empty string", st.BaseName)
		if why := ev.unsetVars(res.Unmatched); why != "" {
			err = fmt.Errorf("%s: %w", why, err)
		}
		return source{}, ev.f.errAt(line, "FROM", err)
	}
	p, err := ev.platform(st.Platform)
	if err != nil {
		return source{}, ev.f.errAt(line, "FROM", err)
	}
	src := source{ref: ref, stage: ev.f.stageIndex(ref, i), platform: p, line: line, kind: KindFrom}
	if err := ev.check(src, "FROM"); err != nil {
		var de *Error
		if why := ev.unsetVars(res.Unmatched); why != "" && errors.As(err, &de) {
			de.Err = fmt.Errorf("%s: image name %q expands to %w", why, st.BaseName, de.Err)
		}
		return source{}, err
	}
	return src, nil
}

// platform evaluates FROM --platform; without it the image is pulled for the
// target platform.
func (ev *evaluator) platform(expr string) (specs.Platform, error) {
	if expr == "" {
		return ev.target, nil
	}
	s, _, err := ev.lex.ProcessWord(expr, ev.env)
	if err != nil {
		return specs.Platform{}, err
	}
	if s == "" {
		return specs.Platform{}, fmt.Errorf("--platform=%s expands to an empty string", expr)
	}
	return platform.Parse(s)
}

// triggers adds the sources of the ONBUILD instructions of stage base, which
// buildkit runs first in every stage built FROM it.
func (ev *evaluator) triggers(base int, srcs []source) ([]source, error) {
	for _, cmd := range ev.f.stages[base].Commands {
		ob, ok := cmd.(*instructions.OnbuildCommand)
		if !ok {
			continue
		}
		line := lineOf(ob.Location())
		trigger, err := parseTrigger(ob.Expression)
		if err != nil {
			return nil, ev.f.errAt(line, "ONBUILD", err)
		}
		if srcs, err = ev.commandSources(trigger, line, srcs); err != nil {
			return nil, err
		}
	}
	return srcs, nil
}

// commandSources appends what cmd reads from: COPY --from and RUN --mount from=.
func (ev *evaluator) commandSources(cmd instructions.Command, line int, srcs []source) ([]source, error) {
	switch c := cmd.(type) {
	case *instructions.CopyCommand:
		if c.From == "" {
			return srcs, nil
		}
		src, err := ev.copyFrom(c.From, line)
		if err == nil {
			err = ev.check(src, "COPY")
		}
		if err != nil {
			return nil, err
		}
		return append(srcs, src), nil
	case *instructions.RunCommand:
		for _, m := range instructions.GetMounts(c) {
			if m.From == "" {
				continue
			}
			src := ev.named(m.From, line, KindMountFrom)
			if err := ev.check(src, "RUN"); err != nil {
				return nil, err
			}
			srcs = append(srcs, src)
		}
	}
	return srcs, nil
}

// copyFrom resolves COPY --from: a stage index, a stage name or an image.
// Like buildkit, it expands no variables there.
func (ev *evaluator) copyFrom(from string, line int) (source, error) {
	if s, _, err := ev.lex.ProcessWord(from, &argEnv{}); err != nil || s != from {
		return source{}, ev.f.errAt(line, "COPY", fmt.Errorf("--from=%s: variables are not expanded in --from; use FROM with a global ARG in a stage of its own", from))
	}
	idx, err := strconv.Atoi(from)
	if err != nil {
		return ev.named(from, line, KindCopyFrom), nil
	}
	if idx < 0 || idx >= len(ev.f.stages) {
		return source{}, ev.f.errAt(line, "COPY", fmt.Errorf("--from=%d: no stage with that index (there are %d)", idx, len(ev.f.stages)))
	}
	return source{ref: from, stage: idx, line: line, kind: KindCopyFrom}, nil
}

// named resolves a --from name: any stage of the file (buildkit allows a later
// one), else an image pulled for the target platform.
func (ev *evaluator) named(ref string, line int, kind string) source {
	return source{ref: ref, stage: ev.f.stageIndex(ref, len(ev.f.stages)), platform: ev.target, line: line, kind: kind}
}

// check validates the reference of an image source.
func (ev *evaluator) check(src source, inst string) error {
	if src.stage >= 0 || src.ref == scratch {
		return nil
	}
	_, err := name.ParseReference(src.ref)
	if err == nil {
		return nil
	}
	if _, lowerErr := name.ParseReference(strings.ToLower(src.ref)); lowerErr == nil {
		err = fmt.Errorf("%w (repository names must be lower case)", err)
	}
	return ev.f.errAt(src.line, inst, fmt.Errorf("invalid image reference %q: %w", src.ref, err))
}

// errCycle is wrapped by the error for stages that need each other.
var errCycle = errors.New("circular dependency between stages")

// checkCycles rejects stages that depend on themselves through FROM or --from.
func (f *file) checkCycles(stages []stage) error {
	state := make([]int, len(stages)) // 0 unseen, 1 on the path, 2 done
	var visit func(i int) error
	visit = func(i int) error {
		state[i] = 1
		for _, src := range stages[i].sources {
			if src.stage < 0 || state[src.stage] == 2 {
				continue
			}
			if state[src.stage] == 1 {
				return f.errAt(src.line, "", fmt.Errorf("%w: stage %s needs stage %s", errCycle, stages[i].label, stages[src.stage].label))
			}
			if err := visit(src.stage); err != nil {
				return err
			}
		}
		state[i] = 2
		return nil
	}
	for i := range stages {
		if state[i] == 0 {
			if err := visit(i); err != nil {
				return err
			}
		}
	}
	return nil
}

// needed marks the stages that building target reads, transitively.
func needed(stages []stage, target int) []bool {
	need := make([]bool, len(stages))
	var mark func(i int)
	mark = func(i int) {
		if need[i] {
			return
		}
		need[i] = true
		for _, src := range stages[i].sources {
			if src.stage >= 0 {
				mark(src.stage)
			}
		}
	}
	mark(target)
	return need
}
