package buildcontext

import (
	"errors"
	"io/fs"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
)

func TestGlob(t *testing.T) {
	files := tree{
		"a.txt":            "",
		"b.txt":            "",
		"c.md":             "",
		"abc":              "",
		"file*":            "",
		"cmd/api/main.go":  "",
		"cmd/cli/main.go":  "",
		"cmd/cli/util.go":  "",
		"cmd/deep/x/y.go":  "",
		"main.go":          "",
		"pkg/a.go":         "",
		"srcdir/one.txt":   "",
		"srcdir/two.txt":   "",
		"alias":            "-> /srcdir",
		"link.txt":         "-> a.txt",
		"x/b":              "",
		"x.y/a":            "",
		"secret.txt":       "",
		"logs/app.log":     "",
		"logs/keep/me.txt": "",
		".dockerignore":    "secret.txt\nlogs\n!logs/keep\n",
	}
	tests := []struct {
		name, pattern string
		want          []string
		wantErr       error
	}{
		{name: "star", pattern: "*.txt", want: []string{"a.txt", "b.txt", "link.txt"}},
		{name: "question mark", pattern: "?.txt", want: []string{"a.txt", "b.txt"}},
		{name: "class", pattern: "[ac].*", want: []string{"a.txt", "c.md"}},
		{name: "star does not cross /", pattern: "cmd/*.go", wantErr: ErrNoMatch},
		{name: "one level per star", pattern: "cmd/*/main.go", want: []string{"cmd/api/main.go", "cmd/cli/main.go"}},
		{name: "** is not special: one level, like */*.go", pattern: "**/*.go", want: []string{"pkg/a.go"}},
		{name: "matched folders are returned whole", pattern: "cmd/c*", want: []string{"cmd/cli"}},
		{name: "wildcard in the middle", pattern: "*/cli/*.go", want: []string{"cmd/cli/main.go", "cmd/cli/util.go"}},
		{name: "literal path", pattern: "srcdir/one.txt", want: []string{"srcdir/one.txt"}},
		{name: "literal path is cleaned and rooted", pattern: "/../srcdir/./one.txt", want: []string{"srcdir/one.txt"}},
		{name: "literal symlink keeps its name", pattern: "link.txt", want: []string{"link.txt"}},
		{name: "dot is the root", pattern: ".", want: []string{"."}},
		{name: "symlinked base is resolved", pattern: "alias/*.txt", want: []string{"srcdir/one.txt", "srcdir/two.txt"}},
		{name: "an escaped wildcard is literal in a pattern", pattern: `fil?\*`, want: []string{"file*"}},
		{name: "a pattern with only escaped wildcards is a literal path, backslash included", pattern: `file\*`, wantErr: ErrNoMatch},
		{name: "Docker's walk order, one name at a time", pattern: "*/?", want: []string{"x/b", "x.y/a"}},
		{name: "excluded matches are dropped", pattern: "s*.txt", wantErr: ErrNoMatch},
		{name: "excluded folder kept for its re-included entry", pattern: "l*", want: []string{"link.txt", "logs"}},
		{name: "inside an excluded folder", pattern: "logs/*", want: []string{"logs/keep"}},
		{name: "excluded literal", pattern: "secret.txt", wantErr: ErrNoMatch},
		{name: "no match", pattern: "*.nope", wantErr: ErrNoMatch},
		{name: "missing base", pattern: "nodir/*", wantErr: ErrNoMatch},
		{name: "file as base", pattern: "a.txt/*", wantErr: ErrNoMatch},
		{name: "missing literal", pattern: "nope.txt", wantErr: ErrNoMatch},
		{name: "bad pattern", pattern: "[", wantErr: filepath.ErrBadPattern},
	}
	c := openTree(t, files, Options{})
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := c.Glob(tt.pattern)
			if !matchErr(err, tt.wantErr) {
				t.Fatalf("Glob(%q) = %q, %v; want error %v", tt.pattern, got, err, tt.wantErr)
			}
			if err != nil {
				if !strings.Contains(err.Error(), strconv.Quote(tt.pattern)) {
					t.Errorf("error %q does not name the pattern", err)
				}
				if errors.Is(err, ErrNoMatch) && !errors.Is(err, fs.ErrNotExist) {
					t.Errorf("error %q: want fs.ErrNotExist too", err)
				}
				return
			}
			if !slices.Equal(got, tt.want) {
				t.Errorf("Glob(%q) = %q, want %q", tt.pattern, got, tt.want)
			}
		})
	}
}

func TestSplitWildcards(t *testing.T) {
	tests := []struct{ in, base, rest string }{
		{"a/b/c", "a/b/c", ""},
		{"a/*/c", "a", "*/c"},
		{"*.go", "", "*.go"},
		{`a/b\*/c?`, `a/b\*`, "c?"},
		{"a/[bc]/d", "a", "[bc]/d"},
	}
	for _, tt := range tests {
		if base, rest := splitWildcards(tt.in); base != tt.base || rest != tt.rest {
			t.Errorf("splitWildcards(%q) = %q, %q; want %q, %q", tt.in, base, rest, tt.base, tt.rest)
		}
	}
}
