package dockerfile

import (
	"errors"
	"strings"
	"testing"
)

// TestNotText: an instruction holding bytes that are not UTF-8, or a NUL, is
// an *Error naming the file and the line the byte is on (a continuation or
// heredoc line included), wrapping ErrNotText; comments may hold anything.
func TestNotText(t *testing.T) {
	tests := []struct {
		name       string
		dockerfile string
		wantLine   int    // 0: no error
		wantMsg    string // substring of the error
	}{
		{name: "invalid UTF-8 in a LABEL", dockerfile: "FROM scratch\nLABEL a=\"x\xff\xfey\"\n", wantLine: 2, wantMsg: "LABEL: byte 0xff at column 11"},
		{name: "NUL in a LABEL", dockerfile: "FROM scratch\nLABEL a=\"x\x00y\"\n", wantLine: 2, wantMsg: "LABEL: a NUL byte at column 11"},
		{name: "invalid UTF-8 in ENV", dockerfile: "FROM scratch\nENV A=\xc3\n", wantLine: 2, wantMsg: "ENV: byte 0xc3"},
		{name: "continuation line", dockerfile: "FROM scratch\nLABEL a=b \\\n  c=\xfe\n", wantLine: 3, wantMsg: "LABEL: byte 0xfe at column 5"},
		{name: "heredoc", dockerfile: "FROM scratch\nCOPY <<EOF /x\nok\nab\x00\nEOF\n", wantLine: 4, wantMsg: "COPY: a NUL byte at column 3"},
		{name: "FROM", dockerfile: "FROM scr\xe9tch\n", wantLine: 1, wantMsg: "FROM: byte 0xe9"},
		{name: "instruction name", dockerfile: "FROM scratch\nLAB\xffEL a=b\n", wantLine: 2, wantMsg: "Dockerfile:2: byte 0xff"},
		{name: "ARG before FROM", dockerfile: "ARG V=\x00\nFROM scratch\n", wantLine: 1, wantMsg: "ARG: a NUL byte"},
		{name: "ONBUILD", dockerfile: "FROM scratch\nONBUILD LABEL a=\x00\n", wantLine: 2, wantMsg: "ONBUILD: a NUL byte"},
		{name: "UTF-16", dockerfile: "\xff\xfeF\x00R\x00O\x00M\x00 \x00s\x00\n\x00", wantLine: 1, wantMsg: "UTF-16"},
		{name: "UTF-16 big-endian", dockerfile: "\xfe\xff\x00F\x00R\x00O\x00M", wantLine: 1, wantMsg: "UTF-16"},
		{name: "comment", dockerfile: "# caf\xe9 \x00\nFROM scratch\n#\xff\nLABEL a=b\n"},
		{name: "UTF-8", dockerfile: "\xef\xbb\xbfFROM scratch\nLABEL caf\xc3\xa9=\"\xe2\x98\x83 \xf0\x9f\x90\xb3\"\n"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			_, err := NewPlan([]byte(tc.dockerfile), "svc/Dockerfile", Options{TargetPlatform: amd64})
			if tc.wantLine == 0 {
				if err != nil {
					t.Fatalf("unexpected error: %v", err)
				}
				return
			}
			if !errors.Is(err, ErrNotText) {
				t.Fatalf("err = %v, want %v", err, ErrNotText)
			}
			var derr *Error
			if !errors.As(err, &derr) || derr.File != "svc/Dockerfile" || derr.Line != tc.wantLine {
				t.Errorf("err = %#v, want an *Error for svc/Dockerfile line %d", err, tc.wantLine)
			}
			if !strings.Contains(err.Error(), tc.wantMsg) {
				t.Errorf("err = %q, want it to say %q", err, tc.wantMsg)
			}
		})
	}
}

// TestTriggerNotText: an ONBUILD trigger from a base image's config is
// checked like a Dockerfile line.
func TestTriggerNotText(t *testing.T) {
	for _, expr := range []string{"LABEL a=\x00", "LABEL a=\xff"} {
		if _, err := ParseTrigger(expr); !errors.Is(err, ErrNotText) {
			t.Errorf("ParseTrigger(%q) = %v, want %v", expr, err, ErrNotText)
		}
	}
	if _, err := ParseTrigger("LABEL caf\u00e9=\u2603"); err != nil {
		t.Errorf("a UTF-8 trigger: %v", err)
	}
}
