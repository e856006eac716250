package test

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestBuildBadInput: a Dockerfile, flag or context kiln cannot use is exit
// status 2 with a message that says what and where (the Dockerfile line),
// before any base image is fetched and without writing any output.
func TestBuildBadInput(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name       string
		dockerfile string   // "" leaves the context without a Dockerfile
		args       []string // after build --context CTX --output oci:OUT
		want       []string // substrings of stderr
	}{
		{name: "broken instruction", dockerfile: "FROM scratch\nCOPY a.txt /a\nCOPY\n", want: []string{"Dockerfile:3", "COPY requires at least two arguments"}},
		{name: "unknown instruction", dockerfile: "FROM scratch\n\nFROBNICATE x\n", want: []string{"Dockerfile:3", "unknown instruction: FROBNICATE"}},
		{name: "unterminated quote", dockerfile: "FROM scratch\nENV A=\"open\n", want: []string{"Dockerfile:2", "double-quote"}},
		{name: "instruction before FROM", dockerfile: "ENV A=1\nFROM scratch\n", want: []string{"Dockerfile:1", "FROM"}},
		{name: "empty Dockerfile", dockerfile: "# nothing\n", want: []string{"Dockerfile:1", "no instructions"}},
		{name: "unknown target", dockerfile: "FROM scratch AS build\nFROM scratch AS runtime\n", args: []string{"--target", "tests"},
			want: []string{`"tests"`, "build, runtime"}},
		{name: "missing COPY source", dockerfile: "FROM scratch\nCOPY nothere /x\n", want: []string{"Dockerfile:2", "nothere"}},
		{name: "missing Dockerfile", args: []string{"--dockerfile", "Nope.Dockerfile"}, want: []string{"Nope.Dockerfile"}},
		{name: "missing context", dockerfile: "FROM scratch\n", args: []string{"--context", "/nonexistent/kiln-context"}, want: []string{"/nonexistent/kiln-context"}},
		{name: "bad platform", dockerfile: "FROM scratch\n", args: []string{"--platform", "linux/"}, want: []string{"--platform", `"linux/"`}},
		{name: "platform with too many parts", dockerfile: "FROM scratch\n", args: []string{"--platform", "linux/arm/v7/x"}, want: []string{"--platform"}},
		{name: "bad output", dockerfile: "FROM scratch\n", args: []string{"--output", "docker:x"}, want: []string{"--output", "oci:DIR"}},
		{name: "bad build arg", dockerfile: "FROM scratch\n", args: []string{"--build-arg", "KILN_TEST_UNSET_ARG"}, want: []string{"--build-arg", "KEY=VALUE"}},
		{name: "bad label", dockerfile: "FROM scratch\n", args: []string{"--label", "=v"}, want: []string{"--label"}},
		{name: "bad destination", dockerfile: "FROM scratch\n", args: []string{"--destination", "UPPER/Case:tag"}, want: []string{"--destination"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			ctxDir := t.TempDir()
			files := map[string]string{"a.txt": "a\n"}
			if tc.dockerfile != "" {
				files["Dockerfile"] = tc.dockerfile
			}
			writeContext(t, ctxDir, files)
			out := filepath.Join(t.TempDir(), "oci")
			args := append([]string{"build", "--context", ctxDir, "--output", "oci:" + out}, tc.args...)
			r := runKiln(t, args...)
			mustExit(t, r, 2)
			for _, w := range tc.want {
				if !strings.Contains(r.stderr, w) {
					t.Errorf("stderr should say %q:\n%s", w, r)
				}
			}
			if strings.Count(r.stderr, "kiln: ") != 1 {
				t.Errorf("want one error line:\n%s", r)
			}
			if _, err := os.Stat(out); err == nil {
				t.Errorf("a failed build wrote its output %s", out)
			}
		})
	}
}

// TestBuildRunRefused: until kiln executes RUN, a stage that needs one is
// exit status 2 naming the line; once it does, a RUN that cannot execute
// (scratch has no /bin/sh) must still fail and name the line, never pass
// as an empty step. A RUN in a stage the target does not need is ignored.
func TestBuildRunRefused(t *testing.T) {
	t.Parallel()
	ctxDir := t.TempDir()
	writeContext(t, ctxDir, map[string]string{
		"Dockerfile": "FROM scratch AS unused\nRUN never\n\nFROM scratch\nCOPY a.txt /a\nRUN echo hi > /out\n",
		"a.txt":      "a\n",
	})
	r := runKiln(t, "build", "--context", ctxDir, "--output", "oci:"+filepath.Join(t.TempDir(), "oci"))
	switch {
	case strings.Contains(r.stderr, "RUN is not supported yet"):
		mustExit(t, r, 2)
		if !strings.Contains(r.stderr, "Dockerfile:6") {
			t.Errorf("the error should name Dockerfile:6:\n%s", r)
		}
	case r.code == 0:
		t.Errorf("RUN echo hi on scratch (no /bin/sh) succeeded:\n%s", r)
	case !strings.Contains(r.stderr, "Dockerfile:6"):
		t.Errorf("a failing RUN should name Dockerfile:6:\n%s", r)
	}

	writeContext(t, ctxDir, map[string]string{"Dockerfile": "FROM scratch AS unused\nRUN never\n\nFROM scratch\nCOPY a.txt /a\n"})
	mustExit(t, runKiln(t, "build", "--context", ctxDir, "--output", "oci:"+filepath.Join(t.TempDir(), "oci")), 0)
}

// TestBuildRuntimeFailure: what goes wrong while building (a base image the
// offline cache lacks, a registry nobody answers on) is exit status 1, not
// the 2 of a bad Dockerfile, though the message still names the FROM line;
// each part of the message is said once.
func TestBuildRuntimeFailure(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name string
		from string
		args []string
		want []string
	}{
		{name: "offline cache miss", from: "example.invalid/kiln/base:1", args: []string{"--offline"},
			want: []string{"Dockerfile:1", "FROM", "base image example.invalid/kiln/base:1", "offline"}},
		{name: "registry not answering", from: "127.0.0.1:1/kiln/base:1",
			want: []string{"Dockerfile:1", "FROM", "base image 127.0.0.1:1/kiln/base:1"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			ctxDir := t.TempDir()
			writeContext(t, ctxDir, map[string]string{"Dockerfile": "FROM " + tc.from + "\nCOPY a.txt /a\n", "a.txt": "a\n"})
			args := append([]string{"build", "--context", ctxDir, "--cache-dir", t.TempDir(), "--output", "oci:" + filepath.Join(t.TempDir(), "oci")}, tc.args...)
			r := runKiln(t, args...)
			mustExit(t, r, 1)
			for _, w := range tc.want {
				if !strings.Contains(r.stderr, w) {
					t.Errorf("stderr should say %q:\n%s", w, r)
				}
			}
			if n := strings.Count(r.stderr, "base image "); n != 1 {
				t.Errorf("\"base image\" said %d times:\n%s", n, r)
			}
		})
	}
}

// TestBuildFlagAfterName: flags after NAME are parsed as flags (those
// around it in TestBuildFromConfig are used); an unknown one is reported as
// such, exit 2, not taken for a second NAME.
func TestBuildFlagAfterName(t *testing.T) {
	t.Parallel()
	r := runKiln(t, "build", "--config", filepath.Join(t.TempDir(), "build.toml"), "api", "--no-such-flag", "linux/arm64")
	mustExit(t, r, 2)
	if !strings.Contains(r.stderr, "flag provided but not defined: -no-such-flag") || strings.Contains(r.stderr, "one image NAME at a time") {
		t.Errorf("stderr should name the unknown flag:\n%s", r)
	}
}
