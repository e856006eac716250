package main

import (
	"os"
	"strings"
	"testing"
)

// TestKanikoReadme: README.md's table names every kaniko flag.
func TestKanikoReadme(t *testing.T) {
	data, err := os.ReadFile("../../README.md")
	if err != nil {
		t.Fatal(err)
	}
	_, table, ok := strings.Cut(string(data), "## Switching from kaniko")
	if !ok {
		t.Fatal(`README.md has no "## Switching from kaniko"`)
	}
	for _, flags := range [][]struct{ name, owner string }{kanikoExecutorFlags, kanikoWarmerFlags} {
		for _, f := range flags {
			if !strings.Contains(table, "`--"+f.name+"`") && !strings.Contains(table, "`--"+f.name+" ") && !strings.Contains(table, "`--"+f.name+"=") {
				t.Errorf("README.md's kaniko table does not list --%s", f.name)
			}
		}
	}
}
