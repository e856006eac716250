package dockerfile

import (
	"github.com/moby/buildkit/frontend/dockerfile/instructions"
	"github.com/moby/buildkit/frontend/dockerfile/shell"
	specs "github.com/opencontainers/image-spec/specs-go/v1"

	"kiln/platform"
)

// argEnv holds ARG values in definition order; shell.Lex reads it.
type argEnv struct {
	vals map[string]string
	keys []string
}

var _ shell.EnvGetter = (*argEnv)(nil)

func (e *argEnv) Get(key string) (string, bool) {
	v, ok := e.vals[key]
	return v, ok
}

func (e *argEnv) Keys() []string { return e.keys }

func (e *argEnv) set(key, val string) {
	if e.vals == nil {
		e.vals = map[string]string{}
	}
	if _, ok := e.vals[key]; !ok {
		e.keys = append(e.keys, key)
	}
	e.vals[key] = val
}

// automaticArgs are the ARGs buildkit defines before the first line, in its
// order (dockerfile2llb.defaultArgs).
func automaticArgs(target, build specs.Platform, stage string) [][2]string {
	if stage == "" {
		stage = "default"
	}
	return [][2]string{
		{"BUILDPLATFORM", platform.Format(build)},
		{"BUILDOS", build.OS},
		{"BUILDOSVERSION", build.OSVersion},
		{"BUILDARCH", build.Architecture},
		{"BUILDVARIANT", build.Variant},
		{"TARGETPLATFORM", platform.Format(target)},
		{"TARGETOS", target.OS},
		{"TARGETOSVERSION", target.OSVersion},
		{"TARGETARCH", target.Architecture},
		{"TARGETVARIANT", target.Variant},
		{"TARGETSTAGE", stage},
	}
}

// globalArgs evaluates the scope FROM lines see: the automatic ARGs, then the
// ARGs before the first FROM. A build arg overrides an automatic ARG or a
// declared one; a build arg no ARG declares stays invisible, as in buildkit.
func (f *file) globalArgs(lex *shell.Lex, auto [][2]string, buildArgs map[string]string) (*argEnv, error) {
	env := &argEnv{}
	for _, kv := range auto {
		if v, ok := buildArgs[kv[0]]; ok {
			kv[1] = v
		}
		env.set(kv[0], kv[1])
	}
	for _, cmd := range f.meta {
		for _, kv := range cmd.Args {
			if err := f.defineArg(lex, env, kv, buildArgs, cmd); err != nil {
				return nil, err
			}
		}
	}
	return env, nil
}

// defineArg adds one global ARG to env: the build arg if given, else its
// default expanded with the ARGs before it. An ARG with neither stays unset,
// which FROM expands to the empty string.
func (f *file) defineArg(lex *shell.Lex, env *argEnv, kv instructions.KeyValuePairOptional, buildArgs map[string]string, cmd *instructions.ArgCommand) error {
	if v, ok := buildArgs[kv.Key]; ok {
		env.set(kv.Key, v)
		return nil
	}
	if kv.Value == nil {
		return nil
	}
	v, _, err := lex.ProcessWord(*kv.Value, env)
	if err != nil {
		return f.errAt(lineOf(cmd.Location()), "ARG", err)
	}
	env.set(kv.Key, v)
	return nil
}
