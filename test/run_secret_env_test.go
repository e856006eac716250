package test

import (
	"bytes"
	"compress/gzip"
	"crypto/sha256"
	"encoding/hex"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// runSecretEnvDockerfile checks the secret in its steps by its digest: the
// Dockerfile's text is the image's history, so the value itself may not be
// written in it.
func runSecretEnvDockerfile(secret string) string {
	sum := sha256.Sum256([]byte(secret))
	return `FROM scratch
COPY busybox /bin/busybox
RUN ["/bin/busybox", "--install", "-s", "/bin"]
RUN --mount=type=secret,id=tok,env=TOKEN sh -c 'test "$(printf %s "$TOKEN" | sha256sum)" = "` + hex.EncodeToString(sum[:]) + `  -" && echo ok > /ok'
RUN --mount=type=secret,id=tok,env=TOKEN,target=/run/tok sh -c 'test "$(cat /run/tok)" = "$TOKEN" && test ! -e /run/secrets/tok && echo both > /both'
RUN test -z "$TOKEN" && echo gone > /after
`
}

// TestRunSecretEnv: RUN --mount=type=secret,id=tok,env=TOKEN puts the
// secret in the step's variable TOKEN (and, with target=, in a file too),
// from a file or from kiln's environment; the value is in no blob of the
// OCI layout (layers decompressed, config, history), in nothing kiln
// prints and in nothing it leaves in its work folder.
func TestRunSecretEnv(t *testing.T) {
	t.Parallel()
	needBusybox(t)
	const secret = "s3cret-of-TestRunSecretEnv"
	for _, source := range []string{"src", "env"} {
		t.Run(source, func(t *testing.T) {
			t.Parallel()
			ctxDir, work, tmp := t.TempDir(), t.TempDir(), t.TempDir()
			busyboxContext(t, ctxDir, runSecretEnvDockerfile(secret))
			out := filepath.Join(tmp, "oci")
			var opts runOpts
			flag := "id=tok,env=KILN_TEST_TOK"
			if source == "src" {
				file := filepath.Join(tmp, "tok")
				if err := os.WriteFile(file, []byte(secret), 0o600); err != nil {
					t.Fatal(err)
				}
				flag = "id=tok,src=" + file
			} else {
				opts.env = []string{"KILN_TEST_TOK=" + secret}
			}
			r := runKilnOpts(t, opts, "build", "--progress", "plain", "--context", ctxDir, "--work-dir", work,
				"--secret", flag, "--output", "oci:"+out)
			mustExit(t, r, 0)
			tree, _ := flatten(t, layoutImage(t, out, "image"))
			files := byPath(tree)
			for _, p := range []string{"/ok", "/both", "/after"} {
				if _, ok := files[p]; !ok {
					t.Errorf("%s is not in the image: its step did not see the secret as asked", p)
				}
			}
			if _, ok := files["/run"]; ok {
				t.Errorf("/run is in the image: the secret's mount point should leave no trace")
			}
			if strings.Contains(r.output(), secret) {
				t.Errorf("kiln's output shows the secret:\n%s", r)
			}
			for _, p := range filesHolding(t, out, secret) {
				t.Errorf("the OCI layout holds the secret in %s", p)
			}
			for _, p := range filesHolding(t, work, secret) {
				t.Errorf("kiln's work folder still holds the secret in %s", p)
			}
		})
	}
}

// TestRunSecretEnvRequired: a required secret that was not given stops the
// build at its RUN, exit 2, naming the line; unknown mount options too.
func TestRunSecretEnvRequired(t *testing.T) {
	t.Parallel()
	needBusybox(t)
	tests := []struct {
		name, step, want string
	}{
		{name: "required secret missing", step: "RUN --mount=type=secret,id=tok,env=TOKEN,required=true true",
			want: `secret "tok" is required`},
		{name: "unknown mount option", step: "RUN --mount=type=secret,id=tok,envname=TOKEN true",
			want: "unexpected key 'envname'"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			ctxDir := t.TempDir()
			busyboxContext(t, ctxDir, "FROM scratch\nCOPY busybox /bin/busybox\n"+tt.step+"\n")
			out := filepath.Join(t.TempDir(), "oci")
			r := runKiln(t, "build", "--progress", "plain", "--context", ctxDir, "--work-dir", t.TempDir(), "--output", "oci:"+out)
			mustExit(t, r, 2)
			if !strings.Contains(r.stderr, "Dockerfile:3") || !strings.Contains(r.stderr, tt.want) {
				t.Errorf("want an error at Dockerfile:3 saying %q:\n%s", tt.want, r)
			}
			if _, err := os.Stat(out); err == nil {
				t.Errorf("a failed build wrote %s", out)
			}
		})
	}
}

// filesHolding lists the files under dir whose bytes, gunzipped when they
// are gzip, contain s.
func filesHolding(t *testing.T, dir, s string) []string {
	t.Helper()
	var found []string
	err := filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil || !d.Type().IsRegular() {
			return err
		}
		b, err := os.ReadFile(p)
		if err != nil {
			return err
		}
		if zr, zerr := gzip.NewReader(bytes.NewReader(b)); zerr == nil {
			if plain, zerr := io.ReadAll(zr); zerr == nil {
				b = append(b, plain...) // both: a file that only looks like gzip is read as it is
			}
		}
		if bytes.Contains(b, []byte(s)) {
			found = append(found, p)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return found
}
