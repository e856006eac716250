package test

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"syscall"
	"testing"
	"time"
)

// TestConfigHostile: a build.toml from a repository nobody has read cannot
// make kiln read or write outside the file's folder, nor spend minutes and
// gigabytes parsing it: build-all (--plan too) and build refuse it with exit
// 2 and the file, line and column, before any work.
func TestConfigHostile(t *testing.T) {
	t.Parallel()
	top := t.TempDir()
	proj := filepath.Join(top, "a", "b", "c", "proj")
	writeFiles(t, proj, map[string]string{"ctx/Dockerfile": "FROM scratch\nCOPY . /\n", "ctx/f": "x\n"})
	image := func(context, output string) string {
		return "[images.x]\ncontext = '" + context + "'\nplatforms = ['linux/amd64']\noutput = '" + output + "'\n"
	}
	tests := []struct {
		name string
		toml string
		args []string
		want []string // in the output, each a regexp
	}{
		{name: "output climbing out", toml: image("ctx", "oci:../../../../escaped"), args: []string{"build-all", "--plan"},
			want: []string{`build\.toml:4:10: images\.x\.output: "oci:\.\./\.\./\.\./\.\./escaped" leads to ` + regexp.QuoteMeta(filepath.Join(top, "escaped")) + ", outside", "--allow fs="}},
		{name: "output climbing out, building", toml: image("ctx", "oci:../../../../escaped"), args: []string{"build-all"},
			want: []string{`build\.toml:4:10: images\.x\.output: `}},
		{name: "context climbing out", toml: image("../..", "oci:out"), args: []string{"build", "--config", "build.toml", "x"},
			want: []string{`build\.toml:2:11: images\.x\.context: "\.\./\.\." leads to ` + regexp.QuoteMeta(filepath.Join(top, "a", "b")) + ", outside"}},
		{name: "absolute context", toml: image("/etc", "oci:out"), args: []string{"build-all", "--plan"},
			want: []string{`build\.toml:2:11: images\.x\.context: "/etc" leads to /etc, outside`}},
		{name: "dockerfile climbing out", toml: image("ctx", "oci:out") + "dockerfile = '../../Dockerfile'\n", args: []string{"build", "--config", "build.toml", "x"},
			want: []string{`build\.toml:5:14: images\.x\.dockerfile: "\.\./\.\./Dockerfile" must be a relative path inside the context`}},
		{name: "nested 400 kB", toml: image("ctx", "oci:out") + "args = " + strings.Repeat("{a=", 100_000) + "1" + strings.Repeat("}", 100_000) + "\n",
			args: []string{"build-all", "--plan"}, want: []string{`build\.toml:5:96: images\.x\.args: nested more than 32 levels deep`}},
		{name: "2 MiB", toml: image("ctx", "oci:out") + "#" + strings.Repeat("x", 2<<20) + "\n", args: []string{"build-all", "--plan"},
			want: []string{`build\.toml: larger than 1048576 bytes \(1 MiB\)`}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			writeFiles(t, proj, map[string]string{"build.toml": tc.toml})
			start := time.Now()
			r := runKilnOpts(t, runOpts{dir: proj, timeout: time.Minute}, tc.args...)
			mustExit(t, r, 2)
			if d := time.Since(start); d > 10*time.Second {
				t.Errorf("refused after %s", d)
			}
			for _, w := range tc.want {
				if !regexp.MustCompile(w).MatchString(r.stderr) {
					t.Errorf("stderr does not match %s:\n%s", w, r)
				}
			}
			if _, err := os.Stat(filepath.Join(top, "escaped")); err == nil {
				t.Errorf("kiln wrote %s", filepath.Join(top, "escaped"))
			}
		})
	}
	// Subtests rewrite build.toml one after another: not in parallel.
}

// TestVersionFlag: kiln --version (and -v) print the version and exit 0;
// an unknown global flag points to "kiln --help".
func TestVersionFlag(t *testing.T) {
	t.Parallel()
	for _, flag := range []string{"--version", "-v"} {
		r := runKiln(t, flag)
		mustExit(t, r, 0)
		if !regexp.MustCompile(`^kiln version \S+\n$`).MatchString(r.stdout) {
			t.Errorf("kiln %s printed %q, want kiln version VERSION", flag, r.stdout)
		}
	}
	r := runKiln(t, "--no-such-flag")
	mustExit(t, r, 2)
	if !strings.Contains(r.stderr, "(see kiln --help)") {
		t.Errorf("want a pointer to kiln --help:\n%s", r)
	}
}

// TestConfigParseSIGTERM: SIGTERM while kiln reads a large build.toml (one
// at the limits, or a hostile one) ends it within a second. The signals are
// spread over the time a whole run takes, so that some land while the file
// is parsed.
func TestConfigParseSIGTERM(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	writeFiles(t, dir, map[string]string{"ctx/Dockerfile": "FROM scratch\n"})
	var large strings.Builder
	for i := range 1100 { // about 10,000 values, the most a build file may hold
		fmt.Fprintf(&large, "[images.a%d]\ncontext = 'ctx'\nplatforms = ['linux/amd64']\ntags = ['127.0.0.1:9/a%d:1']\nargs = { A = '1' }\nlabels.\"org.example.x\" = 'y'\n", i, i)
	}
	writeFiles(t, dir, map[string]string{
		"large.toml":   large.String(),
		"hostile.toml": "[images.x]\nargs = " + strings.Repeat("{a=", 250_000) + strings.Repeat("}", 250_000) + "\n",
	})
	for _, name := range []string{"large.toml", "hostile.toml"} {
		start := time.Now()
		r := runKilnOpts(t, runOpts{dir: dir, timeout: time.Minute}, "build-all", "--plan", "--config", name)
		whole := time.Since(start)
		if name == "large.toml" {
			mustExit(t, r, 0)
		}
		for _, part := range []float64{0.3, 0.5, 0.7, 0.9} {
			sigtermWithin(t, dir, time.Duration(part*float64(whole)), time.Second, "build-all", "--plan", "--config", name)
		}
	}
}

// sigtermWithin starts kiln, sends it SIGTERM after delay and fails the
// test unless it has ended within limit of the signal.
func sigtermWithin(t *testing.T, dir string, delay, limit time.Duration, args ...string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), time.Minute)
	defer cancel()
	cmd, stdout, stderr := kilnCmd(t, ctx, runOpts{dir: dir}, args...)
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	time.Sleep(delay)
	sent := time.Now()
	_ = cmd.Process.Signal(syscall.SIGTERM) // fails only if kiln has ended
	select {
	case err := <-done:
		t.Logf("kiln %s, SIGTERM after %s: exit %d (-1: by the signal) %s after it", strings.Join(args, " "),
			delay.Round(time.Millisecond), exitCode(err), time.Since(sent).Round(time.Millisecond))
	case <-time.After(limit):
		cancel()
		<-done
		t.Errorf("kiln %s, SIGTERM after %s: still running %s later\n--- stdout\n%.2000s--- stderr\n%.2000s",
			strings.Join(args, " "), delay, limit, stdout, stderr)
	}
}
