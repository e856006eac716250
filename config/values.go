package config

import (
	"path/filepath"
	"slices"
)

// validator turns raw values into Config fields, recording every problem.
type validator struct {
	*problems
	dir   string    // the build file's folder
	paths *pathRule // where project paths may lead
}

// str returns v as a string; ok is false if v is unset or not a string.
func (v *validator) str(p path, x value) (s string, ok bool) {
	if !x.set {
		return "", false
	}
	if s, ok = x.v.(string); !ok {
		v.addf(p, "want a string, got %s", typeName(x.v))
	}
	return s, ok
}

// nonEmpty is str for values that mean nothing when empty.
func (v *validator) nonEmpty(p path, x value) (string, bool) {
	s, ok := v.str(p, x)
	if ok && s == "" {
		v.addf(p, "must not be empty")
		return "", false
	}
	return s, ok
}

// strs returns v as a list of strings; ok is false if it is unset or not
// all strings, each bad element reported.
func (v *validator) strs(p path, x value) ([]string, bool) {
	if !x.set {
		return nil, false
	}
	list, ok := x.v.([]any)
	if !ok {
		v.addf(p, "want an array of strings, got %s", typeName(x.v))
		return nil, false
	}
	out, all := make([]string, len(list)), true
	for i, e := range list {
		s, isString := e.(string)
		if !isString {
			v.addf(p.at(i), "want a string, got %s", typeName(e))
			all = false
		}
		out[i] = s
	}
	if !all {
		return nil, false
	}
	return out, true
}

// strMap returns a table of strings, nil if unset.
func (v *validator) strMap(p path, m map[string]value, checkKey func(string) string) map[string]string {
	if m == nil {
		return nil
	}
	out := make(map[string]string, len(m))
	for _, k := range sortedKeys(m) {
		kp := p.child(k)
		if msg := checkKey(k); msg != "" {
			v.addf(kp, "%s", msg)
		}
		if s, ok := v.str(kp, m[k]); ok {
			out[k] = s
		}
	}
	return out
}

func (v *validator) integer(p path, x value) (int64, bool) {
	if !x.set {
		return 0, false
	}
	n, ok := x.v.(int64)
	if !ok {
		v.addf(p, "want an integer, got %s", typeName(x.v))
	}
	return n, ok
}

func (v *validator) boolean(p path, x value) bool {
	if !x.set {
		return false
	}
	b, ok := x.v.(bool)
	if !ok {
		v.addf(p, "want a boolean, got %s", typeName(x.v))
	}
	return b
}

// abs resolves a path from the build file against the file's folder.
func (v *validator) abs(p string) string {
	if filepath.IsAbs(p) {
		return filepath.Clean(p)
	}
	return filepath.Join(v.dir, p)
}

func sortedKeys[V any](m map[string]V) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	return keys
}
