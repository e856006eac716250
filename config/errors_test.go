package config

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"kiln/platform"
)

func TestParseErrors(t *testing.T) {
	tests := []struct {
		name    string
		src     string
		wantErr string // a substring of the error: "file:line:col: key: message" where known
	}{
		// Syntax and shape.
		{"invalid TOML", "[cache]\njobs = = 8\n", "build.toml:2:"},
		{"unterminated string", "[images.api]\ncontext = \"./api\n", "build.toml:2:"},
		{"duplicate key", "[cache]\njobs = 1\njobs = 2\n", "build.toml:3:"},
		{"unknown top-level key", "version = 1\n" + okImage, "build.toml:1:11: version: unknown key"},
		{"unknown table", "[builder]\nx = 1\n" + okImage, "build.toml:1:1: builder: unknown key"},
		{"unknown nested key", "[images.api]\ncontxt = \"./api\"\nplatforms = [\"amd64\"]\ntags = [\"api\"]\n", "build.toml:2:10: images.api.contxt: unknown key"},
		{"unknown cache key", "[cache]\ndirectory = '/x'\n" + okImage, "build.toml:2:13: cache.directory: unknown key"},
		{"unknown registry key", "[registries.'docker.io']\nmirror = ['m.io']\n" + okImage, `build.toml:2:10: registries."docker.io".mirror: unknown key`},
		{"key in the wrong case", "[Cache]\njobs = 2\n" + okImage, "Cache: unknown key"},
		{"table given a value", "cache = 5\n" + okImage, "build.toml:1:9: cache: want a table, got integer"},
		{"image given a value", "images.api = 'x'\n", "build.toml:1:14: images.api: want a table, got string"},
		{"array of tables", "[[images]]\ncontext = '.'\n", "build.toml:1:1: images: want a table, got array of tables"},
		{"args given a value", okImage + "args = ['A=1']\n", "build.toml:6:8: images.ok.args: want a table, got array"},

		// [runner.kubernetes].
		{"kube unknown key", "[runner.kubernetes]\nnamespce = 'ci'\n" + okImage, "build.toml:2:12: runner.kubernetes.namespce: unknown key"},
		{"kube image required", "[runner]\nkind = 'kubernetes'\n" + okImage, `runner.kubernetes.image: required with runner.kind = "kubernetes"`},
		{"kube bad image", "[runner.kubernetes]\nimage = 'Not An Image'\n" + okImage, "build.toml:2:9: runner.kubernetes.image: invalid image reference"},
		{"kube bad namespace", "[runner.kubernetes]\nnamespace = 'CI_ns'\n" + okImage, "build.toml:2:13: runner.kubernetes.namespace: invalid name \"CI_ns\""},
		{"kube arch in node selector", "[runner.kubernetes]\nnode_selector = { 'kubernetes.io/arch' = 'arm64' }\n" + okImage,
			"runner.kubernetes.node_selector.\"kubernetes.io/arch\": kubernetes.io/arch is set by kiln for each platform and cannot be overridden"},
		{"kube unknown resource", "[runner.kubernetes]\nrequests = { gpu = '1' }\n" + okImage, `runner.kubernetes.requests.gpu: unknown resource "gpu"`},
		{"kube bad quantity", "[runner.kubernetes]\nlimits = { memory = '4 GB' }\n" + okImage, `runner.kubernetes.limits.memory: invalid quantity "4 GB"`},
		{"kube bad duration", "[runner.kubernetes]\npending_timeout = '5 minutes'\n" + okImage, `build.toml:2:19: runner.kubernetes.pending_timeout: invalid duration "5 minutes"`},
		{"kube toleration typo", "[runner.kubernetes]\ntolerations = [{ key = 'a', efect = 'NoSchedule' }]\n" + okImage,
			`runner.kubernetes.tolerations[0]: unknown key "efect"`},
		{"kube toleration effect", "[runner.kubernetes]\ntolerations = [{ key = 'a', effect = 'NoRun' }]\n" + okImage,
			`runner.kubernetes.tolerations[0]: effect "NoRun"`},
		{"kube tolerations not tables", "[runner.kubernetes]\ntolerations = ['a']\n" + okImage,
			"runner.kubernetes.tolerations: want an array of tables"},
		{"kube pull policy", "[runner.kubernetes]\nimage_pull_policy = 'always'\n" + okImage, `runner.kubernetes.image_pull_policy: "always": want`},
		{"kube keep_failed type", "[runner.kubernetes]\nkeep_failed = 'yes'\n" + okImage, "runner.kubernetes.keep_failed: want a boolean, got string"},
		{"kube bad label value", "[runner.kubernetes]\nlabels = { team = 'a b' }\n" + okImage, `runner.kubernetes.labels.team: invalid label value "a b"`},
		{"kube schedule", "[runner.kubernetes]\nwarm_schedule = 'nightly'\n" + okImage, `runner.kubernetes.warm_schedule: "nightly": want a cron schedule`},

		// Types.
		{"jobs as string", "[cache]\njobs = \"8\"\n" + okImage, "build.toml:2:8: cache.jobs: want an integer, got string"},
		{"platforms as string", "[warm]\nplatforms = \"linux/amd64\"\n" + okImage, "build.toml:2:13: warm.platforms: want an array of strings, got string"},
		{"platform as number", "[warm]\nplatforms = [\"amd64\", 64]\n" + okImage, "build.toml:2:23: warm.platforms[1]: want a string, got integer"},
		{"insecure as string", "[registries.'127.0.0.1:5000']\ninsecure = 'yes'\n" + okImage, `build.toml:2:12: registries."127.0.0.1:5000".insecure: want a boolean, got string`},
		{"max_age as integer", "[cache]\nmax_age = 3600\n" + okImage, "build.toml:2:11: cache.max_age: want a string, got integer"},
		{"runner kind as table", "[runner.kind]\nname = 'local'\n" + okImage, "runner.kind: want a string, got table"},
		{"label value as number", okImage + "labels = { a = 1 }\n", "build.toml:6:12: images.ok.labels.a: want a string, got integer"},

		// [cache]
		{"bad duration", "[cache]\nmax_age = \"1 day\"\n" + okImage, `build.toml:2:11: cache.max_age: invalid duration "1 day"`},
		{"zero duration", "[cache]\nmax_age = \"0s\"\n" + okImage, `build.toml:2:11: cache.max_age: duration "0s" must be positive`},
		{"negative duration", "[cache]\nmax_age = \"-1h\"\n" + okImage, `build.toml:2:11: cache.max_age: duration "-1h" must be positive`},
		{"jobs zero", "[cache]\njobs = 0\n" + okImage, "build.toml:2:8: cache.jobs: 0 is out of range 1..256"},
		{"jobs too many", "[cache]\njobs = 1000\n" + okImage, "build.toml:2:8: cache.jobs: 1000 is out of range 1..256"},
		{"empty cache dir", "[cache]\ndir = ''\n" + okImage, "build.toml:2:7: cache.dir: must not be empty"},

		// [registries]
		{"registry key with scheme", "[registries.'https://r.io']\ninsecure = true\n" + okImage, `registries."https://r.io": invalid registry`},
		{"registry key with path", "[registries.'r.io/acme']\ninsecure = true\n" + okImage, `build.toml:1:1: registries."r.io/acme": invalid registry`},
		{"registry key bad port", "[registries.'r.io:port']\ninsecure = true\n" + okImage, `registries."r.io:port": invalid registry`},
		{"mirror with scheme", "[registries.'docker.io']\nmirrors = ['https://mirror.gcr.io']\n" + okImage, `build.toml:2:12: registries."docker.io".mirrors[0]: invalid mirror "https://mirror.gcr.io"`},
		{"mirror with empty path", "[registries.'docker.io']\nmirrors = ['m.io', 'm2.io/']\n" + okImage, `build.toml:2:20: registries."docker.io".mirrors[1]: invalid mirror "m2.io/"`},
		{"mirror upper-case path", "[registries.'docker.io']\nmirrors = ['m.io/Proxy']\n" + okImage, `registries."docker.io".mirrors[0]: invalid mirror "m.io/Proxy"`},
		{"skip_tls_verify as string", "[registries.'r.io']\nskip_tls_verify = 'yes'\n" + okImage, `build.toml:2:19: registries."r.io".skip_tls_verify: want a boolean, got string`},
		{"empty ca", "[registries.'r.io']\nca = ''\n" + okImage, `build.toml:2:6: registries."r.io".ca: must not be empty`},
		{"ca as array", "[registries.'r.io']\nca = ['a.pem']\n" + okImage, `build.toml:2:6: registries."r.io".ca: want a string, got array`},
		{"client_cert without key", "[registries.'r.io']\nclient_cert = 'c.pem'\n" + okImage, `build.toml:2:15: registries."r.io".client_cert: client_cert without client_key`},
		{"client_key without cert", "[registries.'r.io']\nclient_key = 'k.pem'\n" + okImage, `build.toml:2:14: registries."r.io".client_key: client_key without client_cert`},
		{"unknown TLS key", "[registries.'r.io']\ncacert = 'a.pem'\n" + okImage, `build.toml:2:10: registries."r.io".cacert: unknown key`},
		{"duplicate mirror", "[registries.'docker.io']\nmirrors = ['m.io', 'm.io']\n" + okImage, `build.toml:2:20: registries."docker.io".mirrors[1]: duplicate mirror "m.io"`},

		// [warm]
		{"bad warm platform", "[warm]\nplatforms = [\"linux/amd64\", \"linux/amd46\"]\n" + okImage, `build.toml:2:29: warm.platforms[1]: invalid platform "linux/amd46": unknown architecture "amd46"`},
		{"empty warm platforms", "[warm]\nplatforms = []\n" + okImage, "build.toml:2:13: warm.platforms: must not be empty"},
		{"bad extra reference", "[warm]\nextra = ['busybox:1.36', 'Busy Box']\n" + okImage, `build.toml:2:26: warm.extra[1]: invalid image reference "Busy Box"`},
		{"extra with a scheme", "[warm]\nextra = ['https://r.io/x']\n" + okImage, `warm.extra[0]: invalid image reference "https://r.io/x"`},
		{"duplicate extra", "[warm]\nextra = ['busybox', 'docker.io/library/busybox:latest']\n" + okImage, `warm.extra[1]: "docker.io/library/busybox:latest" is the same image as warm.extra[0]`},

		// [images.NAME]
		{"bad image name", "[images.Api]\ncontext = '.'\nplatforms = ['amd64']\ntags = ['api']\n", `build.toml:1:1: images.Api: invalid image name "Api"`},
		{"image name with slash", "[images.'acme/api']\ncontext = '.'\nplatforms = ['amd64']\ntags = ['api']\n", `images."acme/api": invalid image name`},
		{"missing context", "[images.api]\nplatforms = ['amd64']\ntags = ['api']\n", "build.toml:1:1: images.api.context: required"},
		{"empty context", "[images.api]\ncontext = ''\nplatforms = ['amd64']\ntags = ['api']\n", "build.toml:2:11: images.api.context: must not be empty"},
		{"http context not git", "[images.api]\ncontext = 'https://example.com/ctx.tar.gz'\nplatforms = ['amd64']\ntags = ['api']\n", "build.toml:2:11: images.api.context: unsupported context URL"},
		{"git URL without path", "[images.api]\ncontext = 'git@github.com'\nplatforms = ['amd64']\ntags = ['api']\n", `images.api.context: invalid git URL "git@github.com"`},
		{"dockerfile escaping context", "[images.api]\ncontext = '.'\ndockerfile = '../Dockerfile'\nplatforms = ['amd64']\ntags = ['api']\n", `build.toml:3:14: images.api.dockerfile: "../Dockerfile" must be a relative path inside the context`},
		{"dockerfile escaping by steps", "[images.api]\ncontext = '.'\ndockerfile = 'a/../../Dockerfile'\nplatforms = ['amd64']\ntags = ['api']\n", `images.api.dockerfile: "a/../../Dockerfile" must be a relative path`},
		{"absolute dockerfile", "[images.api]\ncontext = '.'\ndockerfile = '/etc/Dockerfile'\nplatforms = ['amd64']\ntags = ['api']\n", `build.toml:3:14: images.api.dockerfile: "/etc/Dockerfile" must be`},
		{"bad target", okImage + "target = '1st'\n", `build.toml:6:10: images.ok.target: invalid stage name "1st"`},
		{"missing platforms", "[images.api]\ncontext = '.'\ntags = ['api']\n", "images.api.platforms: required"},
		{"empty platforms", "[images.api]\ncontext = '.'\nplatforms = []\ntags = ['api']\n", "build.toml:3:13: images.api.platforms: must not be empty"},
		{"bad image platform", "[images.api]\ncontext = '.'\nplatforms = [\n  'linux/amd64',\n  'windows/arm/v9',\n]\ntags = ['api']\n", `build.toml:5:3: images.api.platforms[1]: invalid platform "windows/arm/v9"`},
		{"duplicate platform spellings", "[images.api]\ncontext = '.'\nplatforms = ['arm64', 'linux/arm64/v8']\ntags = ['api']\n", `build.toml:3:23: images.api.platforms[1]: duplicate platform: "arm64" (images.api.platforms[0]) and "linux/arm64/v8" are both linux/arm64`},
		{"duplicate optional platform", "[images.api]\ncontext = '.'\nplatforms = ['amd64']\noptional_platforms = ['arm', 'linux/arm/v7']\ntags = ['api']\n", `images.api.optional_platforms[1]: duplicate platform: "arm"`},
		{"platform in both lists", "[images.api]\ncontext = '.'\nplatforms = ['amd64', 'arm64']\noptional_platforms = ['s390x', 'aarch64']\ntags = ['api']\n", "build.toml:4:32: images.api.optional_platforms[1]: linux/arm64 is also in images.api.platforms[1]"},
		{"bad tag", "[images.api]\ncontext = '.'\nplatforms = ['amd64']\ntags = ['r.io/Acme/api:1']\n", `build.toml:4:9: images.api.tags[0]: invalid tag "r.io/Acme/api:1"`},
		{"bad tag characters", "[images.api]\ncontext = '.'\nplatforms = ['amd64']\ntags = ['r.io/api:v1', 'r.io/api:has space']\n", `build.toml:4:24: images.api.tags[1]: invalid tag "r.io/api:has space"`},
		{"digest as tag", "[images.api]\ncontext = '.'\nplatforms = ['amd64']\ntags = ['r.io/api@sha256:" + strings.Repeat("a", 64) + "']\n", `build.toml:4:9: images.api.tags[0]: "r.io/api@sha256:` + strings.Repeat("a", 64) + `" names a digest`},
		{"duplicate tag", "[images.api]\ncontext = '.'\nplatforms = ['amd64']\ntags = ['busybox', 'index.docker.io/library/busybox:latest']\n", `build.toml:4:20: images.api.tags[1]: duplicate tag: "busybox" (images.api.tags[0]) and "index.docker.io/library/busybox:latest" are both index.docker.io/library/busybox:latest`},
		{"no tags and no output", "[images.api]\ncontext = '.'\nplatforms = ['amd64']\n", "build.toml:1:1: images.api: needs tags or output"},
		{"empty tags and no output", "[images.api]\ncontext = '.'\nplatforms = ['amd64']\ntags = []\n", "images.api: needs tags or output"},
		{"bad output scheme", "[images.api]\ncontext = '.'\nplatforms = ['amd64']\noutput = 'docker:api'\n", `build.toml:4:10: images.api.output: invalid output "docker:api"`},
		{"output without path", "[images.api]\ncontext = '.'\nplatforms = ['amd64']\noutput = 'oci:'\n", `images.api.output: invalid output "oci:": no path`},
		{"bad arg name", okImage + "args = { VERSION = '1', 'BAD-NAME' = 'x' }\n", `build.toml:6:25: images.ok.args.BAD-NAME: invalid build argument name "BAD-NAME"`},
		{"arg name starting with digit", okImage + "[images.ok.args]\n1X = 'x'\n", `build.toml:7:6: images.ok.args.1X: invalid build argument name`},
		{"empty label name", okImage + "labels = { '' = 'x' }\n", `images.ok.labels."": empty label name`},

		{"platform after a tricky comment", "[images.api]\ncontext = '.'\nplatforms = [ # \"amd64\", 'x,y' [\n  '''arm64''', \"amd64\", \"amd46\" ]\ntags = ['api']\n", `build.toml:4:25: images.api.platforms[2]: invalid platform "amd46"`},
		{"empty registry name", "[registries.'']\ninsecure = true\n" + okImage, `registries."": invalid registry "": empty host`},
		{"mirror with bad host", "[registries.'docker.io']\nmirrors = ['-bad-.io']\n" + okImage, `registries."docker.io".mirrors[0]: invalid mirror "-bad-.io": invalid host name`},

		// [runner]
		{"bad runner kind", "[runner]\nkind = \"docker\"\n" + okImage, `build.toml:2:8: runner.kind: unknown runner "docker"`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := Parse([]byte(tt.src), "build.toml")
			if err == nil {
				t.Fatalf("Parse succeeded, want error containing %q", tt.wantErr)
			}
			if !strings.Contains(err.Error(), tt.wantErr) {
				t.Errorf("Parse error:\n  %v\nwant it to contain\n  %s", err, tt.wantErr)
			}
			if !errors.Is(err, ErrInvalid) {
				t.Errorf("errors.Is(%v, ErrInvalid) = false", err)
			}
			var e *Error
			if !errors.As(err, &e) || e.File != "build.toml" {
				t.Errorf("errors.As(*Error) gave %#v", e)
			}
		})
	}
}

func TestLoadMissingFile(t *testing.T) {
	missing := filepath.Join(t.TempDir(), "nope", "build.toml")
	_, err := Load(missing)
	if err == nil {
		t.Fatal("Load of a missing file succeeded")
	}
	if !strings.Contains(err.Error(), missing) {
		t.Errorf("error %q does not name %s", err, missing)
	}
	if !errors.Is(err, fs.ErrNotExist) || errors.Is(err, ErrInvalid) {
		t.Errorf("error %v: want fs.ErrNotExist and not ErrInvalid", err)
	}
}

func TestLoadErrorNamesPath(t *testing.T) {
	_, err := Load("testdata/bad.toml")
	want := "testdata/bad.toml:4:29: images.api.platforms[1]: invalid platform \"linux/amd46\": unknown architecture \"amd46\""
	if err == nil || !strings.Contains(err.Error(), want) {
		t.Errorf("Load(bad.toml) error = %v, want it to contain %s", err, want)
	}
	if !errors.Is(err, platform.ErrInvalid) {
		t.Errorf("errors.Is(err, platform.ErrInvalid) = false for %v", err)
	}
}

// Every problem in a file is reported, in file order, each with its place.
func TestAllErrorsReported(t *testing.T) {
	src := `[cache]
jobs = 0
colour = "blue"

[images.api]
contxt = "./api"
platforms = ["linux/amd64", "amd64"]
`
	_, err := Parse([]byte(src), "build.toml")
	if err == nil {
		t.Fatal("Parse succeeded")
	}
	want := []string{
		"build.toml:2:8: cache.jobs: 0 is out of range 1..256",
		"build.toml:3:10: cache.colour: unknown key",
		"build.toml:5:1: images.api: needs tags or output",
		"build.toml:5:1: images.api.context: required",
		"build.toml:6:10: images.api.contxt: unknown key",
		`build.toml:7:29: images.api.platforms[1]: duplicate platform: "linux/amd64" (images.api.platforms[0]) and "amd64" are both linux/amd64`,
	}
	got := strings.Split(err.Error(), "\n")
	if len(got) != len(want) {
		t.Fatalf("got %d errors, want %d:\n%s", len(got), len(want), err)
	}
	for i := range want {
		if !strings.HasPrefix(got[i], want[i]) {
			t.Errorf("error %d = %q, want it to start with %q", i, got[i], want[i])
		}
	}
}

func TestErrorString(t *testing.T) {
	tests := []struct {
		name string
		err  Error
		want string
	}{
		{"full", Error{File: "build.toml", Line: 12, Col: 5, Key: "images.api.platforms[1]", Msg: "bad"}, "build.toml:12:5: images.api.platforms[1]: bad"},
		{"no column", Error{File: "build.toml", Line: 12, Key: "k", Msg: "bad"}, "build.toml:12: k: bad"},
		{"no place", Error{File: "build.toml", Key: "images.api.context", Msg: "required"}, "build.toml: images.api.context: required"},
		{"no file", Error{Line: 3, Col: 1, Key: "k", Msg: "bad"}, "3:1: k: bad"},
		{"no key", Error{File: "f", Line: 1, Col: 2, Msg: "bad"}, "f:1:2: bad"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := tt.err.Error(); got != tt.want {
				t.Errorf("Error() = %q, want %q", got, tt.want)
			}
		})
	}
}

// FuzzParse checks that no input panics and that every complaint about the
// contents is an ErrInvalid.
func FuzzParse(f *testing.F) {
	full, err := os.ReadFile("testdata/full.toml")
	if err != nil {
		f.Fatal(err)
	}
	f.Add(string(full))
	f.Add(okImage + "args = { A = '1' }\nlabels = { 'a.b' = \"\"\"x\"\"\" }\n")
	f.Add("[warm]\nplatforms = [ # ']\n 'arm64', [1, \"2\"], { a = 1 } ]\n")
	f.Fuzz(func(t *testing.T, src string) {
		_, err := Parse([]byte(src), "build.toml")
		if err != nil && !errors.Is(err, ErrInvalid) {
			t.Errorf("error without ErrInvalid: %v", err)
		}
	})
}

// A file with thousands of mistakes reports the first few, quickly: placing
// an error costs a pass over the file.
func TestTooManyErrors(t *testing.T) {
	var b strings.Builder
	b.WriteString(okImage)
	for i := range 5000 {
		fmt.Fprintf(&b, "k%d = 1\n", i)
	}
	_, err := Parse([]byte(b.String()), "build.toml")
	if err == nil {
		t.Fatal("Parse succeeded")
	}
	lines := strings.Split(err.Error(), "\n")
	if len(lines) != maxErrors+1 {
		t.Fatalf("got %d lines of errors, want %d", len(lines), maxErrors+1)
	}
	if want := "build.toml:6:6: images.ok.k0: unknown key"; lines[0] != want {
		t.Errorf("first error = %q, want %q", lines[0], want)
	}
	if want := fmt.Sprintf("build.toml: too many errors: %d more not shown", 5000-maxErrors); lines[maxErrors] != want {
		t.Errorf("last line = %q, want %q", lines[maxErrors], want)
	}
}
