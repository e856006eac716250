package runner

import (
	"fmt"

	specs "github.com/opencontainers/image-spec/specs-go/v1"

	"kiln/builder/dockerfile"
	"kiln/platform"
)

// Mode is how a platform builds on a host.
type Mode int

const (
	// Native: the host executes the platform's code.
	Native Mode = iota
	// Cross: another architecture, but no stage the target needs runs code
	// of it (COPY-only stages, or RUN only on the build platform): built
	// here without emulation.
	Cross
	// Emulated: some RUN executes another architecture's code under a
	// registered binfmt_misc emulator, as asked (Emulation.Allow).
	Emulated
	// Blocked: some RUN would execute another architecture's code and no
	// emulation was allowed or registered: it needs a matching node.
	Blocked
)

func (m Mode) String() string {
	switch m {
	case Native:
		return "native"
	case Cross:
		return "cross"
	case Emulated:
		return "emulated"
	case Blocked:
		return "needs a matching node"
	}
	return fmt.Sprintf("Mode(%d)", int(m))
}

// Emulation says whether foreign code may run under binfmt_misc.
type Emulation struct {
	Allow     bool   // opt in (--allow-emulation); a handler must still be registered
	BinfmtDir string // where binfmt_misc is mounted; "" = DefaultBinfmtDir
}

// Execution is how building a platform runs on a host.
type Execution struct {
	Mode Mode
	// Where says where a remote runner would build it: "2 Ready nodes
	// with kubernetes.io/arch=arm64"; empty for this host.
	Where string
	Runs  int // how many RUN instructions building the target executes
	// Site is the first RUN that executes foreign code (Emulated, Blocked).
	Site *RunSite
	// Handlers are the binfmt_misc entries Emulated relies on.
	Handlers []string
}

// ExecutionError says which RUN keeps a platform from building here and how
// to build it anyway.
type ExecutionError struct {
	Site      RunSite
	Arch      string // the architecture the RUN needs: "arm64"
	Allowed   bool   // emulation was allowed, but no handler is registered
	BinfmtDir string
}

func (e *ExecutionError) Error() string {
	msg := fmt.Sprintf("stage %q needs to run code (%s): build it on an %s node (runner = \"kubernetes\") or pass --allow-emulation with a registered binfmt handler for %s",
		e.Site.Stage, e.Site.Where(), e.Arch, e.Arch)
	if e.Allowed {
		msg += fmt.Sprintf("; no binfmt handler for %s is registered (in %s)", e.Arch, e.BinfmtDir)
	}
	return msg
}

// Unwrap makes errors.Is(err, ErrNeedsMatchingNode) true.
func (e *ExecutionError) Unwrap() error { return ErrNeedsMatchingNode }

// Decide tells how building plan's target for target runs on host, from the
// Dockerfile alone: every RUN the target needs (RunSites) must execute on
// host natively, or under an emulator when emu allows it and binfmt_misc has
// one. A RUN that cannot is an *ExecutionError, with Mode Blocked.
func Decide(host, target specs.Platform, plan *dockerfile.Plan, emu Emulation) (Execution, error) {
	if emu.BinfmtDir == "" {
		emu.BinfmtDir = DefaultBinfmtDir
	}
	ex := Execution{Mode: Cross}
	if platform.CanExecute(host, target) {
		ex.Mode = Native
	}
	seen := map[string]bool{}
	sites := RunSites(plan)
	ex.Runs = len(sites)
	for _, site := range sites {
		if platform.CanExecute(host, site.Platform) {
			continue
		}
		if ex.Site == nil {
			s := site
			ex.Site = &s
		}
		if !emu.Allow {
			ex.Mode = Blocked
			return ex, &ExecutionError{Site: site, Arch: archName(site.Platform), BinfmtDir: emu.BinfmtDir}
		}
		handler, ok := BinfmtHandler(emu.BinfmtDir, site.Platform)
		if !ok {
			ex.Mode = Blocked
			return ex, &ExecutionError{Site: site, Arch: archName(site.Platform), Allowed: true, BinfmtDir: emu.BinfmtDir}
		}
		ex.Mode = Emulated
		if !seen[handler] {
			seen[handler] = true
			ex.Handlers = append(ex.Handlers, handler)
		}
	}
	return ex, nil
}

// archName is "arm64", "arm/v7": the platform without its OS.
func archName(p specs.Platform) string {
	p = platform.Normalize(p)
	if p.Variant != "" {
		return p.Architecture + "/" + p.Variant
	}
	return p.Architecture
}
