package dockerfile

import (
	"fmt"
	"maps"
	"slices"
	"strings"

	"github.com/moby/buildkit/util/suggest"
)

// unsetVars says why variables a FROM line used had no value: not
// declared by an ARG before the first FROM (a build arg alone is invisible
// there, as in BuildKit, whose linter calls this UndefinedArgInFrom), or
// declared without a default that no build arg gives. "" for none.
func (ev *evaluator) unsetVars(unmatched map[string]struct{}) string {
	declared := map[string]bool{}
	for _, cmd := range ev.f.meta {
		for _, kv := range cmd.Args {
			declared[kv.Key] = true
		}
	}
	var undeclared, empty, hints []string
	for _, name := range slices.Sorted(maps.Keys(unmatched)) {
		if declared[name] {
			empty = append(empty, name)
			continue
		}
		undeclared = append(undeclared, name)
		if _, given := ev.buildArgs[name]; given {
			hints = append(hints, fmt.Sprintf("--build-arg %s is ignored without an ARG %s before the first FROM", name, name))
		} else if match, ok := suggest.Search(name, slices.Sorted(maps.Keys(declared)), true); ok {
			hints = append(hints, fmt.Sprintf("did you mean %s?", match))
		}
	}
	var why []string
	if len(undeclared) > 0 {
		why = append(why, fmt.Sprintf("%s %s not declared (FROM sees only the ARGs before the first FROM)", andList(undeclared), isAre(undeclared)))
	}
	if len(empty) > 0 {
		why = append(why, fmt.Sprintf("%s %s declared without a default and no --build-arg gives %s", andList(empty), isAre(empty), itThem(empty)))
	}
	msg := strings.Join(why, "; ")
	if len(hints) > 0 {
		msg += " (" + strings.Join(hints, "; ") + ")"
	}
	return msg
}

// andList joins names as "A", "A and B", "A, B and C".
func andList(names []string) string {
	if len(names) == 1 {
		return names[0]
	}
	return strings.Join(names[:len(names)-1], ", ") + " and " + names[len(names)-1]
}

func isAre(names []string) string {
	if len(names) == 1 {
		return "is"
	}
	return "are"
}

func itThem(names []string) string {
	if len(names) == 1 {
		return "it"
	}
	return "them"
}
