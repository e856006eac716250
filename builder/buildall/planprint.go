package buildall

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"strings"
	"text/tabwriter"

	specs "github.com/opencontainers/image-spec/specs-go/v1"

	"kiln/builder/runner"
	"kiln/platform"
)

// String is the plan as WriteTo prints it.
func (p *Plan) String() string {
	var b bytes.Buffer
	_, _ = p.WriteTo(&b)
	return b.String()
}

// WriteTo prints what would be built where and why: a table of (image,
// platform), then where each image's index would go and every up-front
// failure in full.
func (p *Plan) WriteTo(w io.Writer) (int64, error) {
	cw := &countingWriter{w: w}
	builds := "builds"
	if p.Jobs == 1 {
		builds = "build"
	}
	fmt.Fprintf(cw, "host %s, runner %s, %d %s at a time\n\n", platform.Format(p.Host), p.Runner, p.Jobs, builds)
	tw := tabwriter.NewWriter(cw, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "IMAGE\tPLATFORM\tREQUIRED\tBUILD\tWHY")
	for _, ip := range p.Images {
		for _, t := range ip.Targets {
			fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\n", ip.Image.Name, platform.Format(t.Platform), yesOptional(t.Required), buildColumn(p, ip, t), why(p, ip, t))
		}
	}
	tw.Flush()
	fmt.Fprintln(cw)
	for _, ip := range p.Images {
		fmt.Fprintf(cw, "%s: %s\n", ip.Image.Name, destination(ip))
	}
	seen := map[string]bool{} // a context that cannot be read fails every platform alike
	for _, ip := range p.Images {
		for _, t := range ip.Targets {
			if t.Err != nil && !seen[t.Err.Error()] {
				seen[t.Err.Error()] = true
				fmt.Fprintf(cw, "  %s\n", t.Err)
			}
		}
	}
	return cw.n, cw.err
}

func yesOptional(required bool) string {
	if required {
		return "yes"
	}
	return "optional"
}

// buildColumn says how and where a target builds, or what becomes of it.
func buildColumn(p *Plan, ip ImagePlan, t Target) string {
	var fate string
	switch {
	case t.Err != nil && t.Required:
		fate = "fails"
	case t.Err != nil:
		fate = "dropped"
	case ip.Blocked() != nil:
		return "skipped"
	default:
		return fmt.Sprintf("%s, %s", p.Runner, t.Execution.Mode)
	}
	if t.Execution.Site != nil {
		return fate + ": " + runner.Blocked.String()
	}
	return fate
}

// why explains buildColumn in a few words.
func why(p *Plan, ip ImagePlan, t Target) string {
	ex := t.Execution
	var er *runner.ExecutionError
	switch {
	case errors.As(t.Err, &er):
		s := fmt.Sprintf("stage %q line %d has RUN (%s code)", er.Site.Stage, er.Site.Line, er.Arch)
		if er.Allowed {
			s += fmt.Sprintf("; no binfmt handler for %s", er.Arch)
		}
		return s
	case t.Err != nil:
		return "cannot be planned (below)"
	case ip.Blocked() != nil:
		return "a required platform fails up front"
	case ex.Where != "":
		return ex.Where
	case ex.Mode == runner.Emulated:
		return fmt.Sprintf("stage %q line %d has RUN (%s code): %s", ex.Site.Stage, ex.Site.Line, arch(ex.Site.Platform), strings.Join(ex.Handlers, ", "))
	case ex.Mode == runner.Native:
		return "the host's platform"
	case ex.Runs > 0:
		return fmt.Sprintf("RUN only in stages on the build platform (%s)", platform.Format(p.Host))
	}
	return "COPY-only: no stage the target needs has RUN"
}

// arch is a platform without its OS: "arm64", "arm/v7".
func arch(p specs.Platform) string {
	_, a, _ := strings.Cut(platform.Format(p), "/")
	return a
}

// destination says where an image's index goes.
func destination(ip ImagePlan) string {
	im := ip.Image
	if err := ip.Blocked(); err != nil {
		return "fails before any work: nothing is built or pushed"
	}
	var parts []string
	if im.Push {
		tags := make([]string, len(im.Tags))
		for i, t := range im.Tags {
			tags[i] = t.String()
		}
		parts = append(parts, "index pushed to "+strings.Join(tags, ", "))
	}
	if im.OCIDir != "" {
		parts = append(parts, fmt.Sprintf("index written to oci:%s (%s)", im.OCIDir, im.refName()))
	}
	return strings.Join(parts, "; ")
}

type countingWriter struct {
	w   io.Writer
	n   int64
	err error
}

func (c *countingWriter) Write(p []byte) (int, error) {
	if c.err != nil {
		return 0, c.err
	}
	n, err := c.w.Write(p)
	c.n += int64(n)
	c.err = err
	return n, err
}
