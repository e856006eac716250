package dockerfile

import (
	"bytes"
	"errors"
	"fmt"
	"strconv"
	"strings"

	"github.com/moby/buildkit/frontend/dockerfile/instructions"
	"github.com/moby/buildkit/frontend/dockerfile/linter"
	"github.com/moby/buildkit/frontend/dockerfile/parser"
)

// file is a parsed Dockerfile: its stages and the ARGs before the first FROM.
type file struct {
	name   string
	stages []instructions.Stage
	meta   []*instructions.ArgCommand
	escape rune
}

// parse reads a Dockerfile with buildkit's parser and groups its instructions
// into stages the way instructions.Parse does, keeping each node's line for
// errors.
func parse(dockerfile []byte, filename string) (*file, error) {
	if err := checkUTF16(dockerfile, filename); err != nil {
		return nil, err
	}
	res, err := parser.Parse(bytes.NewReader(dockerfile))
	if err != nil {
		return nil, parseError(filename, err)
	}
	f := &file{name: filename, escape: res.EscapeToken}
	// A linter that reports nowhere: buildkit dereferences a nil one when a
	// comment such as "# check=skip=all" sits above an instruction.
	lint := linter.New(&linter.Config{})
	lines := bytes.Split(dockerfile, []byte("\n"))
	for _, node := range res.AST.Children {
		if err := f.checkText(lines, node); err != nil {
			return nil, err
		}
		if err := f.add(node, lint); err != nil {
			return nil, err
		}
	}
	if len(f.stages) == 0 {
		return nil, f.errAt(res.AST.StartLine, "", errors.New("no FROM instruction: the Dockerfile has no stage to build"))
	}
	return f, nil
}

// add appends one instruction to the stage it belongs to.
func (f *file) add(node *parser.Node, lint *linter.Linter) error {
	inst, err := instructions.ParseInstructionWithLinter(node, lint)
	if err != nil {
		return f.instructionError(node, err)
	}
	switch c := inst.(type) {
	case *instructions.Stage:
		f.stages = append(f.stages, *c)
		return nil
	case *instructions.ArgCommand:
		if len(f.stages) == 0 {
			f.meta = append(f.meta, c)
			return nil
		}
	}
	cmd, ok := inst.(instructions.Command)
	if !ok {
		return f.errAt(node.StartLine, strings.ToUpper(node.Value), fmt.Errorf("%T is not a command", inst))
	}
	if len(f.stages) == 0 {
		return f.errAt(node.StartLine, strings.ToUpper(node.Value), errors.New("only ARG may come before the first FROM"))
	}
	f.stages[len(f.stages)-1].AddCommand(cmd)
	return nil
}

// parseTrigger parses the instruction of an ONBUILD as buildkit does when a
// later stage builds on the stage that holds it.
func parseTrigger(expr string) (instructions.Command, error) {
	if err := textError([]byte(expr)); err != nil {
		return nil, err
	}
	res, err := parser.Parse(strings.NewReader(expr))
	if err != nil {
		return nil, err
	}
	if len(res.AST.Children) != 1 {
		return nil, errors.New("an ONBUILD trigger must be a single instruction")
	}
	return instructions.ParseCommand(res.AST.Children[0])
}

// stageIndex finds the stage called name (case-insensitively) among the
// first n stages; the last one of that name wins, as in buildkit. -1: none.
func (f *file) stageIndex(name string, n int) int {
	for i := n - 1; i >= 0; i-- {
		if f.stages[i].Name != "" && strings.EqualFold(f.stages[i].Name, name) {
			return i
		}
	}
	return -1
}

// stageLabel names stage i for BaseImage.Stage: its name, or its index.
func (f *file) stageLabel(i int) string {
	if f.stages[i].Name != "" {
		return f.stages[i].Name
	}
	return strconv.Itoa(i)
}

// target returns the index of the stage to build: the one named, or the last.
func (f *file) target(name string) (int, error) {
	if name == "" {
		return len(f.stages) - 1, nil
	}
	if i := f.stageIndex(name, len(f.stages)); i >= 0 {
		return i, nil
	}
	var names []string
	for _, st := range f.stages {
		if st.Name != "" {
			names = append(names, st.Name)
		}
	}
	if len(names) == 0 {
		return 0, fmt.Errorf("%w %q in %s: it has no named stages", ErrUnknownTarget, name, f.name)
	}
	return 0, fmt.Errorf("%w %q in %s; stages are: %s", ErrUnknownTarget, name, f.name, strings.Join(names, ", "))
}
