package config

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/BurntSushi/toml"
)

// nest is s repeated n times, then mid, then end repeated n times.
func nest(s, mid, end string, n int) string {
	return strings.Repeat(s, n) + mid + strings.Repeat(end, n)
}

// keys is n lines "prefixkI = 1".
func keys(prefix string, n int) string {
	var b strings.Builder
	for i := range n {
		fmt.Fprintf(&b, "%sk%d = 1\n", prefix, i)
	}
	return b.String()
}

// realistic is a build file of n images with a few args and labels each.
func realistic(n int) string {
	var b strings.Builder
	for i := range n {
		fmt.Fprintf(&b, "[images.a%d]\ncontext = '.'\nplatforms = ['amd64']\ntags = ['r.io/a%d:1']\nargs = { A = '1' }\nlabels.\"org.example.x\" = 'y'\n", i, i)
	}
	return b.String()
}

// TestLimits: each limit holds at its bound and refuses one past it, with
// the line and column where it was crossed; what looks deep inside strings
// and comments is not counted.
func TestLimits(t *testing.T) {
	long := func(n int) string { return strings.Repeat("x", n) }
	tests := []struct {
		name    string
		src     string
		wantErr string // "" when within the limits; else a substring of the error
	}{
		{name: "arrays at the bound", src: "k = " + nest("[", "1", "]", MaxDepth-1)},
		{name: "arrays past it", src: "k = " + nest("[", "1", "]", MaxDepth), wantErr: "build.toml:1:36: k: nested more than 32 levels deep"},
		{name: "inline tables at the bound", src: "k = " + nest("{a=", "1", "}", MaxDepth-1)},
		{name: "inline tables past it", src: "k = " + nest("{a=", "1", "}", MaxDepth), wantErr: "build.toml:1:99: k: nested more than 32 levels deep"},
		{name: "dotted key at the bound", src: strings.Repeat("a.", MaxDepth-1) + "a = 1"},
		{name: "dotted key past it", src: strings.Repeat("a.", MaxDepth) + "a = 1", wantErr: "build.toml:1:1: a.a.a.a.a.a.a.a.a.a.a.a.a.a.a.a.a.a.a.a.a.a.a.a.a.a.a.a.a.a.a.a.…: nested more"},
		{name: "table header past it", src: "[" + strings.Repeat("a.", MaxDepth) + "a]\n", wantErr: "build.toml:1:1: "},
		{name: "array of tables past it", src: "\n[[" + strings.Repeat("a.", MaxDepth) + "a]]\n", wantErr: "build.toml:2:1: "},
		{name: "all kinds added up", src: "[images.x]\nargs.a.b = { c = [[{ d.e = [[1]] }]] }\n" + "[" + strings.Repeat("t.", 24) + "t]\nk.l = [{ m = [[[[1]]]] }]\n",
			wantErr: "build.toml:4:17: " + strings.Repeat("t.", 25) + "k.l: nested more than 32"},
		{name: "keys under a header", src: "[" + strings.Repeat("a.", MaxDepth-2) + "a]\nk = 1\nl.m = 1\n", wantErr: "build.toml:3:1: "},
		{name: "nesting in an array of inline tables", src: "k = [{a=1}, " + nest("{a=", "1", "}", MaxDepth-1) + "]", wantErr: "build.toml:1:"},

		{name: "values at the bound", src: keys("", MaxValues)},
		{name: "values past it", src: keys("", MaxValues+1), wantErr: fmt.Sprintf("build.toml:%d:1: k%d: more than %d values", MaxValues+1, MaxValues, MaxValues)},
		{name: "array elements count", src: "k = [" + strings.Repeat("1,", MaxValues) + "]", wantErr: "more than 10000 values"},
		{name: "tables count", src: strings.Repeat("[[t]]\n", MaxValues+1), wantErr: "more than 10000 values"},

		{name: "key path at the bound", src: "[" + long(100) + "]\n" + long(MaxKeyLength-102) + " = 1\n"},
		{name: "key path past it", src: "[" + long(100) + "]\n" + long(MaxKeyLength-101) + " = 1\n", wantErr: "build.toml:2:1: " + long(64) + "…: key path longer than 256 bytes"},
		{name: "quoted key path past it", src: "'" + long(MaxKeyLength) + "' = 1\n", wantErr: "key path longer"},

		{name: "many deep keys", src: "[" + strings.Repeat("t.", 20) + "t]\n" + keys("a.b.c.d.e.f.", 1000), wantErr: "too many deeply nested keys"},
		{name: "keys of a large real file", src: realistic(MaxValues / 9)},

		{name: "brackets in strings", src: "a = '" + strings.Repeat("[{", 100) + "'\nb = \"" + strings.Repeat("{[", 100) + "\\\"\"\n" +
			"c = '''\n" + strings.Repeat("[[", 100) + "\n'''\nd = \"\"\"\\\"\"\"" + strings.Repeat("{", 100) + "\"\"\"\"\"\ne = 1\n"},
		{name: "brackets in comments", src: "# " + strings.Repeat("[", 100) + "\na = [ # " + strings.Repeat("{", 100) + "\n 1, # ]]]]\n]\n"},
		{name: "dots in quoted keys", src: "'" + strings.Repeat("a.", 100) + "' = 1\n\"" + strings.Repeat(".", 100) + "\" = { \"" + strings.Repeat(".", 100) + "\" = 2 }\n"},
		{name: "dots in values", src: "a = [" + strings.Repeat("1.5, ", 100) + "]\nb = 1979-05-27T07:32:00.999Z\n"},
		{name: "inline tables over lines", src: "k = [\n  { a = 1 },\n  { b = [\n 2,\n ] },\n]\n"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			le := checkLimits(tt.src)
			if tt.wantErr == "" {
				if le != nil {
					t.Fatalf("want the limits kept, got %+v", *le)
				}
				if _, err := toml.Decode(tt.src, new(map[string]any)); err != nil {
					t.Fatalf("the test's own TOML is wrong: %v", err)
				}
				return
			}
			_, err := Parse([]byte(tt.src), "build.toml")
			if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
				t.Fatalf("error:\n%v\nwant it to hold:\n%s", err, tt.wantErr)
			}
			if !errors.Is(err, ErrInvalid) {
				t.Errorf("%v does not wrap ErrInvalid", err)
			}
		})
	}
}

// TestSizeLimit: a file over MaxFileSize is refused before it is parsed,
// and Load reads no more than that of a file that never ends.
func TestSizeLimit(t *testing.T) {
	padded := func(n int) []byte { // a valid file of n bytes
		return []byte(okImage + "#" + strings.Repeat("x", n-len(okImage)-2) + "\n")
	}
	if _, err := Parse(padded(MaxFileSize), "build.toml"); err != nil {
		t.Errorf("a file of MaxFileSize bytes: %v", err)
	}
	_, err := Parse(padded(MaxFileSize+1), "build.toml")
	if want := "build.toml: larger than 1048576 bytes (1 MiB), the most a build file may hold"; err == nil || err.Error() != want || !errors.Is(err, ErrInvalid) {
		t.Errorf("a file of MaxFileSize+1 bytes: %v, want %q", err, want)
	}
	big := filepath.Join(t.TempDir(), "build.toml")
	if err := os.WriteFile(big, padded(8*MaxFileSize), 0o644); err != nil {
		t.Fatal(err)
	}
	for _, f := range []string{big, "/dev/zero"} {
		if _, err := Load(f); err == nil || !strings.Contains(err.Error(), "larger than") {
			t.Errorf("Load(%s) = %v, want the size refused", f, err)
		}
	}
}

// TestHostileFilesFast: files built to make a TOML decoder (or kiln's key
// checks) take time or memory are refused or read quickly. The bound is
// generous: this is not a benchmark; the quadratic decoder took minutes on
// the first of them and hours on the 400 kB one.
func TestHostileFilesFast(t *testing.T) {
	const kb400 = 100_000 // "{a=" and "}" are 4 bytes
	var images strings.Builder
	for i := range MaxValues / 5 {
		fmt.Fprintf(&images, "[images.a%d]\ncontext = 'c%d'\nplatforms = ['amd64']\noutput = 'oci:o/%d'\n", i, i, i)
	}
	var chains strings.Builder
	for i := range MaxValues / MaxDepth {
		fmt.Fprintf(&chains, "k%d = %s\n", i, nest("{a=", "1", "}", MaxDepth-2))
	}
	tests := []struct {
		name    string
		src     string
		wantErr string // "" for any
	}{
		{"nested inline tables, 8 kB", "args = " + nest("{a=", "1", "}", 2000), "build.toml:1:"},
		{"nested inline tables, 400 kB", "[images.api]\nargs = " + nest("{a=", "1", "}", kb400), "build.toml:2:96: images.api.args: nested more than 32 levels deep"},
		{"nested arrays, 400 kB", "a = " + nest("[", "1", "]", 2*kb400), "nested more"},
		{"dotted key, 400 kB", strings.Repeat("a.", 2*kb400) + "a = 1", "nested more"},
		{"table header, 400 kB", "[" + strings.Repeat("a.", 2*kb400) + "a]", "nested more"},
		{"unterminated nesting, 400 kB", "args = " + strings.Repeat("{a=", kb400), "nested more"},
		{"nested inline tables, 1 MiB", "a = " + nest("{a=", "1", "}", MaxFileSize/4-2), "nested more"},
		{"one long key", "'" + strings.Repeat("k", MaxFileSize-10) + "' = 1", "key path longer"},
		{"one long string", "a = '" + strings.Repeat("x", MaxFileSize-10) + "'", "a: unknown key"},
		{"keys at the bound", keys("", MaxValues), "k0: unknown key"},
		{"unknown tables at the bound", strings.Repeat("[t]\n", 1) + keys("", MaxValues-1), "t: unknown key"},
		{"images at the bound", images.String(), ""},
		{"inline chains up to the key budget", chains.String(), ""},
		{"array at the bound", "[images.a]\ncontext='.'\nplatforms=['amd64']\ntags=[" + strings.Repeat("'r.io/a:1',", MaxValues-10) + "]", "duplicate tag"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if len(tt.src) > MaxFileSize {
				t.Fatalf("test file of %d bytes is over the size limit", len(tt.src))
			}
			start := time.Now()
			_, err := Parse([]byte(tt.src), "build.toml")
			if d := time.Since(start); d > 5*time.Second {
				t.Errorf("took %s", d)
			}
			if tt.wantErr != "" && (err == nil || !strings.Contains(err.Error(), tt.wantErr)) {
				t.Errorf("error:\n%.2000v\nwant it to hold %q", err, tt.wantErr)
			}
		})
	}
}

// FuzzLimits: whatever passes checkLimits and decodes has keys within the
// limits: the scanner never counts less than the decoder builds.
func FuzzLimits(f *testing.F) {
	for _, seed := range []string{
		"a = 1", "[a.b]\nc.d = {e = [1, {f = 2}]}", "[[a]]\n[[a.b]]\nc = 1", "a = '''[[['''\nb.c = \"\"\"\\\"\"\"\"",
		"a = [ # ]\n [1], {b.c = 2},\n]", "'a.b'.\"c.d\" . e = 1", "a = {\n b = 1,\n}", "[ a . b ]\n[ [ c ] ]",
		"k = " + nest("[", "1", "]", MaxDepth-1), "k = " + nest("{a=", "1", "}", MaxDepth-1),
		strings.Repeat("a.", MaxDepth-1) + "a = 1", "[" + strings.Repeat("a.", MaxDepth-2) + "a]\nb = {c = 1}",
	} {
		f.Add(seed)
	}
	f.Fuzz(func(t *testing.T, src string) {
		if checkLimits(src) != nil {
			return
		}
		md, err := toml.Decode(src, new(map[string]any))
		if err != nil {
			return
		}
		all := md.Keys()
		if len(all) > MaxValues {
			t.Fatalf("%d keys passed the limits", len(all))
		}
		for _, k := range all {
			if len(k) > MaxDepth {
				t.Fatalf("key %q is %d deep", k, len(k))
			}
			if n := len(strings.Join(k, ".")); n > MaxKeyLength {
				t.Fatalf("key %q is %d bytes long", k, n)
			}
		}
	})
}
