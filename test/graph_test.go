// Package test holds kiln's end-to-end tests: they build the kiln binary and
// run it as a user would, against a real registry process.
package test

import (
	"os/exec"
	"strings"
	"testing"
)

// allowed lists, for each kiln package (prefix), the kiln packages it may
// depend on, directly or not. It is the package graph of DESIGN.md.
type rule struct {
	pkg   string
	deps  []string
	isDir bool // pkg names a folder: the rule covers its subpackages
}

var allowed = []rule{
	{pkg: "kiln/platform"},
	{pkg: "kiln/config", deps: []string{"kiln/platform"}},
	{pkg: "kiln/manifest", deps: []string{"kiln/platform"}},
	{pkg: "kiln/warmer", deps: []string{"kiln/manifest", "kiln/platform"}},
	{pkg: "kiln/builder", deps: []string{"kiln/manifest", "kiln/platform", "kiln/builder", "kiln/builder/"}, isDir: true},
}

// TestPackageGraph enforces who may import whom: library packages never
// reach config (except cmd), builder never reaches warmer, nothing reaches
// cmd, and Kubernetes' modules (k8s.io/...) are linked only by the
// Kubernetes runner, the CLI and the tests.
func TestPackageGraph(t *testing.T) {
	out, err := exec.Command("go", "list", "-deps=false", "-f", "{{.ImportPath}}:{{join .Deps \" \"}}", "kiln/...").CombinedOutput()
	if err != nil {
		t.Fatalf("go list: %v\n%s", err, out)
	}
	for _, line := range strings.Split(strings.TrimSpace(string(out)), "\n") {
		pkg, deps, _ := strings.Cut(line, ":")
		for _, dep := range strings.Fields(deps) {
			if strings.HasPrefix(dep, "k8s.io/") && !mayUseKubernetes(pkg) {
				t.Errorf("%s depends on %s: only kiln/builder/runner/kube (and the CLI, the tests) may link Kubernetes", pkg, dep)
				break
			}
			if !strings.HasPrefix(dep, "kiln/") {
				continue
			}
			if strings.HasPrefix(dep, "kiln/cmd/") {
				t.Errorf("%s depends on %s: nothing may import the CLI", pkg, dep)
			}
			if rule, ok := ruleFor(pkg); ok && !permitted(rule.deps, dep) {
				t.Errorf("%s depends on %s; DESIGN.md allows only %v", pkg, dep, rule.deps)
			}
		}
	}
}

func mayUseKubernetes(pkg string) bool {
	for _, p := range []string{"kiln/builder/runner/kube", "kiln/cmd/", "kiln/test"} {
		if pkg == p || strings.HasPrefix(pkg, p+"/") || strings.HasPrefix(pkg, p) && strings.HasSuffix(p, "/") {
			return true
		}
	}
	return false
}

func ruleFor(pkg string) (rule, bool) {
	for _, r := range allowed {
		if pkg == r.pkg || r.isDir && strings.HasPrefix(pkg, r.pkg+"/") {
			return r, true
		}
	}
	return rule{}, false
}

func permitted(deps []string, dep string) bool {
	for _, d := range deps {
		if dep == d || strings.HasSuffix(d, "/") && strings.HasPrefix(dep, d) {
			return true
		}
	}
	return false
}
