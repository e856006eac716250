package builder

import (
	"fmt"
	"strings"
	"time"

	"github.com/moby/buildkit/frontend/dockerfile/instructions"

	"kiln/builder/dockerfile"
)

// StepEventKind says what happened to a step.
type StepEventKind int

const (
	StepStarted StepEventKind = iota // an instruction (or a stage's FROM) began
	StepOutput                       // a line a RUN step printed
	StepDone                         // it ended (Err says how)
)

// StepEvent is one moment of a build's story, for a display (WithProgress).
type StepEvent struct {
	Kind  StepEventKind
	Stage string // the stage's name or index
	// Index and Total place the step in its stage, FROM being 1 (as
	// BuildKit numbers them: "[build 2/5]").
	Index, Total int
	Line         int    // the Dockerfile line
	Text         string // the instruction as written; for StepOutput, the line printed
	Elapsed      time.Duration
	Cached       bool // StepDone: the layer cache served it
	Err          error
}

// Label is the step's "[stage i/n] INSTRUCTION" header.
func (e StepEvent) Label() string {
	return fmt.Sprintf("[%s %d/%d] %s", e.Stage, e.Index, e.Total, e.Text)
}

// WithProgress sends each step's start, RUN output lines and end to fn, as
// they happen. fn is called from the build's goroutine (RUN output from the
// step's): it must not block for long.
func WithProgress(fn func(StepEvent)) Option { return func(o *options) { o.progress = fn } }

// stepText is an instruction's text for a display: as written, its first
// line, at most 200 bytes.
func stepText(cmd instructions.Command) string {
	text := cmd.Name()
	if s, ok := cmd.(fmt.Stringer); ok && s.String() != "" {
		text = s.String()
	}
	text, _, _ = strings.Cut(strings.TrimSpace(text), "\n")
	if len(text) > 200 {
		text = text[:197] + "..."
	}
	return text
}

// displayStage names a stage as BuildKit's display does: its name, else
// "stage-N".
func displayStage(ps dockerfile.Stage) string {
	if ps.Name != "" {
		return ps.Name
	}
	return fmt.Sprintf("stage-%d", ps.Index)
}

// stepTracker tells the log and the display when a step starts and ends.
type stepTracker struct {
	b     *builder
	ev    StepEvent
	start time.Time
	hits  int // cacheSteps before the step: a new hit means it was served
}

// beginStep logs and announces a step of stage ps.
func (b *builder) beginStep(ps dockerfile.Stage, index int, line int, text string) *stepTracker {
	t := &stepTracker{b: b, start: time.Now(), hits: len(b.cacheSteps), ev: StepEvent{
		Kind: StepStarted, Stage: displayStage(ps), Index: index, Total: len(ps.Commands) + 1, Line: line, Text: text,
	}}
	b.o.log.Info(t.ev.Label(), "line", line)
	if b.o.progress != nil {
		b.o.progress(t.ev)
	}
	return t
}

// output passes a RUN step's line to the display.
func (t *stepTracker) output(line string) {
	if t == nil || t.b.o.progress == nil {
		return
	}
	ev := t.ev
	ev.Kind, ev.Text = StepOutput, line
	t.b.o.progress(ev)
}

// end logs and announces the step's end.
func (t *stepTracker) end(err error) {
	ev := t.ev
	ev.Kind, ev.Elapsed, ev.Err = StepDone, time.Since(t.start), err
	if n := len(t.b.cacheSteps); n > t.hits && t.b.cacheSteps[n-1].Hit && t.b.cacheSteps[n-1].Line == ev.Line {
		ev.Cached = true
	}
	state := "done"
	switch {
	case err != nil:
		state = "failed"
	case ev.Cached:
		state = "cached"
	}
	t.b.o.log.Info("step "+state, "step", fmt.Sprintf("[%s %d/%d]", ev.Stage, ev.Index, ev.Total), "line", ev.Line,
		"seconds", roundSeconds(ev.Elapsed))
	if t.b.o.progress != nil {
		t.b.o.progress(ev)
	}
}
