package dockerfile

import (
	"strconv"
	"strings"

	"github.com/moby/buildkit/frontend/dockerfile/instructions"
	specs "github.com/opencontainers/image-spec/specs-go/v1"
)

// Stage is one stage of a Plan, its FROM evaluated with the global ARGs.
type Stage struct {
	Index     int
	Name      string         // as written after AS; "" when unnamed
	Base      string         // the FROM reference after ARG expansion ("scratch", an image or a stage)
	BaseStage int            // the stage Base names, or -1 for an image or scratch
	Platform  specs.Platform // FROM --platform, else the target platform
	Line      int            // the FROM line
	Commands  []instructions.Command
}

// Plan is a Dockerfile evaluated for a build: every stage with its FROM
// resolved, the stage to build and the ARG scope FROM lines saw. The builder
// dispatches the stages the target needs; Plan only knows their shape.
type Plan struct {
	File       string
	Stages     []Stage
	Target     int         // index of the stage to build
	GlobalArgs [][2]string // automatic platform ARGs and ARGs before the first FROM, build args applied, in order
	Escape     rune        // the escape directive (default '\\')
}

// NewPlan parses and evaluates a Dockerfile as BaseImages does and returns
// its stages. Problems are *Error values; an unknown target wraps
// ErrUnknownTarget.
func NewPlan(dockerfile []byte, filename string, opts Options) (*Plan, error) {
	if filename == "" {
		filename = "Dockerfile"
	}
	f, target, err := open(dockerfile, filename, opts)
	if err != nil {
		return nil, err
	}
	evaluated, env, err := f.evaluate(opts, target)
	if err != nil {
		return nil, err
	}
	p := &Plan{File: filename, Target: target, Escape: f.escape}
	for _, k := range env.keys {
		p.GlobalArgs = append(p.GlobalArgs, [2]string{k, env.vals[k]})
	}
	for i, st := range f.stages {
		from := evaluated[i].sources[0]
		p.Stages = append(p.Stages, Stage{
			Index: i, Name: st.Name, Base: from.ref, BaseStage: from.stage,
			Platform: from.platform, Line: from.line, Commands: st.Commands,
		})
	}
	return p, nil
}

// StageIndex finds the stage a --from or FROM names: a stage name
// (case-insensitively, the last of that name) or, when byIndex, a decimal
// index. -1: none, the name is an image.
func (p *Plan) StageIndex(name string, byIndex bool) int {
	for i := len(p.Stages) - 1; i >= 0; i-- {
		if p.Stages[i].Name != "" && strings.EqualFold(p.Stages[i].Name, name) {
			return i
		}
	}
	if !byIndex {
		return -1
	}
	for i := range p.Stages {
		if name == strconv.Itoa(i) {
			return i
		}
	}
	return -1
}

// Errorf builds the *Error for a problem at line of this Dockerfile.
func (p *Plan) Errorf(line int, inst string, err error) *Error {
	return &Error{File: p.File, Line: line, Msg: inst, Err: err}
}

// ParseTrigger parses an ONBUILD trigger (an image config's OnBuild entry or
// an ONBUILD instruction's expression) into the command it runs.
func ParseTrigger(expr string) (instructions.Command, error) {
	return parseTrigger(expr)
}

// Line is the first Dockerfile line of a command, 0 when it has none (a
// trigger from a base image).
func Line(cmd instructions.Command) int {
	return lineOf(cmd.Location())
}
