package builder

import (
	"context"
	"fmt"

	"github.com/moby/buildkit/frontend/dockerfile/instructions"
	"github.com/moby/buildkit/frontend/dockerfile/shell"
)

// dispatchStep dispatches cmd as step t, which it ends. A step may build
// another stage (COPY --from) whose steps run inside it.
func (b *builder) dispatchStep(ctx context.Context, s *stageState, cmd instructions.Command, line int, t *stepTracker) error {
	outer := b.step
	b.step = t
	err := b.dispatch(ctx, s, cmd, line)
	b.step = outer
	t.end(err)
	return err
}

// dispatch expands one instruction's variables and applies it to the stage.
// line is its Dockerfile line (the FROM line for a base image's trigger).
func (b *builder) dispatch(ctx context.Context, s *stageState, cmd instructions.Command, line int) error {
	b.o.log.Debug("instruction", "stage", s.name, "line", line, "instruction", cmd.Name())
	b.line = line
	if err := b.expand(s, cmd); err != nil {
		return b.dispatchError(line, cmd, err)
	}
	if err := b.apply(ctx, s, cmd); err != nil {
		return b.dispatchError(line, cmd, err)
	}
	return nil
}

// expand expands variables as BuildKit does: with the stage's ENV and ARGs,
// every instruction but ARG (whose defaults expand as they are defined).
func (b *builder) expand(s *stageState, cmd instructions.Command) error {
	if _, isArg := cmd.(*instructions.ArgCommand); !isArg {
		if ex, ok := cmd.(instructions.SupportsSingleWordExpansion); ok {
			err := ex.Expand(func(word string) (string, error) {
				w, _, err := b.lex.ProcessWord(word, s.vars)
				return w, err
			})
			if err != nil {
				return err
			}
		}
	}
	if ex, ok := cmd.(instructions.SupportsSingleWordExpansionRaw); ok {
		return ex.ExpandRaw(func(word string) (string, error) {
			lex := shell.NewLex('\\')
			lex.SkipProcessQuotes = true
			w, _, err := lex.ProcessWord(word, s.vars)
			return w, err
		})
	}
	return nil
}

// apply runs one expanded instruction.
func (b *builder) apply(ctx context.Context, s *stageState, cmd instructions.Command) error {
	switch c := cmd.(type) {
	case *instructions.RunCommand:
		return b.runCmd(ctx, s, c)
	case *instructions.CopyCommand:
		return b.copyCmd(ctx, s, c)
	case *instructions.AddCommand:
		return b.addCmd(ctx, s, c)
	case *instructions.WorkdirCommand:
		return b.workdir(ctx, s, c)
	case *instructions.ArgCommand:
		return b.arg(s, c)
	case *instructions.ExposeCommand:
		return b.expose(s, c)
	case *instructions.OnbuildCommand:
		s.cfg.Config.OnBuild = append(s.cfg.Config.OnBuild, c.Expression)
		return nil
	}
	if b.metadata(s, cmd) {
		return nil
	}
	return fmt.Errorf("%w: instruction %s", ErrNotSupported, cmd.Name())
}
