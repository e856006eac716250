package builder

import (
	"strings"

	"github.com/moby/buildkit/frontend/dockerfile/shell"
)

// vars is the scope variables expand in: the image's ENV and the stage's
// ARGs, in definition order, the later definition of a name winning.
type vars struct {
	keys []string
	vals map[string]string
}

var _ shell.EnvGetter = (*vars)(nil)

// newVars starts a scope from an image config's Env ("K=V" entries).
func newVars(env []string) *vars {
	v := &vars{vals: map[string]string{}}
	for _, kv := range env {
		k, val, _ := strings.Cut(kv, "=")
		v.set(k, val)
	}
	return v
}

func (v *vars) Get(key string) (string, bool) {
	val, ok := v.vals[key]
	return val, ok
}

func (v *vars) Keys() []string { return v.keys }

// clone is an independent copy of the scope.
func (v *vars) clone() *vars {
	c := &vars{keys: append([]string(nil), v.keys...), vals: make(map[string]string, len(v.vals))}
	for k, val := range v.vals {
		c.vals[k] = val
	}
	return c
}

func (v *vars) set(key, val string) {
	if _, ok := v.vals[key]; !ok {
		v.keys = append(v.keys, key)
	}
	v.vals[key] = val
}

// setEnv sets key in a config Env list, in place when it is there already.
func setEnv(env []string, key, val string) []string {
	for i, kv := range env {
		if k, _, _ := strings.Cut(kv, "="); k == key {
			env[i] = key + "=" + val
			return env
		}
	}
	return append(env, key+"="+val)
}
