package builder

import (
	"bytes"
	"context"
	"errors"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/moby/buildkit/frontend/dockerfile/instructions"
	"github.com/moby/buildkit/frontend/dockerfile/parser"

	"kiln/builder/dockerfile"
	"kiln/builder/run"
	"kiln/platform"
)

// secretMountOf parses the one mount of a RUN line as dispatch does:
// parsed, then expanded.
func secretMountOf(t *testing.T, line string) (*instructions.Mount, error) {
	t.Helper()
	res, err := parser.Parse(strings.NewReader(line + "\n"))
	if err != nil {
		t.Fatal(err)
	}
	inst, err := instructions.ParseInstruction(res.AST.Children[0])
	if err != nil {
		return nil, err
	}
	c := inst.(*instructions.RunCommand)
	if err := c.Expand(func(w string) (string, error) { return w, nil }); err != nil {
		return nil, err
	}
	mounts := instructions.GetMounts(c)
	if len(mounts) != 1 {
		t.Fatalf("%s: %d mounts, want 1", line, len(mounts))
	}
	return mounts[0], nil
}

func TestParseSecretUse(t *testing.T) {
	tests := []struct {
		name    string
		line    string
		want    secretUse
		wantErr string
	}{
		{name: "file at the default place", line: "RUN --mount=type=secret,id=tok true",
			want: secretUse{id: "tok", target: "/run/secrets/tok"}},
		{name: "file at a target", line: "RUN --mount=type=secret,id=tok,target=/etc/tok true",
			want: secretUse{id: "tok", target: "/etc/tok"}},
		{name: "relative target is under WORKDIR", line: "RUN --mount=type=secret,id=tok,dst=conf/tok true",
			want: secretUse{id: "tok", target: "/src/conf/tok"}},
		{name: "id from the target's name", line: "RUN --mount=type=secret,target=/run/secrets/npmrc true",
			want: secretUse{id: "npmrc", target: "/run/secrets/npmrc"}},
		{name: "id from source", line: "RUN --mount=type=secret,source=npmrc true",
			want: secretUse{id: "npmrc", target: "/run/secrets/npmrc"}},
		{name: "env only: no file", line: "RUN --mount=type=secret,id=tok,env=TOKEN true",
			want: secretUse{id: "tok", env: "TOKEN"}},
		{name: "env and a file", line: "RUN --mount=type=secret,id=tok,env=TOKEN,target=/tok true",
			want: secretUse{id: "tok", env: "TOKEN", target: "/tok"}},
		{name: "env key in capitals", line: "RUN --mount=type=secret,id=tok,ENV=TOKEN true",
			want: secretUse{id: "tok", env: "TOKEN"}},
		{name: "env and required", line: "RUN --mount=type=secret,id=tok,env=TOKEN,required=true true",
			want: secretUse{id: "tok", env: "TOKEN"}},
		{name: "empty env name", line: "RUN --mount=type=secret,id=tok,env= true", wantErr: "want the name of an environment variable"},
		{name: "env name with =", line: `RUN --mount=type=secret,id=tok,"env=A=B" true`, wantErr: "want the name of an environment variable"},
		{name: "unknown option", line: "RUN --mount=type=secret,id=tok,envv=TOKEN true", wantErr: "unexpected key 'envv'"},
		{name: "env without a value", line: "RUN --mount=type=secret,id=tok,env true", wantErr: "must be a key=value pair"},
		{name: "id that names no file", line: "RUN --mount=type=secret,id=.. true", wantErr: "names no file under /run/secrets"},
		{name: "id with a folder: its base name", line: "RUN --mount=type=secret,id=a/b/tok true",
			want: secretUse{id: "a/b/tok", target: "/run/secrets/tok"}},
		{name: "odd id with env= needs no file name", line: "RUN --mount=type=secret,id=..,env=T true",
			want: secretUse{id: "..", env: "T"}},
		{name: "no id, source or target", line: "RUN --mount=type=secret,env=TOKEN true", wantErr: "one of source, target required"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			m, err := secretMountOf(t, tt.line)
			var got secretUse
			if err == nil {
				got, err = parseSecretUse(m, "/src")
			}
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("err = %v, want one saying %q", err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if got != tt.want {
				t.Errorf("got %+v, want %+v", got, tt.want)
			}
		})
	}
}

func TestStepSecret(t *testing.T) {
	const value = "s3cret-value"
	file := filepath.Join(t.TempDir(), "tok")
	if err := os.WriteFile(file, []byte(value), 0o600); err != nil {
		t.Fatal(err)
	}
	nul := filepath.Join(t.TempDir(), "nul")
	if err := os.WriteFile(nul, []byte("a\x00b"), 0o600); err != nil {
		t.Fatal(err)
	}
	t.Setenv("KILN_TEST_SECRET", value)
	secrets := map[string]Secret{"tok": {File: file}, "fromenv": {Env: "KILN_TEST_SECRET"}, "nul": {File: nul}}
	tests := []struct {
		name       string
		line       string
		wantEnv    string
		wantTarget string // "" for no file
		wantErr    string
	}{
		{name: "env only", line: "RUN --mount=type=secret,id=tok,env=TOKEN true", wantEnv: "TOKEN=" + value},
		{name: "env from kiln's environment", line: "RUN --mount=type=secret,id=fromenv,env=TOKEN true", wantEnv: "TOKEN=" + value},
		{name: "env and file", line: "RUN --mount=type=secret,id=tok,env=TOKEN,target=/t true", wantEnv: "TOKEN=" + value, wantTarget: "/t"},
		{name: "file only", line: "RUN --mount=type=secret,id=tok true", wantTarget: "/run/secrets/tok"},
		{name: "optional and missing: empty variable, as BuildKit", line: "RUN --mount=type=secret,id=nope,env=TOKEN true", wantEnv: "TOKEN="},
		{name: "optional and missing: no file", line: "RUN --mount=type=secret,id=nope,env=TOKEN,target=/t true", wantEnv: "TOKEN="},
		{name: "required and missing", line: "RUN --mount=type=secret,id=nope,env=TOKEN,required=true true", wantErr: `secret "nope" is required but was not given`},
		{name: "required file and missing", line: "RUN --mount=type=secret,id=nope,required true", wantErr: `secret "nope" is required`},
		{name: "NUL in a variable", line: "RUN --mount=type=secret,id=nul,env=TOKEN true", wantErr: "holds a NUL byte"},
		{name: "NUL in a file is fine", line: "RUN --mount=type=secret,id=nul true", wantTarget: "/run/secrets/nul"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			b := &builder{o: &options{secrets: secrets}, work: t.TempDir()}
			m, err := secretMountOf(t, tt.line)
			if err != nil {
				t.Fatal(err)
			}
			mount, env, temp, err := b.stepSecret(m, "/")
			if temp != "" {
				defer os.RemoveAll(temp)
			}
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("err = %v, want one saying %q", err, tt.wantErr)
				}
				if strings.Contains(err.Error(), value) {
					t.Errorf("the error shows the secret: %v", err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if env != tt.wantEnv {
				t.Errorf("env = %q, want %q", env, tt.wantEnv)
			}
			if tt.wantTarget == "" {
				if mount != nil {
					t.Errorf("mount = %+v, want none", mount)
				}
				return
			}
			if mount == nil || mount.Target != tt.wantTarget || !mount.ReadOnly {
				t.Fatalf("mount = %+v, want a read-only file at %s", mount, tt.wantTarget)
			}
			fi, err := os.Stat(mount.Source)
			if err != nil {
				t.Fatal(err)
			}
			if fi.Mode().Perm() != 0o400 {
				t.Errorf("secret file mode %v, want 0400", fi.Mode().Perm())
			}
		})
	}
}

func TestWithEnv(t *testing.T) {
	got := withEnv([]string{"PATH=/bin", "TOKEN=from-env", "TOKENX=1"}, "TOKEN=secret", "NEW=1")
	want := []string{"PATH=/bin", "TOKENX=1", "TOKEN=secret", "NEW=1"}
	if !slices.Equal(got, want) {
		t.Errorf("withEnv = %q, want %q", got, want)
	}
}

// TestSecretEnvBuild runs RUN --mount=type=secret,env= with a static
// busybox: the variable holds the secret in the step, the step's ENV of
// the same name is shadowed only there, and the value is in no layer, the
// config or the history.
func TestSecretEnvBuild(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("chroot isolation needs root")
	}
	bb, err := os.ReadFile("/bin/busybox")
	if err != nil {
		t.Skip("busybox-static not installed")
	}
	const value = "s3cret-of-the-unit-test"
	secretFile := filepath.Join(t.TempDir(), "tok")
	if err := os.WriteFile(secretFile, []byte(value), 0o600); err != nil {
		t.Fatal(err)
	}
	dir := writeContext(t, map[string]string{"Dockerfile": `FROM scratch
COPY busybox /bin/busybox
ENV TOKEN=public
RUN --mount=type=secret,id=tok,env=TOKEN ["/bin/busybox", "sh", "-c", "test ${#TOKEN} = 23 && /bin/busybox printf %s \"$TOKEN\" | /bin/busybox wc -c > /len && test ! -e /run/secrets/tok"]
RUN ["/bin/busybox", "sh", "-c", "/bin/busybox printf %s \"$TOKEN\" > /after"]
`})
	if err := os.WriteFile(filepath.Join(dir, "busybox"), bb, 0o755); err != nil {
		t.Fatal(err)
	}
	var out bytes.Buffer
	res, err := Build(context.Background(), Request{Context: dir, Platform: platform.Host()},
		WithWorkDir(t.TempDir()), WithIsolation(run.Chroot), WithSecrets(map[string]Secret{"tok": {File: secretFile}}),
		WithRunOutput(&out))
	if err != nil {
		t.Fatalf("%v\n%s", err, out.String())
	}
	defer res.Close()
	files := map[string]string{}
	for _, f := range listFiles(t, res.Image) {
		files[f.Path] = f.SHA256
	}
	if _, ok := files["/len"]; !ok {
		t.Fatalf("the step with the secret did not write /len: %v", files)
	}
	rc := mutate.Extract(res.Image)
	all := new(bytes.Buffer)
	_, _ = all.ReadFrom(rc)
	rc.Close()
	if bytes.Contains(all.Bytes(), []byte(value)) {
		t.Error("the image's filesystem holds the secret")
	}
	if !bytes.Contains(all.Bytes(), []byte("public")) {
		t.Error("the next step should see the stage's ENV TOKEN=public again")
	}
	raw, err := res.Image.RawConfigFile()
	if err != nil {
		t.Fatal(err)
	}
	if bytes.Contains(raw, []byte(value)) {
		t.Errorf("the config holds the secret: %s", raw)
	}
}

// TestSecretErrorsNameTheLine: a required secret that was not given and a
// mount option kiln does not know are Dockerfile errors at the RUN's line.
func TestSecretErrorsNameTheLine(t *testing.T) {
	tests := []struct {
		name, dockerfile, want string
	}{
		{name: "required and missing", dockerfile: "FROM scratch\nENV A=1\nRUN --mount=type=secret,id=tok,env=TOKEN,required=true true\n",
			want: `secret "tok" is required`},
		{name: "unknown option", dockerfile: "FROM scratch\nENV A=1\nRUN --mount=type=secret,id=tok,envname=TOKEN true\n",
			want: "unexpected key 'envname'"},
		{name: "bad env name", dockerfile: "FROM scratch\nENV A=1\nRUN --mount=type=secret,id=tok,env= true\n",
			want: "want the name of an environment variable"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if os.Geteuid() != 0 {
				t.Skip("chroot isolation needs root")
			}
			dir := writeContext(t, map[string]string{"Dockerfile": tt.dockerfile})
			_, err := Build(context.Background(), Request{Context: dir, Platform: platform.Host()},
				WithWorkDir(t.TempDir()), WithIsolation(run.Chroot))
			var derr *dockerfile.Error
			if !errors.As(err, &derr) || derr.Line != 3 || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("err = %v, want a *dockerfile.Error at line 3 saying %q", err, tt.want)
			}
		})
	}
}
