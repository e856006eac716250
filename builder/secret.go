package builder

import (
	"errors"
	"fmt"
	"os"
	"path"
	"path/filepath"
	"slices"
	"strings"

	"github.com/moby/buildkit/frontend/dockerfile/instructions"

	"kiln/builder/run"
)

// Secret is the source of a RUN --mount=type=secret: a file, or an
// environment variable of kiln's own process.
type Secret struct {
	File string
	Env  string
}

// secretDir is where a secret mount without target= is put, as BuildKit does.
const secretDir = "/run/secrets"

// secretUse is what one RUN --mount=type=secret asks for, as BuildKit reads
// it (dockerfile2llb dispatchSecret): the secret's id, the step's
// environment variable that holds its value (env=NAME), and the file that
// holds it. With env= the file is made only when target= is given too.
type secretUse struct {
	id     string
	env    string // "" when the mount has no env=
	target string // absolute path in the step; "" for no file
}

// parseSecretUse reads a secret mount; workdir resolves a relative target.
func parseSecretUse(m *instructions.Mount, workdir string) (secretUse, error) {
	u := secretUse{id: m.CacheID}
	switch {
	case m.Source != "":
		u.id = m.Source
	case u.id == "" && m.Target != "":
		u.id = path.Base(m.Target)
	}
	if u.id == "" {
		return secretUse{}, errors.New("RUN --mount=type=secret: needs id= (or target=)")
	}
	if m.Target != "" {
		u.target = m.Target
		if !path.IsAbs(u.target) {
			u.target = path.Join(workdir, u.target)
		}
	}
	if m.Env == nil {
		if u.target == "" {
			name := path.Base(u.id)
			if name == "." || name == ".." || name == "/" {
				return secretUse{}, fmt.Errorf("RUN --mount=type=secret,id=%s: the id names no file under %s; give target=", u.id, secretDir)
			}
			u.target = path.Join(secretDir, name)
		}
		return u, nil
	}
	u.env = *m.Env
	if u.env == "" || strings.ContainsAny(u.env, "=\x00") {
		return secretUse{}, fmt.Errorf("RUN --mount=type=secret,id=%s,env=%q: want the name of an environment variable", u.id, u.env)
	}
	return u, nil
}

// secretValue reads secret id from its source. ok is false for a secret
// that was not given and is not required.
func (b *builder) secretValue(id string, required bool) (value []byte, ok bool, err error) {
	src, given := b.o.secrets[id]
	if !given {
		if required {
			return nil, false, fmt.Errorf("secret %q is required but was not given (--secret id=%s,src=FILE or env=VAR)", id, id)
		}
		return nil, false, nil
	}
	if src.Env != "" {
		v, set := os.LookupEnv(src.Env)
		if !set {
			return nil, false, fmt.Errorf("secret %q: environment variable %s is not set", id, src.Env)
		}
		return []byte(v), true, nil
	}
	data, err := os.ReadFile(src.File)
	if err != nil {
		return nil, false, fmt.Errorf("secret %q: %w", id, err)
	}
	return data, true, nil
}

// stepSecret gives the step one secret mount: the file to bind (nil for
// none) and the NAME=value to add to its environment ("" for none). temp is
// a private folder to remove after the step ("" for none). An optional
// secret that was not given is no file and, as in BuildKit, an empty
// variable.
func (b *builder) stepSecret(m *instructions.Mount, workdir string) (mount *run.Mount, env, temp string, err error) {
	u, err := parseSecretUse(m, workdir)
	if err != nil {
		return nil, "", "", err
	}
	value, ok, err := b.secretValue(u.id, m.Required)
	if err != nil {
		return nil, "", "", err
	}
	if u.env != "" {
		if strings.IndexByte(string(value), 0) >= 0 {
			return nil, "", "", fmt.Errorf("secret %q holds a NUL byte: it cannot be the value of %s (env=)", u.id, u.env)
		}
		env = u.env + "=" + string(value)
	}
	if !ok || u.target == "" {
		return nil, env, "", nil
	}
	file, err := b.secretFile(u.id, value, m)
	if err != nil {
		return nil, "", "", err
	}
	return &run.Mount{Source: file, Target: u.target, ReadOnly: true}, env, filepath.Dir(file), nil
}

// secretFile writes a secret into a private temporary file for the step,
// with the mount's mode, uid and gid (BuildKit's defaults: 0400, root).
func (b *builder) secretFile(id string, data []byte, m *instructions.Mount) (string, error) {
	dir, err := os.MkdirTemp(b.work, "secret-")
	if err != nil {
		return "", err
	}
	file := filepath.Join(dir, "secret")
	mode := os.FileMode(0o400)
	if m.Mode != nil {
		mode = os.FileMode(*m.Mode) & os.ModePerm
	}
	if err := os.WriteFile(file, data, mode); err != nil {
		_ = os.RemoveAll(dir)
		return "", fmt.Errorf("secret %q: %w", id, err)
	}
	uid, gid := 0, 0
	if m.UID != nil {
		uid = int(*m.UID)
	}
	if m.GID != nil {
		gid = int(*m.GID)
	}
	if uid != 0 || gid != 0 {
		if err := os.Lchown(file, uid, gid); err != nil {
			_ = os.RemoveAll(dir)
			return "", fmt.Errorf("secret %q: %w", id, err)
		}
	}
	return file, nil
}

// withEnv sets each NAME=value of add in env, replacing an earlier value of
// NAME: the step sees one value, the last.
func withEnv(env []string, add ...string) []string {
	for _, kv := range add {
		name, _, _ := strings.Cut(kv, "=")
		env = slices.DeleteFunc(env, func(e string) bool { return strings.HasPrefix(e, name+"=") })
		env = append(env, kv)
	}
	return env
}
