package runner

import (
	"strconv"
	"strings"

	"github.com/moby/buildkit/frontend/dockerfile/instructions"
	specs "github.com/opencontainers/image-spec/specs-go/v1"

	"kiln/builder/dockerfile"
)

// RunSite is a RUN that building a Dockerfile's target executes.
type RunSite struct {
	Stage string // the stage it runs in: its name, or its index
	// Platform is what the RUN's programs are built for: the platform of
	// the image the stage's filesystem starts from (FROM --platform, or the
	// target), followed through FROM <stage>.
	Platform    specs.Platform
	File        string // the Dockerfile, as named in the plan
	Line        int    // the RUN's line; for a trigger, the ONBUILD's
	Instruction string // the instruction as written, shortened: "RUN make build"
	Trigger     bool   // an ONBUILD trigger of the stage's base stage
}

// Where reads "Dockerfile:7 RUN make build".
func (s RunSite) Where() string {
	return s.File + ":" + strconv.Itoa(s.Line) + " " + s.Instruction
}

// RunSites lists the RUN instructions building plan's target executes: those
// of every stage the target needs (FROM, COPY --from, RUN --mount from, all
// transitively), and the ONBUILD RUN triggers such a stage inherits from a
// stage of the same Dockerfile. Triggers of base images are not seen: they
// are in the image, not the Dockerfile.
func RunSites(plan *dockerfile.Plan) []RunSite {
	need := neededStages(plan)
	var out []RunSite
	for i, st := range plan.Stages {
		if !need[i] {
			continue
		}
		label := stageLabel(st)
		p := rootPlatform(plan, i)
		for _, t := range triggers(plan, i) {
			if _, ok := t.cmd.(*instructions.RunCommand); ok {
				out = append(out, RunSite{Stage: label, Platform: p, File: plan.File, Line: t.line, Instruction: shorten(t.text), Trigger: true})
			}
		}
		for _, cmd := range st.Commands {
			if run, ok := cmd.(*instructions.RunCommand); ok {
				out = append(out, RunSite{Stage: label, Platform: p, File: plan.File, Line: dockerfile.Line(cmd), Instruction: shorten(run.String())})
			}
		}
	}
	return out
}

// trigger is an ONBUILD instruction of a base stage, parsed.
type trigger struct {
	cmd  instructions.Command
	line int    // the ONBUILD's line
	text string // "ONBUILD RUN make"
}

// triggers parses the ONBUILD instructions of stage i's base stage, which
// run first in stage i. Unparsable ones are left to the build to report.
func triggers(plan *dockerfile.Plan, i int) []trigger {
	base := plan.Stages[i].BaseStage
	if base < 0 {
		return nil
	}
	var out []trigger
	for _, cmd := range plan.Stages[base].Commands {
		ob, ok := cmd.(*instructions.OnbuildCommand)
		if !ok {
			continue
		}
		t, err := dockerfile.ParseTrigger(ob.Expression)
		if err != nil {
			continue
		}
		out = append(out, trigger{cmd: t, line: dockerfile.Line(ob), text: ob.String()})
	}
	return out
}

// neededStages marks the stages building the target reads, transitively.
func neededStages(plan *dockerfile.Plan) []bool {
	need := make([]bool, len(plan.Stages))
	var mark func(i int)
	mark = func(i int) {
		if i < 0 || i >= len(need) || need[i] {
			return
		}
		need[i] = true
		mark(plan.Stages[i].BaseStage)
		for _, t := range triggers(plan, i) {
			markSources(plan, t.cmd, mark)
		}
		for _, cmd := range plan.Stages[i].Commands {
			markSources(plan, cmd, mark)
		}
	}
	mark(plan.Target)
	return need
}

// markSources marks the stages cmd reads: COPY --from and RUN --mount from.
func markSources(plan *dockerfile.Plan, cmd instructions.Command, mark func(int)) {
	switch c := cmd.(type) {
	case *instructions.CopyCommand:
		if c.From != "" {
			mark(plan.StageIndex(c.From, true))
		}
	case *instructions.RunCommand:
		for _, m := range instructions.GetMounts(c) {
			if m.From != "" {
				mark(plan.StageIndex(m.From, false))
			}
		}
	}
}

// rootPlatform is the platform of the image stage i's filesystem starts
// from: FROM <stage> keeps that stage's, as BuildKit does.
func rootPlatform(plan *dockerfile.Plan, i int) specs.Platform {
	for range plan.Stages { // bounded: cycles are rejected by NewPlan
		b := plan.Stages[i].BaseStage
		if b < 0 {
			break
		}
		i = b
	}
	return plan.Stages[i].Platform
}

func stageLabel(st dockerfile.Stage) string {
	if st.Name != "" {
		return st.Name
	}
	return strconv.Itoa(st.Index)
}

// maxInstruction bounds how much of an instruction a message quotes.
const maxInstruction = 60

// shorten puts an instruction on one line and cuts it to maxInstruction.
func shorten(s string) string {
	s = strings.Join(strings.Fields(s), " ")
	if r := []rune(s); len(r) > maxInstruction {
		return string(r[:maxInstruction-1]) + "…"
	}
	return s
}
