package buildcontext

import (
	"io/fs"
	"slices"
	"strings"
	"testing"
)

// TestDockerignoreCorpus checks Walk and Excluded against the behaviour the
// Docker documentation gives for .dockerignore
// (https://docs.docker.com/build/concepts/context/#dockerignore-files).
// Every case has a root Dockerfile and, unless ignore is empty, .dockerignore.
func TestDockerignoreCorpus(t *testing.T) {
	tests := []struct {
		name       string
		ignore     string
		dockerfile string
		files      tree
		want       []string // what Walk(".") reports
	}{
		{
			name:   "lines starting with # are comments",
			ignore: "# *.md\n#README.md\nsecret.txt\n",
			files:  tree{"README.md": "", "a.md": "", "secret.txt": ""},
			want:   []string{".dockerignore", "Dockerfile", "README.md", "a.md"},
		},
		{
			name:   "a # after leading spaces starts a pattern",
			ignore: "  #notes\n",
			files:  tree{"#notes": "", "notes": ""},
			want:   []string{".dockerignore", "Dockerfile", "notes"},
		},
		{
			name:   "star excludes everything, Dockerfile and .dockerignore too",
			ignore: "*\n",
			files:  tree{"a": "", "sub/deep/x": ""},
			want:   nil,
		},
		{
			name:   "patterns are anchored at the root",
			ignore: "*.md\n",
			files:  tree{"a.md": "", "docs/b.md": ""},
			want:   []string{".dockerignore", "Dockerfile", "docs/", "docs/b.md"},
		},
		{
			name:   "**/*.go matches at any depth, the root included",
			ignore: "**/*.go\n",
			files:  tree{"main.go": "", "cmd/x/main.go": "", "cmd/x/README": ""},
			want:   []string{".dockerignore", "Dockerfile", "cmd/", "cmd/x/", "cmd/x/README"},
		},
		{
			name:   "a leading slash means the root",
			ignore: "/secret\n/sub/x\n",
			files:  tree{"secret": "", "sub/x": "", "sub/secret": ""},
			want:   []string{".dockerignore", "Dockerfile", "sub/", "sub/secret"},
		},
		{
			name:   "*/temp* looks one level down only",
			ignore: "*/temp*\n",
			files:  tree{"temp.txt": "", "a/temporary.txt": "", "a/b/temp.txt": ""},
			want:   []string{".dockerignore", "Dockerfile", "a/", "a/b/", "a/b/temp.txt", "temp.txt"},
		},
		{
			name:   "*/*/temp* looks two levels down only",
			ignore: "*/*/temp*\n",
			files:  tree{"temp.txt": "", "a/temporary.txt": "", "a/b/temp.txt": ""},
			want:   []string{".dockerignore", "Dockerfile", "a/", "a/b/", "a/temporary.txt", "temp.txt"},
		},
		{
			name:   "temp? matches one character",
			ignore: "temp?\n",
			files:  tree{"temp1": "", "tempa": "", "temp12": ""},
			want:   []string{".dockerignore", "Dockerfile", "temp12"},
		},
		{
			name:   "! re-includes, a later line excludes again (the documented README example)",
			ignore: "*.md\n!README*.md\nREADME-secret.md\n",
			files:  tree{"a.md": "", "README.md": "", "README-x.md": "", "README-secret.md": ""},
			want:   []string{".dockerignore", "Dockerfile", "README-x.md", "README.md"},
		},
		{
			name:   "! before the exclusion it should except does nothing",
			ignore: "!README.md\n*.md\n",
			files:  tree{"README.md": "", "a.md": ""},
			want:   []string{".dockerignore", "Dockerfile"},
		},
		{
			name:   "! re-includes one file in an excluded folder, which is still sent",
			ignore: "docs\n!docs/keep.txt\n",
			files:  tree{"docs/keep.txt": "", "docs/drop.txt": "", "docs/sub/x": ""},
			want:   []string{".dockerignore", "Dockerfile", "docs/", "docs/keep.txt"},
		},
		{
			name:   "! with a wildcard inside an excluded folder",
			ignore: "logs\n!logs/*.keep\n",
			files:  tree{"logs/a.keep": "", "logs/a.log": "", "logs/old/b.keep": ""},
			want:   []string{".dockerignore", "Dockerfile", "logs/", "logs/a.keep"},
		},
		{
			name:   "an excluded folder with nothing re-included is not sent",
			ignore: "logs\n!logs/*.keep\ncache\n!src/keep\n",
			files:  tree{"logs/a.log": "", "cache/x": "", "src/keep": "", "src/other": ""},
			want:   []string{".dockerignore", "Dockerfile", "src/", "src/keep", "src/other"},
		},
		{
			name:   "! re-includes a whole folder under an excluded one",
			ignore: "a\n!a/b\n",
			files:  tree{"a/b/c": "", "a/b/d/e": "", "a/f": ""},
			want:   []string{".dockerignore", "Dockerfile", "a/", "a/b/", "a/b/c", "a/b/d/", "a/b/d/e"},
		},
		{
			name:   "an exclusion after an exception wins inside it",
			ignore: "a\n!a/keep\na/keep/secret\n",
			files:  tree{"a/keep/x": "", "a/keep/secret": "", "a/y": ""},
			want:   []string{".dockerignore", "Dockerfile", "a/", "a/keep/", "a/keep/x"},
		},
		{
			name:   "star then ! keeps one tree",
			ignore: "*\n!src\n",
			files:  tree{"src/a/b": "", "other": ""},
			want:   []string{"src/", "src/a/", "src/a/b"},
		},
		{
			name:   "leading and trailing white space is trimmed",
			ignore: "secret.txt   \n   other.txt\t\n\n",
			files:  tree{"secret.txt": "", "other.txt": "", "keep": ""},
			want:   []string{".dockerignore", "Dockerfile", "keep"},
		},
		{
			name:   "patterns are cleaned like paths",
			ignore: "./foo/../bar\nbaz/\n",
			files:  tree{"bar": "", "baz/x": "", "foo": ""},
			want:   []string{".dockerignore", "Dockerfile", "foo"},
		},
		{
			name:   "a folder name excludes the folder, anchored at the root",
			ignore: "node_modules\n",
			files:  tree{"node_modules/x": "", "web/node_modules/y": ""},
			want:   []string{".dockerignore", "Dockerfile", "web/", "web/node_modules/", "web/node_modules/y"},
		},
		{
			name:   "**/name excludes it at any depth",
			ignore: "**/node_modules\n",
			files:  tree{"node_modules/x": "", "web/node_modules/y": "", "web/app.js": ""},
			want:   []string{".dockerignore", "Dockerfile", "web/", "web/app.js"},
		},
		{
			name:   "dir/** excludes what is inside, not the folder",
			ignore: "docs/**\n",
			files:  tree{"docs/a": "", "docs/b/c": ""},
			want:   []string{".dockerignore", "Dockerfile", "docs/"},
		},
		{
			name:   "a backslash escapes a wildcard",
			ignore: "file\\*\n",
			files:  tree{"file*": "", "file1": ""},
			want:   []string{".dockerignore", "Dockerfile", "file1"},
		},
		{
			name:   "a UTF-8 byte order mark is dropped",
			ignore: "\ufeffsecret\n",
			files:  tree{"secret": "", "keep": ""},
			want:   []string{".dockerignore", "Dockerfile", "keep"},
		},
		{
			name:   "Dockerfile and .dockerignore may exclude themselves",
			ignore: "Dockerfile\n.dockerignore\n",
			files:  tree{"app.txt": ""},
			want:   []string{"app.txt"},
		},
		{
			name:       "<Dockerfile>.dockerignore wins over .dockerignore",
			ignore:     "a.txt\n",
			dockerfile: "build/app.Dockerfile",
			files:      tree{"a.txt": "", "b.txt": "", "build/app.Dockerfile": "FROM scratch\n", "build/app.Dockerfile.dockerignore": "b.txt\nDockerfile\n"},
			want:       []string{".dockerignore", "a.txt", "build/", "build/app.Dockerfile", "build/app.Dockerfile.dockerignore"},
		},
		{
			name:       "without <Dockerfile>.dockerignore, .dockerignore applies to any Dockerfile",
			ignore:     "a.txt\n",
			dockerfile: "build/app.Dockerfile",
			files:      tree{"a.txt": "", "build/app.Dockerfile": "FROM scratch\n"},
			want:       []string{".dockerignore", "Dockerfile", "build/", "build/app.Dockerfile"},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			files := tree{"Dockerfile": "FROM scratch\n"}
			if tt.ignore != "" {
				files[".dockerignore"] = tt.ignore
			}
			for k, v := range tt.files {
				files[k] = v
			}
			c := openTree(t, files, Options{Dockerfile: tt.dockerfile})
			got := walkAll(t, c, ".")
			if !slices.Equal(got, tt.want) {
				t.Errorf("Walk = %q\nwant   %q", got, tt.want)
			}
			if _, err := c.Dockerfile(); err != nil {
				t.Errorf("Dockerfile(): %v (Docker reads it even when excluded)", err)
			}
			checkExcludedAgrees(t, c, files, got)
		})
	}
}

// checkExcludedAgrees checks Excluded against Walk for every file, and that
// Resolve refuses exactly the excluded ones.
func checkExcludedAgrees(t *testing.T, c *Context, files tree, walked []string) {
	t.Helper()
	for name := range files {
		excluded, err := c.Excluded(name)
		if err != nil {
			t.Fatal(err)
		}
		if sent := slices.Contains(walked, name); excluded == sent {
			t.Errorf("Excluded(%q) = %v, but Walk reports it: %v", name, excluded, sent)
		}
		_, err = c.Resolve(name)
		if gotErr := err != nil; gotErr != excluded {
			t.Errorf("Resolve(%q) error = %v, Excluded = %v", name, err, excluded)
		}
		if excluded && !(errorIs(err, ErrExcluded) && errorIs(err, fs.ErrNotExist)) {
			t.Errorf("Resolve(%q) = %v, want ErrExcluded and fs.ErrNotExist", name, err)
		}
	}
}

func TestExcludedVerdicts(t *testing.T) {
	c := openTree(t, tree{".dockerignore": "docs\n!docs/keep.txt\n*.tmp\n", "docs/keep.txt": ""}, Options{})
	tests := []struct {
		rel  string
		want bool
	}{
		{"docs", true},
		{"docs/keep.txt", false},
		{"docs/other.txt", true},
		{"docs/keep.txt/child", false},
		{"/docs/other.txt", true},
		{"src/../docs/x", true},
		{"a.tmp", true},
		{"sub/a.tmp", false},
		{".", false},
		{"", false},
	}
	for _, tt := range tests {
		got, err := c.Excluded(tt.rel)
		if err != nil || got != tt.want {
			t.Errorf("Excluded(%q) = %v, %v; want %v", tt.rel, got, err, tt.want)
		}
	}
}

func TestDockerignoreErrors(t *testing.T) {
	for _, ignore := range []string{"!\n", "[\n"} {
		dir := t.TempDir()
		writeTree(t, dir, tree{".dockerignore": ignore})
		_, err := Open(t.Context(), dir, Options{})
		if err == nil || !strings.Contains(err.Error(), ".dockerignore") {
			t.Errorf(".dockerignore %q: err = %v, want an error naming .dockerignore", ignore, err)
		}
	}
}
